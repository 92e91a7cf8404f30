#include "architectures.h"

#include <algorithm>

#include "../core/ops.h"

namespace ladon::mtl {

namespace {
nn::Sequential make_trunk(const SharedBottomOptions& options, Generator& gen) {
  const auto& sizes = options.trunk_hidden;
  LADON_CHECK(!sizes.empty(), "SharedBottom", "trunk_hidden needs at least one layer size");
  for (std::int64_t h : sizes) LADON_CHECK(h > 0, "SharedBottom", "trunk_hidden has a layer of size ", h);
  return mlp(options.in, std::vector<std::int64_t>(sizes.begin(), sizes.end() - 1), sizes.back(), true, gen);
}

void check_input(const char* model, const Tensor& x, std::int64_t in) {
  LADON_CHECK(x.dim() == 2 && x.shape()[1] == in, model, "expects input [batch, ", in, "], got ", shape_str(x.shape()));
}
}  // namespace

SharedBottom::SharedBottom(const SharedBottomOptions& options, Generator& gen)
    : SharedBottom(std::make_unique<nn::Sequential>(make_trunk(options, gen)),
                   options.trunk_hidden.empty() ? 0 : options.trunk_hidden.back(), options.tasks, gen) {}

SharedBottom::SharedBottom(std::unique_ptr<nn::Layer> trunk, std::int64_t trunk_out, std::vector<TaskSpec> tasks,
                           Generator& gen)
    : MultiTaskModel(std::move(tasks)), trunk_(std::move(trunk)) {
  LADON_CHECK(trunk_ != nullptr, "SharedBottom", "needs a trunk");
  LADON_CHECK(trunk_out > 0, "SharedBottom", "the trunk's output width must be positive, got ", trunk_out);
  towers_ = TaskTowers(trunk_out, tasks_, gen);
}

void SharedBottom::add_task(const TaskSpec& task, Generator& gen) {
  check_new_task(task);
  towers_.add(task, gen);
  tasks_.push_back(task);
}

void SharedBottom::remove_task(const std::string& name) {
  const std::size_t t = removable_task(name);
  towers_.remove(t);
  tasks_.erase(tasks_.begin() + static_cast<std::ptrdiff_t>(t));
}

std::vector<Tensor> SharedBottom::forward(const Tensor& x) {
  const Tensor shared = (*trunk_)(x);
  set_representation({shared});
  return towers_.forward(shared);
}

void SharedBottom::visit(Visitor& v) {
  v("trunk", *trunk_);
  v("towers", towers_);
}

GatedMixture::GatedMixture(const MoEOptions& options, bool per_task_gates, Generator& gen)
    : MultiTaskModel(options.tasks),
      per_task_gates_(per_task_gates),
      gate_options_(options.gate),
      experts_(options.in, options.experts, options.expert_hidden, gen),
      towers_(options.expert_hidden.back(), tasks_, gen) {
  if (per_task_gates)
    for (const TaskSpec& t : tasks_) task_gates_.add(t.name, Gate(options.in, options.experts, options.gate, gen));
  else
    shared_gate_.emplace_back(options.in, options.experts, options.gate, gen);
}

std::vector<Tensor> GatedMixture::forward(const Tensor& x) {
  check_input(per_task_gates_ ? "MMoE" : "OMoE", x, experts_.in_features());
  const Tensor expert_out = experts_.forward(x);  // [B, E, H]
  const Tensor gates = forward_gates(per_task_gates_ ? task_gates_.entries() : std::span<Gate>(shared_gate_), x);
  last_gates_ = gates.detach();  // [B, G, E]
  // Each gate's mixture [B, H] on its own (mix reads the gate's column of `gates` in place), so a
  // tower reads a contiguous input and sends back a gradient of its own size: a batched matmul's
  // [B, G, H] result, narrowed per tower, cost 2048 tiny GEMMs each way and a zero-filled
  // [B, G, H] per tower backward (MMoE on the impression log: 0.9 of a 3.6 ms step, 2 threads).
  std::vector<Tensor> inputs;
  if (per_task_gates_) {
    for (std::size_t t = 0; t < towers_.size(); ++t)
      inputs.push_back(mix(gates.narrow(1, static_cast<std::int64_t>(t), 1).squeeze(1), expert_out));
    // MMoE's gates are task parameters, so the experts' output is where sharing ends.
    set_representation({expert_out});
  } else {
    // OMoE's one gate is shared too, so its mixture [B, 1, H] is, and every tower reads it.
    const Tensor mixed = mix(gates.squeeze(1), expert_out).unsqueeze(1);
    set_representation({mixed});
    inputs.assign(towers_.size(), mixed.squeeze(1));
  }
  return towers_.forward(inputs);
}

Tensor GatedMixture::gate_weights(std::size_t task) const {
  LADON_CHECK(last_gates_.defined(), "gate_weights", "no forward has run yet");
  LADON_CHECK(task < num_tasks(), "gate_weights", "task ", task, " out of range for ", num_tasks(), " tasks");
  return last_gates_.narrow(1, per_task_gates_ ? static_cast<std::int64_t>(task) : 0, 1).squeeze(1);
}

void GatedMixture::add_task(const TaskSpec& task, Generator& gen) {
  check_new_task(task);
  if (per_task_gates_) task_gates_.add(task.name, Gate(experts_.in_features(), num_experts(), gate_options_, gen));
  towers_.add(task, gen);
  tasks_.push_back(task);
  last_gates_ = Tensor();
}

void GatedMixture::remove_task(const std::string& name) {
  const std::size_t t = removable_task(name);
  if (per_task_gates_) task_gates_.remove(t);
  towers_.remove(t);
  tasks_.erase(tasks_.begin() + static_cast<std::ptrdiff_t>(t));
  last_gates_ = Tensor();
}

ExpertDropReport GatedMixture::drop_unused_experts(const std::vector<GateStats>& stats) {
  LADON_CHECK(stats.size() == num_tasks(), "drop_unused_experts", stats.size(), " gate statistics for ", num_tasks(),
              " tasks");
  const std::int64_t experts = num_experts();
  for (const GateStats& s : stats)
    LADON_CHECK(static_cast<std::int64_t>(s.mean_weight.size()) == experts, "drop_unused_experts",
                "gate statistics over ", s.mean_weight.size(), " experts for a model with ", experts);
  const bool any_used = std::any_of(stats.begin(), stats.end(), [experts](const GateStats& s) {
    for (std::int64_t e = 0; e < experts; ++e)
      if (!s.unused(e)) return true;
    return false;
  });
  LADON_CHECK(any_used, "drop_unused_experts", "all ", experts,
              " experts are unused by every task; dropping them would leave none");
  ExpertDropReport report;
  report.experts_before = experts;
  report.parameters_before = num_parameters();
  std::vector<std::int64_t> keep;
  for (std::int64_t e = 0; e < experts; ++e) {
    const bool used = std::any_of(stats.begin(), stats.end(), [e](const GateStats& s) { return !s.unused(e); });
    (used ? keep : report.dropped).push_back(e);
  }
  if (!report.dropped.empty()) {
    experts_.keep_experts(keep);
    for (Gate& gate : task_gates_) gate.keep_experts(keep);
    for (Gate& gate : shared_gate_) gate.keep_experts(keep);
    last_gates_ = Tensor();
  }
  report.experts_after = num_experts();
  report.parameters_after = num_parameters();
  return report;
}

void GatedMixture::visit(Visitor& v) {
  v("experts", experts_);
  if (per_task_gates_)
    v("gates", task_gates_);
  else
    v("gate", shared_gate_[0]);
  v("towers", towers_);
}

}  // namespace ladon::mtl
