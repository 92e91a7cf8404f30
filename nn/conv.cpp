#include "conv.h"

#include <cmath>

#include "init.h"

namespace ladon::nn {

Conv2d::Conv2d(std::int64_t in, std::int64_t out, Size2 kernel, Conv2dOptions options, Generator& gen)
    : options_(options) {
  LADON_CHECK(in > 0 && out > 0, "Conv2d", "channel counts must be positive, got in=", in, " out=", out);
  LADON_CHECK(kernel.h > 0 && kernel.w > 0, "Conv2d", "kernel size must be positive, got (", kernel.h, ", ", kernel.w,
              ")");
  LADON_CHECK(options.groups > 0 && in % options.groups == 0 && out % options.groups == 0, "Conv2d", "groups=",
              options.groups, " must divide in=", in, " and out=", out);
  weight = empty({out, in / options.groups, kernel.h, kernel.w});
  kaiming_uniform_(weight, std::sqrt(5.0), Nonlinearity::leaky_relu, FanMode::fan_in, gen);
  weight.requires_grad_();
  if (options.bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(calculate_fans(weight).fan_in));
    bias = uniform({out}, -bound, bound, gen).requires_grad_();
  }
}

ConvOptions Conv2d::conv_options() const {
  return {
      .stride = options_.stride, .padding = options_.padding, .dilation = options_.dilation, .groups = options_.groups};
}

Tensor Conv2d::forward(const Tensor& x, Activation activation) {
  return conv2d(x, weight, bias, conv_options(), activation);
}

Tensor Conv2d::forward_max_pool2x2(const Tensor& x, Activation activation) {
  return conv2d_max_pool2x2(x, weight, bias, conv_options(), activation);
}

void Conv2d::visit(Visitor& v) {
  v("weight", weight);
  if (bias.defined()) v("bias", bias);
}

}  // namespace ladon::nn
