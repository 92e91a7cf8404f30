#include "history.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <set>

#include "../core/error.h"
#include "files.h"

namespace ladon::train {
namespace {

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string json_number(double v) { return std::isfinite(v) ? number(v) : "null"; }

// The string columns of the state: every entry followed by '\n' (add() rejects line breaks).
std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) out += p + '\n';
  return out;
}
std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (s[i] == '\n') out.push_back(s.substr(start, i - start)), start = i + 1;
  return out;
}

// Numbers are kept as their bit patterns in int64 tensors, so a resumed history is exactly the one
// that was saved (StateDict has no float64 tensors, and one key per value would be thousands).
Tensor int_column(const std::vector<std::int64_t>& v) {
  Tensor t = zeros({static_cast<std::int64_t>(v.size())}, Dtype::int64);
  std::copy(v.begin(), v.end(), t.data<std::int64_t>());
  return t;
}

}  // namespace

History::History(std::vector<std::string> tasks, std::string dir) : tasks_(std::move(tasks)), dir_(std::move(dir)) {
  std::set<std::string> seen;
  for (const std::string& t : tasks_) {
    LADON_CHECK(!t.empty() && t.find('\n') == std::string::npos, "History", "bad task name '", t, "'");
    LADON_CHECK(seen.insert(t).second, "History", "task '", t, "' appears twice");
  }
  if (!dir_.empty()) ensure_writable_dir(dir_, "History");
}

void History::add(Record r) {
  LADON_CHECK(!r.split.empty() && !r.metric.empty(), "History::add", "a record needs a split and a metric (got '",
              r.split, "', '", r.metric, "')");
  for (const std::string* s : {&r.split, &r.metric})
    LADON_CHECK(s->find('\n') == std::string::npos, "History::add", "line break in '", *s, "'");
  LADON_CHECK(r.task.empty() || std::find(tasks_.begin(), tasks_.end(), r.task) != tasks_.end(), "History::add",
              "no task '", r.task, "' in this history");
  LADON_CHECK(r.weights.empty() || r.weights.size() == tasks_.size(), "History::add", r.weights.size(),
              " task weights for ", tasks_.size(), " tasks");
  records_.push_back(std::move(r));
}

std::string History::csv() const {
  std::string out = "step,epoch,split,task,metric,value,lr,wall_time";
  for (const std::string& t : tasks_) out += ',' + csv_field("weight_" + t);
  out += '\n';
  for (const Record& r : records_) {
    out += std::to_string(r.step) + ',' + std::to_string(r.epoch) + ',' + csv_field(r.split) + ',' +
           csv_field(r.task) + ',' + csv_field(r.metric) + ',' + number(r.value) + ',' +
           (std::isnan(r.lr) ? "" : number(r.lr)) + ',' + number(r.wall_time);
    for (std::size_t t = 0; t < tasks_.size(); ++t) out += ',' + (r.weights.empty() ? "" : number(r.weights[t]));
    out += '\n';
  }
  return out;
}

std::string History::json_lines() const {
  std::string out;
  for (const Record& r : records_) {
    out += "{\"step\":" + std::to_string(r.step) + ",\"epoch\":" + std::to_string(r.epoch) +
           ",\"split\":" + json_string(r.split) + ",\"task\":" + json_string(r.task) +
           ",\"metric\":" + json_string(r.metric) + ",\"value\":" + json_number(r.value) + ",\"weights\":";
    if (r.weights.empty()) {
      out += "null";
    } else {
      out += '{';
      for (std::size_t t = 0; t < tasks_.size(); ++t) {
        if (t) out += ',';
        out += json_string(tasks_[t]) + ':' + json_number(r.weights[t]);
      }
      out += '}';
    }
    out += ",\"lr\":" + json_number(r.lr) + ",\"wall_time\":" + json_number(r.wall_time) + "}\n";
  }
  return out;
}

void History::write() const {
  LADON_CHECK(!dir_.empty(), "History::write", "this history has no output folder");
  write_file_atomic(dir_ + "/metrics.csv", csv(), "History::write");
  write_file_atomic(dir_ + "/metrics.jsonl", json_lines(), "History::write");
}

std::vector<Record> History::series(const std::string& split, const std::string& task,
                                    const std::string& metric) const {
  std::vector<Record> out;
  for (const Record& r : records_)
    if (r.split == split && r.task == task && r.metric == metric) out.push_back(r);
  return out;
}

nn::StateDict History::state_dict() const {
  std::vector<std::int64_t> step, epoch, value, lr, wall, has_weights, weights;
  std::vector<std::string> split, task, metric;
  for (const Record& r : records_) {
    step.push_back(r.step), epoch.push_back(r.epoch);
    value.push_back(std::bit_cast<std::int64_t>(r.value));
    lr.push_back(std::bit_cast<std::int64_t>(r.lr));
    wall.push_back(std::bit_cast<std::int64_t>(r.wall_time));
    has_weights.push_back(r.weights.empty() ? 0 : 1);
    for (std::size_t t = 0; t < tasks_.size(); ++t)
      weights.push_back(std::bit_cast<std::int64_t>(r.weights.empty() ? 0.0 : r.weights[t]));
    split.push_back(r.split), task.push_back(r.task), metric.push_back(r.metric);
  }
  nn::StateDict s;
  s.set("tasks", join(tasks_));
  s.set("step", int_column(step));
  s.set("epoch", int_column(epoch));
  s.set("value", int_column(value));
  s.set("lr", int_column(lr));
  s.set("wall_time", int_column(wall));
  s.set("has_weights", int_column(has_weights));
  s.set("weights", int_column(weights));
  s.set("split", join(split));
  s.set("task", join(task));
  s.set("metric", join(metric));
  return s;
}

void History::check_state_dict(const nn::StateDict& s) const {
  const char* op = "History::load_state_dict";
  const std::vector<std::string> tasks = split_lines(s.string("tasks", op));
  LADON_CHECK(tasks == tasks_, op, "the saved history is of tasks '", s.string("tasks", op), "', not of this run's");
  const std::int64_t n = s.tensor("step", op).numel();
  for (const char* key : {"epoch", "value", "lr", "wall_time", "has_weights"}) {
    const Tensor& t = s.tensor(key, op);
    LADON_CHECK(t.dtype() == Dtype::int64 && t.numel() == n, op, "column '", key, "' has ", t.numel(),
                " entries, not ", n);
  }
  LADON_CHECK(s.tensor("step", op).dtype() == Dtype::int64, op, "column 'step' is not int64");
  LADON_CHECK(s.tensor("weights", op).dtype() == Dtype::int64 &&
                  s.tensor("weights", op).numel() == n * static_cast<std::int64_t>(tasks_.size()),
              op, "column 'weights' has ", s.tensor("weights", op).numel(), " entries, not ", n, " x ", tasks_.size());
  for (const char* key : {"split", "task", "metric"})
    LADON_CHECK(static_cast<std::int64_t>(split_lines(s.string(key, op)).size()) == n, op, "column '", key,
                "' does not have ", n, " entries");
}

void History::load_state_dict(const nn::StateDict& s) {
  check_state_dict(s);
  const char* op = "History::load_state_dict";
  const auto n = static_cast<std::size_t>(s.tensor("step", op).numel());
  const auto col = [&](const char* key) { return s.tensor(key, op).to_vector<std::int64_t>(); };
  const std::vector<std::int64_t> step = col("step"), epoch = col("epoch"), value = col("value"), lr = col("lr"),
                                  wall = col("wall_time"), has_weights = col("has_weights"), weights = col("weights");
  const std::vector<std::string> split = split_lines(s.string("split", op)), task = split_lines(s.string("task", op)),
                                 metric = split_lines(s.string("metric", op));
  const std::size_t T = tasks_.size();
  std::vector<Record> records;
  for (std::size_t u = 0; u < n; ++u) {
    Record r{.step = step[u],
             .epoch = epoch[u],
             .split = split[u],
             .task = task[u],
             .metric = metric[u],
             .value = std::bit_cast<double>(value[u]),
             .weights = {},
             .lr = std::bit_cast<double>(lr[u]),
             .wall_time = std::bit_cast<double>(wall[u])};
    if (has_weights[u])
      for (std::size_t t = 0; t < T; ++t) r.weights.push_back(std::bit_cast<double>(weights[u * T + t]));
    records.push_back(std::move(r));
  }
  records_ = std::move(records);
}

}  // namespace ladon::train
