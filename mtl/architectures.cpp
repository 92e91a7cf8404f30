#include "architectures.h"

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

std::vector<Tensor> SharedBottom::forward(const Tensor& x) {
  check_input("SharedBottom", x, static_cast<nn::Linear&>(trunk_[0]).in_features());
  const Tensor shared = trunk_(x);
  std::vector<Tensor> outputs;
  for (nn::Sequential& tower : towers_) outputs.push_back(tower(shared));
  return outputs;
}

void SharedBottom::visit(Visitor& v) {
  v("trunk", trunk_);
  for (std::size_t t = 0; t < towers_.size(); ++t) v("towers." + tasks_[t].name, towers_[t]);
}

GatedMixture::GatedMixture(const MoEOptions& options, std::int64_t gates, Generator& gen)
    : MultiTaskModel(options.tasks),
      gates_(gates),
      experts_(options.in, options.experts, options.expert_hidden, gen),
      gate_(options.in, gates * options.experts, {}, gen),
      towers_(make_towers(options.expert_hidden.back(), options.tasks, gen)) {}

std::vector<Tensor> GatedMixture::forward(const Tensor& x) {
  check_input(gates_ == 1 ? "OMoE" : "MMoE", x, gate_.in_features());
  const std::int64_t batch = x.shape()[0];
  const Tensor expert_out = experts_.forward(x);                                          // [B, E, H]
  const Tensor gates = softmax(gate_(x).reshape({batch, gates_, num_experts()}), -1);     // [B, G, E]
  last_gates_ = gates.detach();
  const Tensor mixed = matmul(gates, expert_out);                                         // [B, G, H]
  std::vector<Tensor> outputs;
  for (std::size_t t = 0; t < towers_.size(); ++t) {
    const std::int64_t g = gates_ == 1 ? 0 : static_cast<std::int64_t>(t);
    outputs.push_back(towers_[t](mixed.narrow(1, g, 1).squeeze(1)));
  }
  return outputs;
}

Tensor GatedMixture::gate_weights(std::size_t task) const {
  LADON_CHECK(last_gates_.defined(), "gate_weights", "no forward has run yet");
  LADON_CHECK(task < num_tasks(), "gate_weights", "task ", task, " out of range for ", num_tasks(), " tasks");
  return last_gates_.narrow(1, gates_ == 1 ? 0 : static_cast<std::int64_t>(task), 1).squeeze(1);
}

void GatedMixture::visit(Visitor& v) {
  v("experts", experts_);
  v("gate", gate_);
  for (std::size_t t = 0; t < towers_.size(); ++t) v("towers." + tasks_[t].name, towers_[t]);
}

}  // namespace ladon::mtl
