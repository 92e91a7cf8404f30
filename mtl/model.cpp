#include "model.h"

#include "../nn/activation.h"
#include "../nn/linear.h"

namespace ladon::mtl {

namespace {
void check_tower(const char* op, const TaskSpec& t) {
  for (std::int64_t h : t.tower_hidden)
    LADON_CHECK(h > 0, op, "task '", t.name, "' has tower hidden sizes ", shape_str(Shape(t.tower_hidden.begin(),
                t.tower_hidden.end())), ": each must be positive");
}
}  // namespace

MultiTaskModel::MultiTaskModel(std::vector<TaskSpec> tasks) : tasks_(std::move(tasks)) {
  LADON_CHECK(!tasks_.empty(), "MultiTaskModel", "needs at least one task");
  for (const TaskSpec& t : tasks_) {
    LADON_CHECK(t.out > 0, "MultiTaskModel", "task '", t.name, "' has output size ", t.out);
    check_tower("MultiTaskModel", t);
  }
}

void MultiTaskModel::check_new_task(const TaskSpec& task) const {
  for (const TaskSpec& t : tasks_)
    LADON_CHECK(t.name != task.name, "add_task", "a task named '", task.name, "' exists already");
  LADON_CHECK(task.out > 0, "add_task", "task '", task.name, "' has output size ", task.out);
  check_tower("add_task", task);
}

std::size_t MultiTaskModel::removable_task(const std::string& name) const {
  for (std::size_t t = 0; t < tasks_.size(); ++t)
    if (tasks_[t].name == name) {
      LADON_CHECK(tasks_.size() > 1, "remove_task", "cannot remove the only task '", name, "'");
      return t;
    }
  ::ladon::detail::fail("remove_task", "no task named '", name, "'");
}

std::int64_t MultiTaskModel::owner_task(const std::string& parameter_name) const {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (std::size_t dot; (dot = parameter_name.find('.', start)) != std::string::npos; start = dot + 1)
    parts.push_back(parameter_name.substr(start, dot - start));
  parts.push_back(parameter_name.substr(start));
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    if (parts[i] != "towers" && parts[i] != "experts" && parts[i] != "gates" && parts[i] != "columns") continue;
    for (std::size_t t = 0; t < tasks_.size(); ++t)
      if (parts[i + 1] == tasks_[t].name) return static_cast<std::int64_t>(t);
  }
  return -1;
}

std::vector<Tensor> MultiTaskModel::shared_parameters() {
  std::vector<Tensor> out;
  for (auto& [name, p] : named_parameters())
    if (owner_task(name) < 0) out.push_back(p);
  return out;
}

std::vector<Tensor> MultiTaskModel::task_parameters(std::size_t task) {
  LADON_CHECK(task < tasks_.size(), "task_parameters", "task ", task, " out of range for ", tasks_.size(), " tasks");
  std::vector<Tensor> out;
  for (auto& [name, p] : named_parameters())
    if (owner_task(name) == static_cast<std::int64_t>(task)) out.push_back(p);
  return out;
}

nn::Sequential mlp(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t out, bool relu_last,
                   Generator& gen) {
  nn::Sequential net;
  std::int64_t width = in;
  for (std::int64_t h : hidden)
    LADON_CHECK(h > 0, "mlp", "hidden sizes ", shape_str(Shape(hidden.begin(), hidden.end())), ": each must be positive");
  for (std::int64_t h : hidden) {
    net.push_back(nn::Linear(width, h, {}, gen));
    net.push_back(nn::ReLU());
    width = h;
  }
  net.push_back(nn::Linear(width, out, {}, gen));
  if (relu_last) net.push_back(nn::ReLU());
  return net;
}

}  // namespace ladon::mtl
