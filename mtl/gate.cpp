#include "gate.h"

#include <algorithm>

#include "../core/autograd.h"
#include "../core/ops.h"

namespace ladon::mtl {

Gate::Gate(std::int64_t in, std::int64_t experts, const GateOptions& options, Generator& gen)
    : temperature_(options.temperature) {
  LADON_CHECK(options.temperature > 0, "Gate", "temperature must be positive, got ", options.temperature);
  LADON_CHECK(in > 0 && experts > 0, "Gate", "needs in > 0 and experts > 0, got in=", in, " experts=", experts);
  std::int64_t width = in;
  for (std::int64_t h : options.hidden) {
    LADON_CHECK(h > 0, "Gate", "hidden sizes must be positive, got ", shape_str(options.hidden));
    layers_.emplace_back(width, h, nn::LinearOptions{}, gen);
    width = h;
  }
  layers_.emplace_back(width, experts, nn::LinearOptions{}, gen);
}

Tensor Gate::forward(const Tensor& x) {
  Tensor h = layers_[0](x);
  for (std::size_t l = 1; l < layers_.size(); ++l) h = layers_[l](relu(h));
  // The default temperature skips the division, so the paper's gate costs exactly what it did.
  if (temperature_ != 1.0) h = h / temperature_;
  return softmax(h, -1);
}

void Gate::visit(Visitor& v) {
  for (std::size_t l = 0; l < layers_.size(); ++l) v(std::to_string(l), layers_[l]);
}

void Gate::keep_experts(const std::vector<std::int64_t>& experts) {
  const Tensor index = expert_index("Gate::keep_experts", experts, num_experts());
  NoGradGuard no_grad;
  nn::Linear& last = layers_.back();
  last.weight = index_select(last.weight, 0, index).requires_grad_();
  last.bias = index_select(last.bias, 0, index).requires_grad_();
}

Tensor forward_gates(std::span<Gate> gates, const Tensor& x) {
  LADON_CHECK(!gates.empty(), "forward_gates", "needs at least one gate");
  if (gates.size() == 1) return gates[0](x).unsqueeze(1);
  const Gate& first = gates[0];
  const bool fusable = std::all_of(gates.begin(), gates.end(), [&](const Gate& g) {
    return g.layers_.size() == 1 && g.temperature_ == first.temperature_ && g.num_experts() == first.num_experts();
  });
  if (!fusable) {
    std::vector<Tensor> weights;
    for (Gate& g : gates) weights.push_back(g(x));
    return stack(weights, 1);
  }
  std::vector<Tensor> w, b;
  for (const Gate& g : gates) {
    w.push_back(g.layers_[0].weight);
    b.push_back(g.layers_[0].bias);
  }
  LADON_CHECK(x.dim() == 2 && x.shape()[1] == first.in_features(), "forward_gates", "expects input [batch, ",
              first.in_features(), "], got ", shape_str(x.shape()));
  Tensor logits = linear(x, cat(w, 0), cat(b, 0)).reshape(
      {x.shape()[0], static_cast<std::int64_t>(gates.size()), first.num_experts()});
  if (first.temperature_ != 1.0) logits = logits / first.temperature_;
  return softmax(logits, -1);
}

Tensor expert_index(const char* op, const std::vector<std::int64_t>& keep, std::int64_t experts) {
  LADON_CHECK(!keep.empty(), op, "must keep at least one of ", experts, " experts");
  for (std::size_t i = 0; i < keep.size(); ++i)
    LADON_CHECK(keep[i] >= 0 && keep[i] < experts && (i == 0 || keep[i] > keep[i - 1]), op,
                "experts to keep must be ascending, distinct and in [0, ", experts, "), got ", shape_str(keep));
  return tensor(keep, {static_cast<std::int64_t>(keep.size())});
}

}  // namespace ladon::mtl
