#include "ple.h"

#include "../core/ops.h"

namespace ladon::mtl {

namespace {
// sum_e gate[b, e] * experts[b, e, :].
Tensor mix(const Tensor& gate, const Tensor& experts, Tensor* gate_out) {
  if (gate_out) *gate_out = gate.detach();
  return ladon::mix(gate, experts);
}
}  // namespace

void PLE::Level::visit(Visitor& v) {
  if (has_shared_experts) v("shared_experts", shared_experts);
  if (has_task_experts) v("experts", task_experts);
  v("gates", task_gates);
  if (!shared_gate.empty()) v("shared_gate", shared_gate[0]);
}

PLE::PLE(const PLEOptions& options, Generator& gen) : MultiTaskModel(options.tasks), options_(options) {
  LADON_CHECK(options.levels >= 1, "PLE", "needs at least one level, got ", options.levels);
  LADON_CHECK(options.shared_experts >= 0 && options.task_experts >= 0 &&
                  options.shared_experts + options.task_experts > 0,
              "PLE", "needs experts: shared_experts=", options.shared_experts, " task_experts=", options.task_experts);
  LADON_CHECK(!options.expert_hidden.empty(), "PLE", "expert_hidden needs at least one size");
  LADON_CHECK(options.shared_experts > 0 || options.levels == 1, "PLE",
              "levels above one pass the shared branch on, so they need shared_experts > 0");
  const std::int64_t tasks = static_cast<std::int64_t>(options.tasks.size());
  const std::int64_t width = options.expert_hidden.back();
  // A bank of zero experts is represented by a bank that is never used; build only real ones.
  const std::int64_t task_n = std::max<std::int64_t>(options.task_experts, 1);
  const std::int64_t shared_n = std::max<std::int64_t>(options.shared_experts, 1);
  for (std::int64_t j = 0; j < options.levels; ++j) {
    const std::int64_t in = j == 0 ? options.in : width;
    const bool last = j + 1 == options.levels;
    Level level(ExpertBank(in, shared_n, options.expert_hidden, gen));
    level.has_shared_experts = options.shared_experts > 0;
    level.has_task_experts = options.task_experts > 0;
    for (const TaskSpec& t : tasks_) {
      level.task_experts.add(t.name, ExpertBank(in, task_n, options.expert_hidden, gen));
      level.task_gates.add(t.name, Gate(in, options.task_experts + options.shared_experts, options.gate, gen));
    }
    if (!last) level.shared_gate.emplace_back(in, tasks * options.task_experts + options.shared_experts,
                                              options.gate, gen);
    levels_.push_back(std::move(level));
  }
  towers_ = TaskTowers(width, tasks_, gen);
  last_gates_.resize(options.tasks.size());
}

std::vector<Tensor> PLE::forward(const Tensor& x) {
  LADON_CHECK(x.dim() == 2 && x.shape()[1] == options_.in, "PLE", "expects input [batch, ", options_.in, "], got ",
              shape_str(x.shape()));
  const std::size_t tasks = num_tasks();
  std::vector<Tensor> task_in(tasks, x);
  Tensor shared_in = x;
  std::vector<Tensor> representation;  // each level's shared experts: all sharing passes through them
  for (std::size_t j = 0; j < levels_.size(); ++j) {
    Level& level = levels_[j];
    const bool last = j + 1 == levels_.size();
    const Tensor shared = options_.shared_experts > 0 ? level.shared_experts.forward(shared_in) : Tensor();
    if (shared.defined()) representation.push_back(shared);
    std::vector<Tensor> own(tasks);
    for (std::size_t t = 0; t < tasks; ++t)
      if (options_.task_experts > 0) own[t] = level.task_experts[t].forward(task_in[t]);
    std::vector<Tensor> next(tasks);
    for (std::size_t t = 0; t < tasks; ++t) {
      std::vector<Tensor> pool;  // S^k: task k's experts, then the shared ones
      if (own[t].defined()) pool.push_back(own[t]);
      if (shared.defined()) pool.push_back(shared);
      next[t] = mix(level.task_gates[t](task_in[t]), cat(pool, 1), last ? &last_gates_[t] : nullptr);
    }
    if (!last) {
      std::vector<Tensor> pool;  // every task's experts, then the shared ones
      for (const Tensor& o : own)
        if (o.defined()) pool.push_back(o);
      pool.push_back(shared);
      shared_in = mix(level.shared_gate[0](shared_in), cat(pool, 1), nullptr);
    }
    task_in = std::move(next);
  }
  set_representation(std::move(representation));
  return towers_.forward(task_in);
}

Tensor PLE::gate_weights(std::size_t task) const {
  LADON_CHECK(task < num_tasks(), "gate_weights", "task ", task, " out of range for ", num_tasks(), " tasks");
  LADON_CHECK(last_gates_[task].defined(), "gate_weights", "no forward has run yet");
  return last_gates_[task];
}

void PLE::visit(Visitor& v) {
  for (std::size_t j = 0; j < levels_.size(); ++j) v("levels." + std::to_string(j), levels_[j]);
  v("towers", towers_);
}

}  // namespace ladon::mtl
