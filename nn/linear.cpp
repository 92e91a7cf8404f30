#include "linear.h"

#include <cmath>

#include "../core/ops.h"

namespace ladon::nn {

Linear::Linear(std::int64_t in, std::int64_t out, LinearOptions options, Generator& gen) {
  LADON_CHECK(in > 0 && out > 0, "Linear", "sizes must be positive, got in=", in, " out=", out);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = uniform({out, in}, -bound, bound, gen).requires_grad_();
  if (options.bias) bias = uniform({out}, -bound, bound, gen).requires_grad_();
}

Tensor Linear::forward(const Tensor& x, Activation activation) {
  LADON_CHECK(x.dim() >= 1 && x.shape().back() == in_features(), "Linear", "input ", shape_str(x.shape()),
              " does not end in in_features=", in_features(), " (weight ", shape_str(weight.shape()), ")");
  // linear() takes [batch, in]; any other rank is folded into the batch and back.
  if (x.dim() == 2) return linear(x, weight, bias, activation);
  Shape shape = x.shape();
  shape.back() = out_features();
  return linear(x.reshape({-1, in_features()}), weight, bias, activation).reshape(shape);
}

void Linear::visit(Visitor& v) {
  v("weight", weight);
  if (bias.defined()) v("bias", bias);
}

}  // namespace ladon::nn
