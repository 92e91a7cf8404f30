// The classic multi-task architectures of the MMoE paper (Ma et al., KDD 2018):
//   SharedBottom: y_t = tower_t(trunk(x))                       (hard parameter sharing)
//   OMoE:         y_t = tower_t(sum_e g(x)_e   * expert_e(x))   (one gate for all tasks)
//   MMoE:         y_t = tower_t(sum_e g_t(x)_e * expert_e(x))   (one softmax gate per task)
// Gates are single linear layers on the raw input, as in the paper.
#pragma once

#include "../nn/linear.h"
#include "experts.h"
#include "model.h"

namespace ladon::mtl {

struct SharedBottomOptions {
  std::int64_t in = 0;
  std::vector<std::int64_t> trunk_hidden = {64};  // ReLU after every trunk layer
  std::vector<TaskSpec> tasks;
};

class SharedBottom : public MultiTaskModel {
 public:
  explicit SharedBottom(const SharedBottomOptions& options, Generator& gen = default_generator());
  // Any trunk (a CNN, say) whose output is [batch, trunk_out], shared by one tower per task.
  SharedBottom(nn::Sequential trunk, std::int64_t trunk_out, std::vector<TaskSpec> tasks,
               Generator& gen = default_generator());
  std::vector<Tensor> forward(const Tensor& x) override;
  void visit(Visitor& v) override;

 private:
  nn::Sequential trunk_;
  std::vector<nn::Sequential> towers_;
};

struct MoEOptions {
  std::int64_t in = 0;
  std::int64_t experts = 8;
  std::vector<std::int64_t> expert_hidden = {64};
  std::vector<TaskSpec> tasks;
};

// The common engine of OMoE and MMoE: an expert bank mixed by `gates` softmax gates.
class GatedMixture : public MultiTaskModel {
 public:
  std::vector<Tensor> forward(const Tensor& x) override;
  void visit(Visitor& v) override;

  // Grows or shrinks the set of tasks of a trained model: experts (and other tasks' gates and
  // towers) are kept, a new task gets a fresh gate (MMoE) and tower. Parameters change, so build
  // the optimizer again afterwards.
  void add_task(const TaskSpec& task, Generator& gen = default_generator());
  void remove_task(const std::string& name);

  // Softmax gate weights of the last forward, [batch, experts], for task t (OMoE: the same for all).
  Tensor gate_weights(std::size_t task) const;
  std::int64_t num_experts() const { return experts_.num_experts(); }

 protected:
  GatedMixture(const MoEOptions& options, bool per_task_gates, Generator& gen);

 private:
  bool per_task_gates_;
  std::int64_t gates_;
  ExpertBank experts_;
  nn::Linear gate_;  // all gates in one GEMM: in -> gates * experts
  std::vector<nn::Sequential> towers_;
  Tensor last_gates_;  // [batch, gates, experts], detached
};

class OMoE : public GatedMixture {
 public:
  explicit OMoE(const MoEOptions& options, Generator& gen = default_generator()) : GatedMixture(options, false, gen) {}
};

class MMoE : public GatedMixture {
 public:
  explicit MMoE(const MoEOptions& options, Generator& gen = default_generator())
      : GatedMixture(options, true, gen) {}
};

}  // namespace ladon::mtl
