// The classic multi-task architectures of the MMoE paper (Ma et al., KDD 2018):
//   SharedBottom: y_t = tower_t(trunk(x))                       (hard parameter sharing)
//   OMoE:         y_t = tower_t(sum_e g(x)_e   * expert_e(x))   (one gate for all tasks)
//   MMoE:         y_t = tower_t(sum_e g_t(x)_e * expert_e(x))   (one softmax gate per task)
// Gates read the raw input; by default each is a single linear layer, as in the paper (see gate.h).
#pragma once

#include "layer_fence.h"

#include <concepts>
#include <memory>

#include "experts.h"
#include "gate.h"
#include "model.h"
#include "report.h"

namespace ladon::mtl {

struct SharedBottomOptions {
  std::int64_t in = 0;
  std::vector<std::int64_t> trunk_hidden = {64};  // ReLU after every trunk layer
  std::vector<TaskSpec> tasks;
};

class SharedBottom : public MultiTaskModel {
 public:
  explicit SharedBottom(const SharedBottomOptions& options, Generator& gen = default_generator());
  // Any trunk whose output is [batch, trunk_out] (a CNN, an LSTM adapter, a sparse MoE layer),
  // shared by one tower per task.
  SharedBottom(std::unique_ptr<nn::Layer> trunk, std::int64_t trunk_out, std::vector<TaskSpec> tasks,
               Generator& gen = default_generator());
  template <std::derived_from<nn::Layer> L>
  SharedBottom(L trunk, std::int64_t trunk_out, std::vector<TaskSpec> tasks, Generator& gen = default_generator())
      : SharedBottom(std::make_unique<L>(std::move(trunk)), trunk_out, std::move(tasks), gen) {}
  std::vector<Tensor> forward(const Tensor& x) override;
  void visit(Visitor& v) override;

  // The trunk as the type it was built with; throws when it is not an L.
  template <std::derived_from<nn::Layer> L>
  L& trunk() {
    auto* t = dynamic_cast<L*>(trunk_.get());
    LADON_CHECK(t != nullptr, "SharedBottom", "the trunk is not of the requested type");
    return *t;
  }

  // A new task gets a fresh tower on the trained trunk; removing one drops its tower. Parameters
  // change, so build the optimizer again afterwards.
  void add_task(const TaskSpec& task, Generator& gen = default_generator());
  void remove_task(const std::string& name);

 private:
  std::unique_ptr<nn::Layer> trunk_;
  TaskTowers towers_;
};

struct MoEOptions {
  std::int64_t in = 0;
  std::int64_t experts = 8;
  std::vector<std::int64_t> expert_hidden = {64};
  std::vector<TaskSpec> tasks;
  GateOptions gate = {};  // every gate's temperature and hidden layers
};

// What drop_unused_experts removed.
struct ExpertDropReport {
  std::vector<std::int64_t> dropped;  // indices of the removed experts, before removal
  std::int64_t experts_before = 0, experts_after = 0;
  std::int64_t parameters_before = 0, parameters_after = 0;
};

// The common engine of OMoE and MMoE: an expert bank mixed by softmax gates. Parameter names:
// experts.*, towers.<task>.*, and the gates: MMoE's gates.<task>.* belong to their task (so the
// gradient methods treat them as task parameters); OMoE's one gate.* is shared.
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

  // Compression: removes the experts that no task uses, i.e. that every task's gate statistics
  // (one GateStats per task, measured over data with gate_stats) mark as unused, together with
  // their gate outputs. Kept weights are unchanged, so outputs move only by the dropped experts'
  // small share of the softmax. Parameters change, so build the optimizer again afterwards.
  ExpertDropReport drop_unused_experts(const std::vector<GateStats>& stats);

 protected:
  GatedMixture(const MoEOptions& options, bool per_task_gates, Generator& gen);

 private:
  bool per_task_gates_;
  GateOptions gate_options_;
  ExpertBank experts_;
  TaskHeads<Gate> task_gates_;     // MMoE: one per task
  std::vector<Gate> shared_gate_;  // OMoE: the one gate every task shares
  TaskTowers towers_;
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
