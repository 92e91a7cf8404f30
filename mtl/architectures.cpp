#include "architectures.h"

#include <algorithm>

#include "../core/autograd.h"
#include "../core/ops.h"
#include "../nn/linear.h"

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
      towers_(make_towers(options.trunk_hidden.back(), options.tasks, gen)) {}

SharedBottom::SharedBottom(nn::Sequential trunk, std::int64_t trunk_out, std::vector<TaskSpec> tasks, Generator& gen)
    : MultiTaskModel(std::move(tasks)), trunk_(std::move(trunk)), towers_(make_towers(trunk_out, tasks_, gen)) {
  LADON_CHECK(trunk_.size() > 0, "SharedBottom", "the trunk has no layers");
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
      gates_(per_task_gates ? static_cast<std::int64_t>(options.tasks.size()) : 1),
      experts_(options.in, options.experts, options.expert_hidden, gen),
      gate_(options.in, gates_ * options.experts, {}, gen),
      towers_(make_towers(options.expert_hidden.back(), options.tasks, gen)) {}

std::vector<Tensor> GatedMixture::forward(const Tensor& x) {
  check_input(per_task_gates_ ? "MMoE" : "OMoE", x, gate_.in_features());
  const std::int64_t batch = x.shape()[0];
  const Tensor expert_out = experts_.forward(x);                                          // [B, E, H]
  const Tensor gates = softmax(gate_(x).reshape({batch, gates_, num_experts()}), -1);     // [B, G, E]
  last_gates_ = gates.detach();
  const Tensor mixed = matmul(gates, expert_out);                                         // [B, G, H]
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

namespace {
// A copy of the gate with output rows [keep_begin, keep_end) of the old one followed by `extra`
// fresh rows: each gate owns one contiguous block of experts rows in [gates * experts, in].
nn::Linear regate(const nn::Linear& old, std::int64_t keep_begin, std::int64_t keep_end, std::int64_t skip_begin,
                  std::int64_t skip_end, std::int64_t extra, Generator& gen) {
  const std::int64_t in = old.in_features();
  const std::int64_t rows = (keep_end - keep_begin) - (skip_end - skip_begin) + extra;
  nn::Linear gate(in, rows, {}, gen);
  NoGradGuard no_grad;
  float* w = gate.weight.data<float>();
  float* b = gate.bias.data<float>();
  std::int64_t at = 0;
  for (std::int64_t r = keep_begin; r < keep_end; ++r, ++at) {
    if (r >= skip_begin && r < skip_end) {
      --at;
      continue;
    }
    std::copy_n(old.weight.data<float>() + r * in, in, w + at * in);
    b[at] = old.bias.data<float>()[r];
  }
  return gate;
}
}  // namespace

void GatedMixture::add_task(const TaskSpec& task, Generator& gen) {
  for (const TaskSpec& t : tasks_)
    LADON_CHECK(t.name != task.name, "add_task", "a task named '", task.name, "' exists already");
  LADON_CHECK(task.out > 0, "add_task", "task '", task.name, "' has output size ", task.out);
  if (per_task_gates_) {
    const std::int64_t experts = num_experts();
    gate_ = regate(gate_, 0, gates_ * experts, 0, 0, experts, gen);
    gates_++;
  }
  towers_.push_back(mlp(experts_.out_features(), task.tower_hidden, task.out, false, gen));
  tasks_.push_back(task);
  last_gates_ = Tensor();
}

void GatedMixture::remove_task(const std::string& name) {
  const auto it = std::find_if(tasks_.begin(), tasks_.end(), [&](const TaskSpec& t) { return t.name == name; });
  LADON_CHECK(it != tasks_.end(), "remove_task", "no task named '", name, "'");
  LADON_CHECK(tasks_.size() > 1, "remove_task", "cannot remove the only task '", name, "'");
  const std::int64_t t = it - tasks_.begin();
  if (per_task_gates_) {
    const std::int64_t experts = num_experts();
    Generator unused;
    gate_ = regate(gate_, 0, gates_ * experts, t * experts, (t + 1) * experts, 0, unused);
    gates_--;
  }
  towers_.erase(towers_.begin() + t);
  tasks_.erase(it);
  last_gates_ = Tensor();
}

void GatedMixture::visit(Visitor& v) {
  v("experts", experts_);
  v("gate", gate_);
  for (std::size_t t = 0; t < towers_.size(); ++t) v("towers." + tasks_[t].name, towers_[t]);
}

}  // namespace ladon::mtl
