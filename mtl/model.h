// Multi-task models: one input, one output per task. Every architecture in mtl/ derives from
// MultiTaskModel, so balancers, training loops and reports work with any of them.
//
// Which parameters belong to which task is structure: a model keeps its per-task parts (towers,
// task gates, task experts) in TaskHeads containers, one entry per task keyed by the task's name,
// and every parameter reached through an entry belongs to that task. Everything else is shared.
// A user-written model does the same:
//
//   class MyModel : public mtl::MultiTaskModel {
//    public:
//     MyModel(std::vector<mtl::TaskSpec> tasks) : MultiTaskModel(std::move(tasks)), towers_(64, tasks_, gen) {}
//     std::vector<Tensor> forward(const Tensor& x) override {
//       Tensor z = trunk_(x);
//       set_representation({z});           // where the shared part hands over (MGDA-UB uses it)
//       return towers_.forward(z);
//     }
//     void visit(Visitor& v) override { v("trunk", trunk_); v("towers", towers_); }
//    private:
//     nn::Sequential trunk_;
//     mtl::TaskTowers towers_;
//   };
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../core/random.h"
#include "../nn/module.h"

namespace ladon::mtl {

// What a task predicts; its loss (task_loss) and its metrics (TaskMetrics) follow from it.
//   multiclass: out >= 2 logits, int64 class targets [batch], cross-entropy, accuracy
//   binary:     out == 1 logit, float32 0/1 targets [batch], BCE with logits, accuracy at 0.5
//   regression: out >= 1 values, float32 targets [batch] or [batch, out], MSE
enum class TaskKind { multiclass, binary, regression };
const char* task_kind_name(TaskKind kind);

struct TaskSpec {
  std::string name;                        // non-empty, unique within a model, no '.'
  std::int64_t out = 2;                    // logits or values the task's tower produces
  std::vector<std::int64_t> tower_hidden;  // hidden sizes of the task's tower (ReLU between)
  TaskKind kind = TaskKind::multiclass;
  // An auxiliary task is trained and weighted like any other but left out of reported metrics
  // (TaskMetrics): it is there to help the main tasks learn, not to be judged.
  bool auxiliary = false;
};

// Throws unless the tasks can form a model: at least one, names non-empty, unique and without '.',
// and an output size that fits the kind. `op` names the caller in the message.
void check_tasks(const char* op, const std::vector<TaskSpec>& tasks);

// The task's loss of one batch, chosen by its kind (see TaskKind); a scalar.
Tensor task_loss(const TaskSpec& task, const Tensor& output, const Tensor& target);

// The marker every per-task container derives from: each child it visits is named after the task
// that owns it. MultiTaskModel uses it to tell task parameters from shared ones.
class TaskOwned : public nn::Module {};

// One module per task, in task order, each visited under its task's name.
template <typename M>
class TaskHeads : public TaskOwned {
 public:
  void add(std::string task, M module) {
    names_.push_back(std::move(task));
    modules_.push_back(std::move(module));
  }
  void remove(std::size_t index) {
    LADON_CHECK(index < modules_.size(), "TaskHeads", "index ", index, " out of range for ", modules_.size(), " heads");
    names_.erase(names_.begin() + static_cast<std::ptrdiff_t>(index));
    modules_.erase(modules_.begin() + static_cast<std::ptrdiff_t>(index));
  }
  std::size_t size() const { return modules_.size(); }
  M& operator[](std::size_t index) {
    LADON_CHECK(index < modules_.size(), "TaskHeads", "index ", index, " out of range for ", modules_.size(), " heads");
    return modules_[index];
  }
  const std::string& task(std::size_t index) const { return names_.at(index); }
  std::span<M> entries() { return modules_; }
  auto begin() { return modules_.begin(); }
  auto end() { return modules_.end(); }
  void visit(Visitor& v) override {
    for (std::size_t i = 0; i < modules_.size(); ++i) v(names_[i], modules_[i]);
  }

 private:
  std::vector<std::string> names_;
  std::vector<M> modules_;
};

// An MLP: Linear layers with ReLU after each hidden one; with relu_last, after the output too
// (for trunks and experts whose output is a representation rather than logits).
nn::Sequential mlp(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t out, bool relu_last,
                   Generator& gen = default_generator());

// The towers of a model: one MLP per task (TaskSpec::tower_hidden, then TaskSpec::out outputs),
// all reading `in` features. Written once, used by every architecture.
class TaskTowers : public TaskHeads<nn::Sequential> {
 public:
  TaskTowers() = default;
  TaskTowers(std::int64_t in, const std::vector<TaskSpec>& tasks, Generator& gen = default_generator());
  void add(const TaskSpec& task, Generator& gen = default_generator());
  // Every tower on the same input, or tower t on inputs[t].
  std::vector<Tensor> forward(const Tensor& shared);
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs);
  std::int64_t in_features() const { return in_; }

 private:
  std::int64_t in_ = 0;
};

class MultiTaskModel : public nn::Module {
 public:
  virtual std::vector<Tensor> forward(const Tensor& x) = 0;
  std::vector<Tensor> operator()(const Tensor& x) { return forward(x); }
  const std::vector<TaskSpec>& tasks() const { return tasks_; }
  std::size_t num_tasks() const { return tasks_.size(); }
  // The index of the task called `name`; throws when there is none.
  std::size_t task_index(const std::string& name) const;

  // Parameters reached through a TaskHeads entry belong to that entry's task; the rest are shared.
  struct OwnedParameter {
    std::string name;
    Tensor parameter;
    std::int64_t task;  // -1: shared
  };
  std::vector<OwnedParameter> owned_parameters();
  std::vector<Tensor> shared_parameters();
  std::vector<Tensor> task_parameters(std::size_t task);
  // The task owning the parameter called `parameter_name`, or -1 when it is shared.
  std::int64_t owner_task(const std::string& parameter_name);

  // The tensors of the last forward where the shared part of the model hands over to the task
  // parts: every shared parameter reaches the losses only through them (MGDA-UB differentiates the
  // task losses with respect to these). Throws when the model's forward records none.
  const std::vector<Tensor>& representation() const;

 protected:
  explicit MultiTaskModel(std::vector<TaskSpec> tasks);
  // Called by forward() with the shared representation of this batch (see representation()).
  void set_representation(std::vector<Tensor> tensors) { representation_ = std::move(tensors); }
  // For add_task / remove_task: throws unless `task` can join; the index of the task called `name`,
  // throwing when there is none or it is the only one.
  void check_new_task(const TaskSpec& task) const;
  std::size_t removable_task(const std::string& name) const;
  std::vector<TaskSpec> tasks_;

 private:
  std::vector<Tensor> representation_;
};

}  // namespace ladon::mtl
