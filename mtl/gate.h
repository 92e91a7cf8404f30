// A softmax gate over experts: g(x) = softmax(net(x) / temperature), one row of weights per sample.
// The MMoE paper's gate is one Linear layer on the raw input (GateOptions::hidden empty); hidden
// sizes make it an MLP with ReLU between layers. A temperature above 1 flattens the weights, below
// 1 sharpens them towards the top expert.
#pragma once

#include "layer_fence.h"

#include <span>

#include <vector>

#include "../core/random.h"
#include "../nn/linear.h"
#include "../nn/module.h"

namespace ladon::mtl {

struct GateOptions {
  double temperature = 1.0;
  std::vector<std::int64_t> hidden = {};
};

class Gate : public nn::Module {
 public:
  Gate(std::int64_t in, std::int64_t experts, const GateOptions& options = {}, Generator& gen = default_generator());

  Tensor forward(const Tensor& x);  // [batch, in] -> [batch, experts], rows sum to 1
  Tensor operator()(const Tensor& x) { return forward(x); }
  // Layers are named "0", "1", ... so a task's gate reads gates.<task>.0.weight in a checkpoint.
  void visit(Visitor& v) override;

  std::int64_t in_features() const { return layers_.front().in_features(); }
  std::int64_t num_experts() const { return layers_.back().out_features(); }
  double temperature() const { return temperature_; }

  friend Tensor forward_gates(std::span<Gate> gates, const Tensor& x);

  // Keeps only the outputs of the listed experts (ascending, distinct), i.e. those rows of the last
  // layer; every other weight is untouched. Used when unused experts are dropped.
  void keep_experts(const std::vector<std::int64_t>& experts);

 private:
  double temperature_;
  std::vector<nn::Linear> layers_;
};

// Every gate's weights on the same input, [batch, gates, experts], as gates[g](x) stacked. Several
// single-layer gates with one temperature (the paper's MMoE) run as one GEMM over their
// concatenated weights: one wide GEMM is much faster than skinny ones (8 experts fill a quarter of
// a 32-wide micro-kernel tile), and the copy of the weights per step is small next to it.
Tensor forward_gates(std::span<Gate> gates, const Tensor& x);

// Checks that `keep` lists distinct experts in [0, experts) in ascending order, at least one, and
// returns it as an int64 index tensor for index_select.
Tensor expert_index(const char* op, const std::vector<std::int64_t>& keep, std::int64_t experts);

}  // namespace ladon::mtl
