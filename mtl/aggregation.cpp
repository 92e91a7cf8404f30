#include "aggregation.h"

#include <cmath>

#include "../core/ops.h"

namespace ladon::mtl {

namespace {
// Checks the K outputs agree in shape and stacks them to [batch, K, d].
Tensor stack_outputs(const char* op, const std::vector<Tensor>& outputs) {
  LADON_CHECK(!outputs.empty(), op, "needs at least one output");
  for (std::size_t k = 0; k < outputs.size(); ++k)
    LADON_CHECK(outputs[k].dim() == 2 && outputs[k].shape() == outputs[0].shape(), op, "output ", k, " has shape ",
                shape_str(outputs[k].shape()), "; expected [batch, d] like output 0 ", shape_str(outputs[0].shape()));
  return stack(outputs, 1);
}
}  // namespace

Tensor MeanAggregator::operator()(const std::vector<Tensor>& outputs) {
  return mean(stack_outputs("MeanAggregator", outputs), {1});
}

Tensor MaxAggregator::operator()(const std::vector<Tensor>& outputs) {
  return max(stack_outputs("MaxAggregator", outputs), 1).values;
}

Tensor MinAggregator::operator()(const std::vector<Tensor>& outputs) {
  return neg(max(neg(stack_outputs("MinAggregator", outputs)), 1).values);
}

WeightedAggregator::WeightedAggregator(std::int64_t count) : logits_(zeros({count}).requires_grad_()) {
  LADON_CHECK(count > 0, "WeightedAggregator", "needs at least one output, got ", count);
}

Tensor WeightedAggregator::weights() const { return softmax(logits_, 0); }

Tensor WeightedAggregator::operator()(const std::vector<Tensor>& outputs) {
  const Tensor stacked = stack_outputs("WeightedAggregator", outputs);  // [B, K, d]
  LADON_CHECK(stacked.shape()[1] == logits_.shape()[0], "WeightedAggregator", outputs.size(), " outputs for ",
              logits_.shape()[0], " weights");
  return sum(stacked * weights().unsqueeze(1), {1});
}

FusionAggregator::FusionAggregator(std::int64_t count, std::int64_t dim, std::int64_t hidden, std::int64_t out,
                                   Generator& gen)
    : count_(count), hidden_(count * dim, hidden, {}, gen), out_(hidden, out, {}, gen) {}

Tensor FusionAggregator::operator()(const std::vector<Tensor>& outputs) {
  LADON_CHECK(static_cast<std::int64_t>(outputs.size()) == count_, "FusionAggregator", outputs.size(),
              " outputs for a fusion network built for ", count_);
  stack_outputs("FusionAggregator", outputs);  // shape checks
  return out_(relu(hidden_(cat(outputs, 1))));
}

void FusionAggregator::visit(Visitor& v) {
  v("hidden", hidden_);
  v("out", out_);
}

AttentionAggregator::AttentionAggregator(std::int64_t dim, Generator& gen)
    : query_(normal({dim}, 0.0, 1.0 / std::sqrt(static_cast<double>(dim)), gen).requires_grad_()) {}

Tensor AttentionAggregator::operator()(const std::vector<Tensor>& outputs) {
  const Tensor stacked = stack_outputs("AttentionAggregator", outputs);  // [B, K, d]
  const std::int64_t dim = query_.shape()[0];
  LADON_CHECK(stacked.shape()[2] == dim, "AttentionAggregator", "outputs of width ", stacked.shape()[2],
              " for a query of width ", dim);
  const Tensor scores = matmul(stacked, query_.unsqueeze(1)).squeeze(2) * (1.0 / std::sqrt(static_cast<double>(dim)));
  const Tensor weights = softmax(scores, 1);  // [B, K]
  last_weights_ = weights.detach();
  return matmul(weights.unsqueeze(1), stacked).squeeze(1);
}

}  // namespace ladon::mtl
