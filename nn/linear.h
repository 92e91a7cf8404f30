// Linear: y = x Wᵀ + b, over the last dim of x ([batch, in] or [batch, steps, in]).
#pragma once

#include "layer_fence.h"

#include "../core/ops.h"
#include "../core/random.h"
#include "module.h"

namespace ladon::nn {

struct LinearOptions {
  bool bias = true;
};

// y = activation(x Wᵀ + b) in one GEMM with a fused epilogue (core linear()). Sequential calls it
// with ReLU when a Linear is followed by a ReLU layer, so MLPs get the fusion without asking.

class Linear : public Layer {
 public:
  // Weight [out, in] and bias [out] drawn from U(-1/sqrt(in), 1/sqrt(in)), as PyTorch does.
  Linear(std::int64_t in, std::int64_t out, LinearOptions options = {}, Generator& gen = default_generator());

  Tensor forward(const Tensor& x) override { return forward(x, Activation::none); }
  Tensor forward(const Tensor& x, Activation activation);
  void visit(Visitor& v) override;

  std::int64_t in_features() const { return weight.shape()[1]; }
  std::int64_t out_features() const { return weight.shape()[0]; }

  Tensor weight;  // [out, in]
  Tensor bias;    // [out], undefined when options.bias is false
};

}  // namespace ladon::nn
