// Initialisers: bounds and spreads from the closed-form formulas, within sampling tolerance.
#include <doctest/doctest.h>

#include <cmath>

#include "ladon.h"
#include "approx.h"
#include "nn/init.h"

using namespace ladon;
using testing::rel;

namespace {
struct Stats {
  double mean = 0, std = 0, largest = 0;  // largest |value|
};
Stats stats(const Tensor& t) {
  const std::vector<float> v = t.to_vector<float>();
  Stats s;
  for (float x : v) {
    s.mean += x;
    s.largest = std::max(s.largest, std::fabs(static_cast<double>(x)));
  }
  s.mean /= static_cast<double>(v.size());
  for (float x : v) s.std += (x - s.mean) * (x - s.mean);
  s.std = std::sqrt(s.std / static_cast<double>(v.size()));
  return s;
}
}  // namespace

TEST_CASE("fans and gains follow PyTorch") {
  const nn::Fans linear = nn::calculate_fans(empty({20, 30}));
  CHECK(linear.fan_in == 30);
  CHECK(linear.fan_out == 20);
  const nn::Fans conv = nn::calculate_fans(empty({16, 8, 3, 5}));  // receptive field 15
  CHECK(conv.fan_in == 120);
  CHECK(conv.fan_out == 240);
  CHECK(nn::calculate_gain(nn::Nonlinearity::linear) == 1.0);
  CHECK(nn::calculate_gain(nn::Nonlinearity::sigmoid) == 1.0);
  CHECK(nn::calculate_gain(nn::Nonlinearity::tanh) == rel(5.0 / 3.0, 1e-6));
  CHECK(nn::calculate_gain(nn::Nonlinearity::relu) == rel(1.41421356, 1e-6));
  CHECK(nn::calculate_gain(nn::Nonlinearity::leaky_relu) == rel(1.41421356, 1e-6));
  CHECK(nn::calculate_gain(nn::Nonlinearity::leaky_relu, 1.0) == rel(1.0, 1e-6));  // sqrt(2 / 2)
  CHECK_THROWS_WITH_AS(nn::calculate_fans(empty({5})),
                       "calculate_fans: fan in and fan out need a tensor with at least 2 dims [out, in, ...], got [5]",
                       Error);
}

// Sampling tolerances below: with n draws the sample mean has standard error std / sqrt(n) and
// the sample std a relative error of about sqrt((kurtosis - 1) / (4 n)) (uniform 1.8, normal 3);
// every check allows more than 5 standard errors.
TEST_CASE("xavier_uniform_ and xavier_normal_") {
  Generator gen(1);
  Tensor w = empty({200, 300});  // fan_in + fan_out = 500, n = 60000
  nn::xavier_uniform_(w, 1.0, gen);
  const double bound = std::sqrt(6.0 / 500.0);  // 0.10954
  Stats s = stats(w);
  CHECK(s.largest <= bound * (1 + 1e-6));
  CHECK(s.largest > 0.999 * bound);
  CHECK(s.std == rel(bound / std::sqrt(3.0), 0.02));  // relative error ~0.0018
  CHECK(std::fabs(s.mean) < 5 * bound / std::sqrt(3.0) / std::sqrt(60000.0));

  nn::xavier_normal_(w, nn::calculate_gain(nn::Nonlinearity::tanh), gen);
  s = stats(w);
  const double std = 5.0 / 3.0 * std::sqrt(2.0 / 500.0);  // 0.10541
  CHECK(s.std == rel(std, 0.02));  // relative error ~0.0029
  CHECK(std::fabs(s.mean) < 5 * std / std::sqrt(60000.0));
  CHECK(s.largest > 3 * std);  // a normal, not a uniform: 60000 draws go past 3 std
}

TEST_CASE("kaiming_uniform_ and kaiming_normal_") {
  Generator gen(2);
  // kaiming_uniform_(w, sqrt(5)) is PyTorch's Linear init: gain sqrt(1/3), bound
  // sqrt(1/3) * sqrt(3 / fan_in) = 1 / sqrt(fan_in) = 1/8 here.
  Tensor w = empty({100, 64});
  nn::kaiming_uniform_(w, std::sqrt(5.0), nn::Nonlinearity::leaky_relu, nn::FanMode::fan_in, gen);
  Stats s = stats(w);
  CHECK(s.largest <= 0.125 * (1 + 1e-6));
  CHECK(s.largest > 0.99 * 0.125);  // P(all 6400 inside 0.99 of the range) = 0.99^6400 ~ e^-64
  CHECK(s.std == rel(0.125 / std::sqrt(3.0), 0.03));  // n = 6400: ~0.0056

  // Default: ReLU gain, fan_in. A conv weight [64, 32, 3, 3]: fan_in = 288, fan_out = 576.
  Tensor conv = empty({64, 32, 3, 3});  // n = 18432
  nn::kaiming_uniform_(conv, 0.0, nn::Nonlinearity::relu, nn::FanMode::fan_in, gen);
  s = stats(conv);
  CHECK(s.largest <= std::sqrt(6.0 / 288.0) * (1 + 1e-6));  // sqrt(2) * sqrt(3 / 288)
  CHECK(s.largest > 0.999 * std::sqrt(6.0 / 288.0));
  nn::kaiming_normal_(conv, 0.0, nn::Nonlinearity::leaky_relu, nn::FanMode::fan_in, gen);
  CHECK(stats(conv).std == rel(std::sqrt(2.0 / 288.0), 0.03));  // ~0.0052
  nn::kaiming_normal_(conv, 0.0, nn::Nonlinearity::relu, nn::FanMode::fan_out, gen);
  CHECK(stats(conv).std == rel(std::sqrt(2.0 / 576.0), 0.03));
  CHECK(std::fabs(stats(conv).mean) < 5 * std::sqrt(2.0 / 576.0) / std::sqrt(18432.0));

  CHECK_THROWS_WITH_AS(nn::kaiming_uniform_(w, 0.2, nn::Nonlinearity::relu),
                       "kaiming_uniform_: a = 0.2 is leaky_relu's negative slope and has no effect with "
                       "nonlinearity relu",
                       Error);
  Tensor bias = empty({10});
  CHECK_THROWS_AS(nn::kaiming_normal_(bias), Error);
}

TEST_CASE("uniform_, normal_, constant_, zeros_") {
  Generator gen(3);
  Tensor t = empty({50000});
  nn::uniform_(t, -1.0, 3.0, gen);
  const std::vector<float> v = t.to_vector<float>();
  bool inside = true;
  for (float x : v) inside &= x >= -1.0f && x < 3.0f;
  CHECK(inside);
  Stats s = stats(t);
  CHECK(s.mean == rel(1.0, 0.03));  // standard error 4 / sqrt(12 n) = 0.0052
  CHECK(s.std == rel(4.0 / std::sqrt(12.0), 0.02));

  nn::normal_(t, 3.0, 0.5, gen);
  s = stats(t);
  CHECK(s.mean == rel(3.0, 0.005));  // standard error 0.0022
  CHECK(s.std == rel(0.5, 0.02));

  nn::constant_(t, 2.5);
  CHECK(equal(t, full({50000}, 2.5)));
  nn::zeros_(t);
  CHECK(equal(t, zeros({50000})));
  nn::ones_(t);
  CHECK(equal(t, ones({50000})));

  CHECK_THROWS_WITH_AS(nn::uniform_(t, 1.0, 0.0), "uniform_: low 1 is above high 0", Error);
  CHECK_THROWS_WITH_AS(nn::normal_(t, 0.0, -1.0), "normal_: std must be non-negative, got -1", Error);
  CHECK_THROWS_WITH_AS(nn::zeros_(zeros({2}, Dtype::int64)),
                       "zeros_: expected a float32 tensor, got int64 of shape [2]", Error);
}

TEST_CASE("initialisers are deterministic by seed, keep parameters leaves, and fill strided views") {
  Tensor a = empty({8, 8}), b = empty({8, 8});
  Generator g1(42), g2(42), g3(43);
  nn::xavier_normal_(a, 1.0, g1);
  nn::xavier_normal_(b, 1.0, g2);
  CHECK(equal(a, b));
  nn::xavier_normal_(b, 1.0, g3);
  CHECK_FALSE(equal(a, b));

  // A parameter stays a leaf that requires grad, with no history.
  Tensor w = zeros({4, 3}).requires_grad_();
  const Tensor returned = nn::kaiming_uniform_(w);
  CHECK(returned.same(w));
  CHECK(w.requires_grad());
  CHECK(w.is_leaf());
  CHECK(sum(ne(w, scalar(0.0))).item() == 12);  // every element written

  // A column slice of a matrix: only the slice changes.
  Tensor m = zeros({3, 4});
  nn::constant_(m.narrow(1, 1, 2), 7.0);
  CHECK(m.to_vector<float>() == std::vector<float>{0, 7, 7, 0, 0, 7, 7, 0, 0, 7, 7, 0});
  Tensor mt = zeros({2, 3});
  Generator g4(9), g5(9);
  nn::uniform_(mt.t(), 1.0, 2.0, g4);  // transposed: element (i, j) of the view is mt[j][i]
  const Tensor ref = uniform({3, 2}, 1.0, 2.0, g5);  // same draws, row-major over the view
  CHECK(equal(mt.t().contiguous(), ref));
}
