#include "architectures.h"

#include <algorithm>

#include "../core/ops.h"

namespace ladon::mtl {

namespace {
std::vector<nn::Sequential> make_towers(std::int64_t in, const std::vector<TaskSpec>& tasks, Generator& gen) {
  std::vector<nn::Sequential> towers;
  for (const TaskSpec& t : tasks) towers.push_back(mlp(in, t.tower_hidden, t.out, false, gen));
  return towers;
}

nn::Sequential make_trunk(const SharedBottomOptions& options, Generator& gen) {
  const auto& sizes = options.trunk_hidden;
  LADON_CHECK(!sizes.empty(), "SharedBottom", "trunk_hidden needs at least one layer size");
  return mlp(options.in, std::vector<std::int64_t>(sizes.begin(), sizes.end() - 1), sizes.back(), true, gen);
}

void check_input(const char* model, const Tensor& x, std::int64_t in) {
  LADON_CHECK(x.dim() == 2 && x.shape()[1] == in, model, "expects input [batch, ", in, "], got ", shape_str(x.shape()));
}
}  // namespace

SharedBottom::SharedBottom(const SharedBottomOptions& options, Generator& gen)
    : MultiTaskModel(options.tasks),
      trunk_(make_trunk(options, gen)),
      trunk_out_(options.trunk_hidden.back()),
      towers_(make_towers(trunk_out_, options.tasks, gen)) {}

SharedBottom::SharedBottom(nn::Sequential trunk, std::int64_t trunk_out, std::vector<TaskSpec> tasks, Generator& gen)
    : MultiTaskModel(std::move(tasks)),
      trunk_(std::move(trunk)),
      trunk_out_(trunk_out),
      towers_(make_towers(trunk_out, tasks_, gen)) {
  LADON_CHECK(trunk_.size() > 0, "SharedBottom", "the trunk has no layers");
}

void SharedBottom::add_task(const TaskSpec& task, Generator& gen) {
  check_new_task(task);
  towers_.push_back(mlp(trunk_out_, task.tower_hidden, task.out, false, gen));
  tasks_.push_back(task);
}

void SharedBottom::remove_task(const std::string& name) {
  const auto t = static_cast<std::ptrdiff_t>(removable_task(name));
  towers_.erase(towers_.begin() + t);
  tasks_.erase(tasks_.begin() + t);
}

std::vector<Tensor> SharedBottom::forward(const Tensor& x) {
  const Tensor shared = trunk_(x);
  std::vector<Tensor> outputs;
  for (nn::Sequential& tower : towers_) outputs.push_back(tower(shared));
  return outputs;
}

void SharedBottom::visit(Visitor& v) {
  v("trunk", trunk_);
  for (std::size_t t = 0; t < towers_.size(); ++t) v("towers." + tasks_[t].name, towers_[t]);
}

GatedMixture::GatedMixture(const MoEOptions& options, bool per_task_gates, Generator& gen)
    : MultiTaskModel(options.tasks),
      per_task_gates_(per_task_gates),
      gate_options_(options.gate),
      experts_(options.in, options.experts, options.expert_hidden, gen),
      towers_(make_towers(options.expert_hidden.back(), options.tasks, gen)) {
  const std::size_t gates = per_task_gates ? options.tasks.size() : 1;
  for (std::size_t g = 0; g < gates; ++g) gates_.emplace_back(options.in, options.experts, options.gate, gen);
}

std::vector<Tensor> GatedMixture::forward(const Tensor& x) {
  check_input(per_task_gates_ ? "MMoE" : "OMoE", x, experts_.in_features());
  const Tensor expert_out = experts_.forward(x);  // [B, E, H]
  const Tensor gates = forward_gates(gates_, x);  // [B, G, E]
  last_gates_ = gates.detach();
  const Tensor mixed = matmul(gates, expert_out);  // [B, G, H]: every gate's mixture in one batched GEMM
  std::vector<Tensor> outputs;
  for (std::size_t t = 0; t < towers_.size(); ++t) {
    const std::int64_t g = per_task_gates_ ? static_cast<std::int64_t>(t) : 0;
    outputs.push_back(towers_[t](mixed.narrow(1, g, 1).squeeze(1)));
  }
  return outputs;
}

Tensor GatedMixture::gate_weights(std::size_t task) const {
  LADON_CHECK(last_gates_.defined(), "gate_weights", "no forward has run yet");
  LADON_CHECK(task < num_tasks(), "gate_weights", "task ", task, " out of range for ", num_tasks(), " tasks");
  return last_gates_.narrow(1, per_task_gates_ ? static_cast<std::int64_t>(task) : 0, 1).squeeze(1);
}

void GatedMixture::add_task(const TaskSpec& task, Generator& gen) {
  check_new_task(task);
  if (per_task_gates_) gates_.emplace_back(experts_.in_features(), num_experts(), gate_options_, gen);
  towers_.push_back(mlp(experts_.out_features(), task.tower_hidden, task.out, false, gen));
  tasks_.push_back(task);
  last_gates_ = Tensor();
}

void GatedMixture::remove_task(const std::string& name) {
  const auto t = static_cast<std::ptrdiff_t>(removable_task(name));
  if (per_task_gates_) gates_.erase(gates_.begin() + t);
  towers_.erase(towers_.begin() + t);
  tasks_.erase(tasks_.begin() + t);
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
    for (Gate& gate : gates_) gate.keep_experts(keep);
    last_gates_ = Tensor();
  }
  report.experts_after = num_experts();
  report.parameters_after = num_parameters();
  return report;
}

void GatedMixture::visit(Visitor& v) {
  v("experts", experts_);
  if (per_task_gates_)
    for (std::size_t t = 0; t < gates_.size(); ++t) v("gates." + tasks_[t].name, gates_[t]);
  else
    v("gate", gates_[0]);
  for (std::size_t t = 0; t < towers_.size(); ++t) v("towers." + tasks_[t].name, towers_[t]);
}

}  // namespace ladon::mtl
