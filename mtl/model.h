// Multi-task models: one input, one output per task. Every architecture in mtl/ derives from
// MultiTaskModel, so balancers, training loops and reports work with any of them.
#pragma once

#include "layer_fence.h"

#include <string>
#include <vector>

#include "../core/random.h"
#include "../nn/module.h"

namespace ladon::mtl {

struct TaskSpec {
  std::string name;
  std::int64_t out = 1;                    // logits per class, or 1 for a regression target
  std::vector<std::int64_t> tower_hidden;  // hidden sizes of the task's tower (ReLU between)
  // An auxiliary task is trained and weighted like any other but left out of reported metrics
  // (TaskMetrics): it is there to help the main tasks learn, not to be judged.
  bool auxiliary = false;
};

class MultiTaskModel : public nn::Module {
 public:
  virtual std::vector<Tensor> forward(const Tensor& x) = 0;
  std::vector<Tensor> operator()(const Tensor& x) { return forward(x); }
  const std::vector<TaskSpec>& tasks() const { return tasks_; }
  // The split is by name: a parameter belongs to task t when its dotted name has a component
  // "towers", "experts", "gates" or "columns" followed by t's name (towers.item.0.weight,
  // levels.0.experts.item.0.bias); every other parameter is shared.
  std::vector<Tensor> shared_parameters();
  std::vector<Tensor> task_parameters(std::size_t task);
  // The task owning a parameter name, or -1 when it is shared.
  std::int64_t owner_task(const std::string& parameter_name) const;
  std::size_t num_tasks() const { return tasks_.size(); }

 protected:
  explicit MultiTaskModel(std::vector<TaskSpec> tasks);
  // For add_task / remove_task: throws unless `task` can join (a new name, outputs > 0); the index
  // of the task called `name`, throwing when there is none or it is the only one.
  void check_new_task(const TaskSpec& task) const;
  std::size_t removable_task(const std::string& name) const;
  std::vector<TaskSpec> tasks_;
};

// An MLP: Linear layers with ReLU after each hidden one; with relu_last, after the output too
// (for trunks and experts whose output is a representation rather than logits).
nn::Sequential mlp(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t out, bool relu_last,
                   Generator& gen = default_generator());

}  // namespace ladon::mtl
