// Aggregators combine K same-shaped outputs ([batch, d] each: task heads, experts, ensemble
// members) into one [batch, d_out]. All share one interface so a model can swap them.
#pragma once

#include "layer_fence.h"

#include <vector>

#include "../core/random.h"
#include "../nn/linear.h"
#include "../nn/module.h"

namespace ladon::mtl {

class Aggregator : public nn::Module {
 public:
  virtual Tensor operator()(const std::vector<Tensor>& outputs) = 0;
};

class MeanAggregator : public Aggregator {  // (1/K) sum_k o_k
 public:
  Tensor operator()(const std::vector<Tensor>& outputs) override;
};

class MaxAggregator : public Aggregator {  // elementwise max over k
 public:
  Tensor operator()(const std::vector<Tensor>& outputs) override;
};

class MinAggregator : public Aggregator {  // elementwise min over k
 public:
  Tensor operator()(const std::vector<Tensor>& outputs) override;
};

// sum_k softmax(w)_k o_k with learned logits w, starting uniform.
class WeightedAggregator : public Aggregator {
 public:
  explicit WeightedAggregator(std::int64_t count);
  Tensor operator()(const std::vector<Tensor>& outputs) override;
  void visit(Visitor& v) override { v("logits", logits_); }
  Tensor weights() const;  // softmax(w), [K]

 private:
  Tensor logits_;
};

// A fusion network: concatenate the K outputs, then Linear-ReLU-Linear to d_out.
class FusionAggregator : public Aggregator {
 public:
  FusionAggregator(std::int64_t count, std::int64_t dim, std::int64_t hidden, std::int64_t out,
                   Generator& gen = default_generator());
  Tensor operator()(const std::vector<Tensor>& outputs) override;
  void visit(Visitor& v) override;

 private:
  std::int64_t count_;
  nn::Linear hidden_, out_;
};

// Attention over outputs: per sample, scores s_k = (o_k . q) / sqrt(d) with a learned query q,
// weights softmax_k(s), result sum_k weight_k o_k. last_weights() shows who was attended.
class AttentionAggregator : public Aggregator {
 public:
  explicit AttentionAggregator(std::int64_t dim, Generator& gen = default_generator());
  Tensor operator()(const std::vector<Tensor>& outputs) override;
  void visit(Visitor& v) override { v("query", query_); }
  Tensor last_weights() const { return last_weights_; }  // [batch, K]

 private:
  Tensor query_;
  Tensor last_weights_;
};

// Selection mechanisms over K heads (the user's "gates" over task or expert heads):

// Random selection: in training each sample takes one head chosen uniformly at random (a
// stochastic ensemble that trains every head); in eval the heads are averaged.
class RandomSelection : public Aggregator {
 public:
  explicit RandomSelection(std::uint64_t seed = 0) : gen_(seed) {}
  Tensor operator()(const std::vector<Tensor>& outputs) override;

 private:
  Generator gen_;
};

// Performance-weighted selection: weights softmax(score / temperature) from running validation
// scores per head (higher is better), updated by report_score() as an exponential moving average.
class PerformanceWeighted : public Aggregator {
 public:
  PerformanceWeighted(std::int64_t count, double temperature = 0.1, double momentum = 0.9);
  void report_score(std::int64_t head, double score);
  std::vector<double> weights() const;
  Tensor operator()(const std::vector<Tensor>& outputs) override;

 private:
  std::vector<double> scores_;
  std::vector<bool> seen_;
  double temperature_, momentum_;
};

// A learned adaptive gate: per-sample weights softmax(Linear(context)) over the K heads, where
// context is the model input (or any representation) given with the outputs.
class AdaptiveGate : public nn::Module {
 public:
  AdaptiveGate(std::int64_t context_dim, std::int64_t count, Generator& gen = default_generator());
  Tensor operator()(const Tensor& context, const std::vector<Tensor>& outputs);
  void visit(Visitor& v) override { v("gate", gate_); }
  Tensor last_weights() const { return last_weights_; }  // [batch, K]

 private:
  nn::Linear gate_;
  Tensor last_weights_;
};

}  // namespace ladon::mtl
