#include "model.h"

#include <set>

#include "../core/ops.h"
#include "../nn/activation.h"
#include "../nn/linear.h"
#include "../nn/loss.h"

namespace ladon::mtl {

const char* task_kind_name(TaskKind kind) {
  switch (kind) {
    case TaskKind::multiclass: return "multiclass";
    case TaskKind::binary: return "binary";
    case TaskKind::regression: return "regression";
  }
  return "unknown";
}

namespace {
void check_task(const char* op, const TaskSpec& t) {
  LADON_CHECK(!t.name.empty(), op, "a task needs a name");
  LADON_CHECK(t.name.find('.') == std::string::npos, op, "task name '", t.name,
              "' contains '.', which separates the parts of parameter names");
  switch (t.kind) {
    case TaskKind::multiclass:
      LADON_CHECK(t.out >= 2, op, "multiclass task '", t.name, "' needs out >= 2 classes, got ", t.out,
                  " (one output: set .kind = TaskKind::binary or TaskKind::regression)");
      break;
    case TaskKind::binary:
      LADON_CHECK(t.out == 1, op, "binary task '", t.name, "' has one logit (out = 1), got ", t.out);
      break;
    case TaskKind::regression:
      LADON_CHECK(t.out >= 1, op, "regression task '", t.name, "' needs out >= 1, got ", t.out);
      break;
  }
  for (std::int64_t h : t.tower_hidden)
    LADON_CHECK(h > 0, op, "task '", t.name, "' has a tower layer of size ", h);
}
}  // namespace

void check_tasks(const char* op, const std::vector<TaskSpec>& tasks) {
  LADON_CHECK(!tasks.empty(), op, "needs at least one task");
  std::set<std::string> seen;
  for (const TaskSpec& t : tasks) {
    check_task(op, t);
    LADON_CHECK(seen.insert(t.name).second, op, "two tasks are named '", t.name, "'");
  }
}

Tensor task_loss(const TaskSpec& task, const Tensor& output, const Tensor& target, const Tensor& mask) {
  if (mask.defined())
    LADON_CHECK(mask.dtype() == Dtype::float32 && mask.numel() == output.size(0), "task_loss", "task '", task.name,
                "': the mask must be float32 with one entry per sample (", output.size(0), "), got ",
                shape_str(mask.shape()));
  const Tensor m = mask.defined() ? mask.reshape({-1}) : Tensor();
  switch (task.kind) {
    case TaskKind::multiclass: return nn::cross_entropy(output, target, {.weight = m});
    case TaskKind::binary:
      return nn::binary_cross_entropy_with_logits(output.reshape({-1}), target.reshape({-1}), {.weight = m});
    case TaskKind::regression:
      return nn::mse_loss(output, target.reshape(output.shape()), {.weight = m.defined() ? m.reshape({-1, 1}) : m});
  }
  ::ladon::detail::fail("task_loss", "task '", task.name, "' has an unknown kind");
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

TaskTowers::TaskTowers(std::int64_t in, const std::vector<TaskSpec>& tasks, Generator& gen) : in_(in) {
  LADON_CHECK(in > 0, "TaskTowers", "towers need in > 0 features, got ", in);
  for (const TaskSpec& t : tasks) add(t, gen);
}

void TaskTowers::add(const TaskSpec& task, Generator& gen) {
  TaskHeads::add(task.name, mlp(in_, task.tower_hidden, task.out, false, gen));
}

std::vector<Tensor> TaskTowers::forward(const Tensor& shared) {
  std::vector<Tensor> outputs;
  for (nn::Sequential& tower : *this) outputs.push_back(tower(shared));
  return outputs;
}

std::vector<Tensor> TaskTowers::forward(const std::vector<Tensor>& inputs) {
  LADON_CHECK(inputs.size() == size(), "TaskTowers", inputs.size(), " inputs for ", size(), " towers");
  std::vector<Tensor> outputs;
  for (std::size_t t = 0; t < inputs.size(); ++t) outputs.push_back((*this)[t](inputs[t]));
  return outputs;
}

MultiTaskModel::MultiTaskModel(std::vector<TaskSpec> tasks) : tasks_(std::move(tasks)) {
  check_tasks("MultiTaskModel", tasks_);
}

std::size_t MultiTaskModel::task_index(const std::string& name) const {
  for (std::size_t t = 0; t < tasks_.size(); ++t)
    if (tasks_[t].name == name) return t;
  ::ladon::detail::fail("MultiTaskModel", "no task named '", name, "'");
}

void MultiTaskModel::check_new_task(const TaskSpec& task) const {
  for (const TaskSpec& t : tasks_)
    LADON_CHECK(t.name != task.name, "add_task", "a task named '", task.name, "' exists already");
  std::vector<TaskSpec> grown = tasks_;
  grown.push_back(task);
  check_tasks("add_task", grown);
}

std::size_t MultiTaskModel::removable_task(const std::string& name) const {
  for (std::size_t t = 0; t < tasks_.size(); ++t)
    if (tasks_[t].name == name) {
      LADON_CHECK(tasks_.size() > 1, "remove_task", "cannot remove the only task '", name, "'");
      return t;
    }
  ::ladon::detail::fail("remove_task", "no task named '", name, "'");
}

namespace {
// Walks the module tree like named_parameters, carrying the owning task down from the TaskOwned
// container whose child it passes through.
class OwnershipWalker : public nn::Module::Visitor {
 public:
  explicit OwnershipWalker(const MultiTaskModel& model) : model_(model) {}
  std::vector<MultiTaskModel::OwnedParameter> found;

  void walk(nn::Module& m) {
    nn::Module* saved = current_;
    current_ = &m;
    m.visit(*this);
    current_ = saved;
  }
  void operator()(const std::string& name, Tensor& parameter) override {
    found.push_back({prefix_ + name, parameter, owner_});
  }
  void buffer(const std::string&, Tensor&) override {}
  void operator()(const std::string& name, nn::Module& child) override {
    const std::string saved_prefix = prefix_;
    const std::int64_t saved_owner = owner_;
    if (dynamic_cast<TaskOwned*>(current_) != nullptr) {
      LADON_CHECK(owner_ < 0, "MultiTaskModel", "task heads '", prefix_, name, "' sit inside another task's heads");
      owner_ = static_cast<std::int64_t>(model_.task_index(name));
    }
    prefix_ += name + ".";
    walk(child);
    prefix_ = saved_prefix;
    owner_ = saved_owner;
  }

 private:
  const MultiTaskModel& model_;
  nn::Module* current_ = nullptr;
  std::string prefix_;
  std::int64_t owner_ = -1;
};
}  // namespace

std::vector<MultiTaskModel::OwnedParameter> MultiTaskModel::owned_parameters() {
  OwnershipWalker walker(*this);
  walker.walk(*this);
  return std::move(walker.found);
}

std::vector<Tensor> MultiTaskModel::shared_parameters() {
  std::vector<Tensor> out;
  for (OwnedParameter& p : owned_parameters())
    if (p.task < 0) out.push_back(p.parameter);
  return out;
}

std::vector<Tensor> MultiTaskModel::task_parameters(std::size_t task) {
  LADON_CHECK(task < tasks_.size(), "task_parameters", "task ", task, " out of range for ", tasks_.size(), " tasks");
  std::vector<Tensor> out;
  for (OwnedParameter& p : owned_parameters())
    if (p.task == static_cast<std::int64_t>(task)) out.push_back(p.parameter);
  return out;
}

std::int64_t MultiTaskModel::owner_task(const std::string& parameter_name) {
  for (OwnedParameter& p : owned_parameters())
    if (p.name == parameter_name) return p.task;
  ::ladon::detail::fail("owner_task", "the model has no parameter named '", parameter_name, "'");
}

const std::vector<Tensor>& MultiTaskModel::representation() const {
  LADON_CHECK(!representation_.empty(), "MultiTaskModel",
              "no shared representation recorded: run a forward first (a model of your own calls "
              "set_representation in its forward)");
  return representation_;
}

}  // namespace ladon::mtl
