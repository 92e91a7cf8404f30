// Linear: y = x Wᵀ + b, over the last dim of x ([batch, in] or [batch, steps, in]).
#pragma once

#include "../core/random.h"
#include "module.h"

namespace ladon::nn {

struct LinearOptions {
  bool bias = true;
};

class Linear : public Layer {
 public:
  // Weight [out, in] and bias [out] drawn from U(-1/sqrt(in), 1/sqrt(in)), as PyTorch does.
  Linear(std::int64_t in, std::int64_t out, LinearOptions options = {}, Generator& gen = default_generator());

  Tensor forward(const Tensor& x) override;
  void visit(Visitor& v) override;

  std::int64_t in_features() const { return weight.shape()[1]; }
  std::int64_t out_features() const { return weight.shape()[0]; }

  Tensor weight;  // [out, in]
  Tensor bias;    // [out], undefined when options.bias is false
};

}  // namespace ladon::nn
