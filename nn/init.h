// Parameter initialisers. Each overwrites a float32 tensor's values in place (strided views
// included, the rest of the storage untouched), records nothing in the autograd graph, keeps
// requires_grad as it was, and returns the same tensor. Values are drawn from `gen` in row-major
// element order, so a seed fixes the result.
//
// Fans follow PyTorch: a weight is [out, in, k...]; with receptive field r = product of k...,
// fan_in = in * r and fan_out = out * r. Fans need at least 2 dims.
//
//   xavier_uniform_:  U(-b, b),  b   = gain * sqrt(6 / (fan_in + fan_out))
//   xavier_normal_:   N(0, s^2), s   = gain * sqrt(2 / (fan_in + fan_out))
//   kaiming_uniform_: U(-b, b),  b   = gain * sqrt(3 / fan)
//   kaiming_normal_:  N(0, s^2), s   = gain / sqrt(fan)
//
// where fan is fan_in or fan_out (FanMode) and gain = calculate_gain(nonlinearity, a).
#pragma once

#include "layer_fence.h"

#include <cstdint>

#include "../core/random.h"
#include "../core/tensor.h"

namespace ladon::nn {

enum class Nonlinearity { linear, sigmoid, tanh, relu, leaky_relu };
enum class FanMode { fan_in, fan_out };

// The recommended gain for a nonlinearity (PyTorch's table): linear and sigmoid 1, tanh 5/3,
// relu sqrt(2), leaky_relu sqrt(2 / (1 + a^2)) with a its negative slope.
double calculate_gain(Nonlinearity nonlinearity, double a = 0.0);

struct Fans {
  std::int64_t fan_in = 0;
  std::int64_t fan_out = 0;
};
Fans calculate_fans(const Tensor& t);  // throws for fewer than 2 dims

Tensor uniform_(Tensor t, double a, double b, Generator& gen = default_generator());  // U(a, b), a <= b
Tensor normal_(Tensor t, double mean, double std, Generator& gen = default_generator());  // std >= 0
Tensor constant_(Tensor t, double value);
Tensor zeros_(Tensor t);
Tensor ones_(Tensor t);

Tensor xavier_uniform_(Tensor t, double gain = 1.0, Generator& gen = default_generator());
Tensor xavier_normal_(Tensor t, double gain = 1.0, Generator& gen = default_generator());

// a is leaky_relu's negative slope. The default (leaky_relu with a = 0) has gain sqrt(2), the ReLU
// gain, as in PyTorch; kaiming_uniform_(w, std::sqrt(5.0)) reproduces PyTorch's Linear init. A
// non-zero a with any other nonlinearity is an error (it would be silently ignored).
Tensor kaiming_uniform_(Tensor t, double a = 0.0, Nonlinearity nonlinearity = Nonlinearity::leaky_relu,
                        FanMode mode = FanMode::fan_in, Generator& gen = default_generator());
Tensor kaiming_normal_(Tensor t, double a = 0.0, Nonlinearity nonlinearity = Nonlinearity::leaky_relu,
                       FanMode mode = FanMode::fan_in, Generator& gen = default_generator());

}  // namespace ladon::nn
