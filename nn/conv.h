// Conv2d: a learnable 2-D convolution over [N, C, H, W] (or [C, H, W]) images; see conv2d in
// core/ops.h for the output size and the meaning of each option.
#pragma once

#include "layer_fence.h"

#include "../core/ops.h"
#include "../core/random.h"
#include "module.h"

namespace ladon::nn {

struct Conv2dOptions {
  Size2 stride = 1;
  Size2 padding = 0;
  Size2 dilation = 1;
  std::int64_t groups = 1;
  bool bias = true;
};

class Conv2d : public Layer {
 public:
  // Weight [out, in / groups, kh, kw] from kaiming_uniform_(a = sqrt(5)) and bias from
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in / groups * kh * kw, as PyTorch does.
  Conv2d(std::int64_t in, std::int64_t out, Size2 kernel, Conv2dOptions options = {},
         Generator& gen = default_generator());

  Tensor forward(const Tensor& x) override { return forward(x, Activation::none); }
  // activation(conv2d(x)): Sequential calls it with ReLU when a Conv2d is followed by a ReLU layer.
  Tensor forward(const Tensor& x, Activation activation);
  // max_pool2d(activation(conv2d(x)), 2) as one op (core conv2d_max_pool2x2): Sequential calls it
  // for a Conv2d followed by MaxPool2d(2), or by ReLU and MaxPool2d(2).
  Tensor forward_max_pool2x2(const Tensor& x, Activation activation);
  void visit(Visitor& v) override;

  std::int64_t in_channels() const { return weight.shape()[1] * options_.groups; }
  std::int64_t out_channels() const { return weight.shape()[0]; }
  const Conv2dOptions& options() const { return options_; }

  Tensor weight;  // [out, in / groups, kh, kw]
  Tensor bias;    // [out], undefined when options.bias is false

 private:
  ConvOptions conv_options() const;
  Conv2dOptions options_;
};

}  // namespace ladon::nn
