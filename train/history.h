// The metrics history of a training run: one record per (step, split, task, metric) value, kept in
// memory and written as CSV and as JSON Lines. The pictures (plots.h) are drawn from it, and it is
// saved in checkpoints, so a resumed run continues the same history.
//
//   train::History history({"item", "group"}, "runs/demo");   // writes runs/demo/metrics.{csv,jsonl}
//   history.add({.step = 100, .epoch = 1, .split = "train", .task = "item", .metric = "loss",
//                .value = 0.41, .weights = {1, 1}, .lr = 1e-3, .wall_time = 2.5});
//   history.write();
//
// CSV columns: step,epoch,split,task,metric,value,lr,wall_time,weight_<task>... (a blank lr or
// weight: not known for that record). A JSON line holds the same fields, weights as an object
// {"item": 1, "group": 1}, and null for unknown numbers. Besides per-task metrics the Trainer records
// model-wide values with an empty task (the joint loss, "expert_load.<e>") and per-task series
// named "gate.<expert>" (mean gate weight) and "cosine.<other task>" (task-gradient cosine).
#pragma once

#include "layer_fence.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../nn/state.h"

namespace ladon::train {

struct Record {
  std::int64_t step = 0;   // optimizer steps done when the value was taken
  std::int64_t epoch = 0;  // 1-based epoch it belongs to
  std::string split = {};  // "train", "val", "test", ...
  std::string task = {};   // a task name, or empty for the whole model
  std::string metric = {}; // "loss", "accuracy", "mse", "gate.3", ...
  double value = 0;
  std::vector<double> weights = {};  // task weights in force (one per task), or empty
  double lr = std::numeric_limits<double>::quiet_NaN();  // NaN: unknown
  double wall_time = 0;                                  // seconds since the run began
};

class History : public nn::Stateful {
 public:
  // tasks: the run's task names (the weight columns). dir: the folder write() writes to (created
  // and checked for writing now); empty keeps the history in memory only.
  explicit History(std::vector<std::string> tasks, std::string dir = "");

  // Checks the record (a non-empty split and metric, a known task or none, weights empty or one
  // per task) and keeps it.
  void add(Record record);
  // Replaces dir/metrics.csv and dir/metrics.jsonl (atomically) with every record so far.
  void write() const;
  std::string csv() const;
  std::string json_lines() const;

  const std::vector<Record>& records() const { return records_; }
  // The records of one series, in order.
  std::vector<Record> series(const std::string& split, const std::string& task, const std::string& metric) const;
  const std::vector<std::string>& tasks() const { return tasks_; }
  const std::string& dir() const { return dir_; }
  void clear() { records_.clear(); }

  // Every record, exactly (numbers keep all their bits); loading checks the task names match.
  nn::StateDict state_dict() const override;
  void check_state_dict(const nn::StateDict& state) const override;
  void load_state_dict(const nn::StateDict& state) override;

 private:
  std::vector<std::string> tasks_;
  std::string dir_;
  std::vector<Record> records_;
};

}  // namespace ladon::train
