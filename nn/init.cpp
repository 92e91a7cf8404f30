#include "init.h"

#include <cmath>

#include "../core/autograd.h"
#include "../core/ops.h"

namespace ladon::nn {

namespace {

// Writes draw() into every element of t in row-major order. A strided view is filled through a
// contiguous scratch copy, so elements of the storage outside the view stay untouched.
template <typename Draw>
Tensor fill(const char* op, Tensor t, Draw draw) {
  LADON_CHECK(t.defined(), op, "called on an undefined tensor");
  LADON_CHECK(t.dtype() == Dtype::float32, op, "expected a float32 tensor, got ", dtype_name(t.dtype()), " of shape ",
              shape_str(t.shape()));
  NoGradGuard no_grad;
  const bool direct = t.is_contiguous();
  Tensor target = direct ? t : empty(t.shape());
  float* p = target.data<float>();
  for (std::int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = static_cast<float>(draw());
  if (!direct) detail::copy_into(t, target);
  return t;
}

const char* name_of(Nonlinearity nonlinearity) {
  switch (nonlinearity) {
    case Nonlinearity::linear: return "linear";
    case Nonlinearity::sigmoid: return "sigmoid";
    case Nonlinearity::tanh: return "tanh";
    case Nonlinearity::relu: return "relu";
    case Nonlinearity::leaky_relu: return "leaky_relu";
  }
  return "unknown";
}

double kaiming_std(const char* op, const Tensor& t, double a, Nonlinearity nonlinearity, FanMode mode) {
  LADON_CHECK(a == 0.0 || nonlinearity == Nonlinearity::leaky_relu, op, "a = ", a,
              " is leaky_relu's negative slope and has no effect with nonlinearity ", name_of(nonlinearity));
  const Fans fans = calculate_fans(t);
  const std::int64_t fan = mode == FanMode::fan_in ? fans.fan_in : fans.fan_out;
  LADON_CHECK(fan > 0 || t.numel() == 0, op, "fan is 0 for a tensor of shape ", shape_str(t.shape()));
  return calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
}

double xavier_std(const char* op, const Tensor& t, double gain) {
  const Fans fans = calculate_fans(t);
  LADON_CHECK(fans.fan_in + fans.fan_out > 0 || t.numel() == 0, op, "fans are 0 for a tensor of shape ",
              shape_str(t.shape()));
  return gain * std::sqrt(2.0 / static_cast<double>(fans.fan_in + fans.fan_out));
}

}  // namespace

double calculate_gain(Nonlinearity nonlinearity, double a) {
  switch (nonlinearity) {
    case Nonlinearity::linear:
    case Nonlinearity::sigmoid: return 1.0;
    case Nonlinearity::tanh: return 5.0 / 3.0;
    case Nonlinearity::relu: return std::sqrt(2.0);
    case Nonlinearity::leaky_relu: return std::sqrt(2.0 / (1.0 + a * a));
  }
  detail::fail("calculate_gain", "unknown nonlinearity ", static_cast<int>(nonlinearity));
}

Fans calculate_fans(const Tensor& t) {
  LADON_CHECK(t.defined(), "calculate_fans", "called on an undefined tensor");
  LADON_CHECK(t.dim() >= 2, "calculate_fans",
              "fan in and fan out need a tensor with at least 2 dims [out, in, ...], got ", shape_str(t.shape()));
  std::int64_t receptive = 1;
  for (std::int64_t d = 2; d < t.dim(); ++d) receptive *= t.shape()[d];
  return {t.shape()[1] * receptive, t.shape()[0] * receptive};
}

Tensor uniform_(Tensor t, double a, double b, Generator& gen) {
  LADON_CHECK(a <= b, "uniform_", "low ", a, " is above high ", b);
  return fill("uniform_", std::move(t), [&] { return a + (b - a) * gen.uniform(); });
}

Tensor normal_(Tensor t, double mean, double std, Generator& gen) {
  LADON_CHECK(std >= 0.0, "normal_", "std must be non-negative, got ", std);
  return fill("normal_", std::move(t), [&] { return mean + std * gen.normal(); });
}

Tensor constant_(Tensor t, double value) {
  return fill("constant_", std::move(t), [value] { return value; });
}

Tensor zeros_(Tensor t) { return fill("zeros_", std::move(t), [] { return 0.0; }); }
Tensor ones_(Tensor t) { return fill("ones_", std::move(t), [] { return 1.0; }); }

Tensor xavier_uniform_(Tensor t, double gain, Generator& gen) {
  // A uniform U(-b, b) has std b / sqrt(3).
  const double bound = std::sqrt(3.0) * xavier_std("xavier_uniform_", t, gain);
  return fill("xavier_uniform_", std::move(t), [&] { return bound * (2.0 * gen.uniform() - 1.0); });
}

Tensor xavier_normal_(Tensor t, double gain, Generator& gen) {
  const double std = xavier_std("xavier_normal_", t, gain);
  return fill("xavier_normal_", std::move(t), [&] { return std * gen.normal(); });
}

Tensor kaiming_uniform_(Tensor t, double a, Nonlinearity nonlinearity, FanMode mode, Generator& gen) {
  const double bound = std::sqrt(3.0) * kaiming_std("kaiming_uniform_", t, a, nonlinearity, mode);
  return fill("kaiming_uniform_", std::move(t), [&] { return bound * (2.0 * gen.uniform() - 1.0); });
}

Tensor kaiming_normal_(Tensor t, double a, Nonlinearity nonlinearity, FanMode mode, Generator& gen) {
  const double std = kaiming_std("kaiming_normal_", t, a, nonlinearity, mode);
  return fill("kaiming_normal_", std::move(t), [&] { return std * gen.normal(); });
}

}  // namespace ladon::nn
