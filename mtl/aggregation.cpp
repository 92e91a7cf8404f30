#include "aggregation.h"

#include <algorithm>
#include <cmath>

#include "../core/ops.h"

namespace ladon::mtl {

namespace {
// The fusion network's input width, count * dim, after checking every size is positive.
std::int64_t checked_fusion_width(std::int64_t count, std::int64_t dim, std::int64_t hidden, std::int64_t out) {
  LADON_CHECK(count > 0 && dim > 0 && hidden > 0 && out > 0, "FusionAggregator",
              "sizes must be positive, got count=", count, " dim=", dim, " hidden=", hidden, " out=", out);
  return count * dim;
}

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
    : count_(count), hidden_(checked_fusion_width(count, dim, hidden, out), hidden, {}, gen), out_(hidden, out, {}, gen) {}

Tensor FusionAggregator::operator()(const std::vector<Tensor>& outputs) {
  LADON_CHECK(static_cast<std::int64_t>(outputs.size()) == count_, "FusionAggregator", outputs.size(),
              " outputs for a fusion network built for ", count_);
  const Tensor stacked = stack_outputs("FusionAggregator", outputs);  // [B, K, d], shapes agree
  const std::int64_t dim = hidden_.in_features() / count_;
  LADON_CHECK(stacked.shape()[2] == dim, "FusionAggregator", "outputs of width ", stacked.shape()[2],
              " for a fusion network built for width ", dim);
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
  return mix(weights, stacked);
}

Tensor RandomSelection::operator()(const std::vector<Tensor>& outputs) {
  const Tensor stacked = stack_outputs("RandomSelection", outputs);  // [B, K, d]
  if (!is_training()) return mean(stacked, {1});
  const std::int64_t batch = stacked.shape()[0], count = stacked.shape()[1];
  Tensor pick = zeros({batch, count});
  for (std::int64_t b = 0; b < batch; ++b)
    pick.data<float>()[b * count + static_cast<std::int64_t>(gen_.below(static_cast<std::uint64_t>(count)))] = 1.0f;
  return sum(stacked * pick.unsqueeze(2), {1});
}

PerformanceWeighted::PerformanceWeighted(std::int64_t count, double temperature, double momentum)
    : scores_(static_cast<std::size_t>(count), 0.0),
      seen_(static_cast<std::size_t>(count), false),
      temperature_(temperature),
      momentum_(momentum) {
  LADON_CHECK(count > 0, "PerformanceWeighted", "needs at least one head, got ", count);
  LADON_CHECK(temperature > 0, "PerformanceWeighted", "temperature must be positive, got ", temperature);
  LADON_CHECK(momentum >= 0 && momentum < 1, "PerformanceWeighted", "momentum must be in [0, 1), got ", momentum);
}

void PerformanceWeighted::report_score(std::int64_t head, double score) {
  LADON_CHECK(head >= 0 && head < static_cast<std::int64_t>(scores_.size()), "PerformanceWeighted", "head ", head,
              " out of range for ", scores_.size(), " heads");
  // A NaN would make every weight NaN (softmax over it), an infinity every other weight 0.
  LADON_CHECK(std::isfinite(score), "PerformanceWeighted", "score for head ", head, " must be finite, got ", score);
  double& s = scores_[static_cast<std::size_t>(head)];
  s = seen_[head] ? momentum_ * s + (1 - momentum_) * score : score;
  seen_[head] = true;
}

std::vector<double> PerformanceWeighted::weights() const {
  const double top = *std::max_element(scores_.begin(), scores_.end());
  std::vector<double> w(scores_.size());
  double total = 0;
  for (std::size_t k = 0; k < w.size(); ++k) total += w[k] = std::exp((scores_[k] - top) / temperature_);
  for (double& v : w) v /= total;
  return w;
}

Tensor PerformanceWeighted::operator()(const std::vector<Tensor>& outputs) {
  const Tensor stacked = stack_outputs("PerformanceWeighted", outputs);
  LADON_CHECK(stacked.shape()[1] == static_cast<std::int64_t>(scores_.size()), "PerformanceWeighted", outputs.size(),
              " outputs for ", scores_.size(), " heads");
  const std::vector<double> w = weights();
  return sum(stacked * tensor(std::vector<float>(w.begin(), w.end()), {1, stacked.shape()[1], 1}), {1});
}

AdaptiveGate::AdaptiveGate(std::int64_t context_dim, std::int64_t count, Generator& gen)
    : gate_(context_dim, count, {}, gen) {}

Tensor AdaptiveGate::operator()(const Tensor& context, const std::vector<Tensor>& outputs) {
  const Tensor stacked = stack_outputs("AdaptiveGate", outputs);
  LADON_CHECK(stacked.shape()[1] == gate_.out_features(), "AdaptiveGate", outputs.size(), " outputs for a gate over ",
              gate_.out_features());
  const Tensor weights = softmax(gate_(context), 1);  // [B, K]
  last_weights_ = weights.detach();
  return mix(weights, stacked);
}

}  // namespace ladon::mtl
