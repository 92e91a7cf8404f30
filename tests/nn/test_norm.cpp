// BatchNorm1d/2d and LayerNorm against statistics worked out by hand.
#include <doctest/doctest.h>

#include <cmath>

#include "approx.h"
#include "ladon.h"
#include "nn/norm.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;
using ladon::testing::rel;

namespace {
using In = const std::vector<Tensor>&;
}  // namespace

TEST_CASE("BatchNorm1d: training uses batch statistics and updates the running ones") {
  nn::BatchNorm1d bn(2);
  CHECK(values(bn.weight) == std::vector<float>{1, 1});
  CHECK(values(bn.bias) == std::vector<float>{0, 0});
  CHECK(values(bn.running_mean) == std::vector<float>{0, 0});
  CHECK(values(bn.running_var) == std::vector<float>{1, 1});
  bn.weight = tensor({2.0f, 1.0f}).requires_grad_();
  bn.bias = tensor({0.5f, -1.0f}).requires_grad_();
  // Feature 0: [0, 0, 2, 2], mean 1, biased var 1, unbiased 4/3.
  // Feature 1: [1, 3, 5, 7], mean 4, biased var (9 + 1 + 1 + 9) / 4 = 5, unbiased 20/3.
  const Tensor x = tensor({0, 1, 0, 3, 2, 5, 2, 7}, {4, 2});
  const std::vector<float> y = values(bn(x));
  const double s0 = std::sqrt(1.0 + 1e-5), s1 = std::sqrt(5.0 + 1e-5);
  const std::vector<double> expected{2 * -1 / s0 + 0.5, -3 / s1 - 1, 2 * -1 / s0 + 0.5, -1 / s1 - 1,
                                     2 * 1 / s0 + 0.5,  1 / s1 - 1,  2 * 1 / s0 + 0.5,  3 / s1 - 1};
  for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == rel(expected[i], 1e-6));
  // running = 0.9 * running + 0.1 * batch statistic.
  const std::vector<float> rm = values(bn.running_mean), rv = values(bn.running_var);
  CHECK(rm[0] == rel(0.1, 1e-6));
  CHECK(rm[1] == rel(0.4, 1e-6));
  CHECK(rv[0] == rel(0.9 + 0.1 * 4.0 / 3.0, 1e-6));
  CHECK(rv[1] == rel(0.9 + 0.1 * 20.0 / 3.0, 1e-6));

  // Eval: the running statistics, and nothing updates.
  bn.eval();
  const std::vector<float> e = values(bn(tensor({1.1f, 0.4f, 0.1f, 1.4f}, {2, 2})));
  const double v0 = std::sqrt(0.9 + 0.4 / 3.0 + 1e-5), v1 = std::sqrt(0.9 + 2.0 / 3.0 + 1e-5);
  CHECK(e[0] == rel(2 * 1.0 / v0 + 0.5, 1e-5));
  CHECK(e[1] == rel(-1.0, 1e-6));  // (0.4 - 0.4) / v1 * 1 - 1
  CHECK(e[2] == rel(0.5, 1e-6));   // (0.1 - 0.1) * 2 + 0.5
  CHECK(e[3] == rel(1.0 / v1 - 1, 1e-5));
  CHECK(values(bn.running_mean)[0] == rel(0.1, 1e-6));
}

TEST_CASE("BatchNorm2d normalises each channel over batch and space") {
  nn::BatchNorm2d bn(2);
  // Channel 0 over (n, w): [0, 2, 2, 0]: mean 1, var 1. Channel 1: [5, 5, 1, 1]: mean 3, var 4, unbiased 16/3.
  const Tensor x = tensor({0, 2, 5, 5, 2, 0, 1, 1}, {2, 2, 1, 2});
  const std::vector<float> y = values(bn(x));
  const double s0 = 1.0 / std::sqrt(1.0 + 1e-5), s1 = 2.0 / std::sqrt(4.0 + 1e-5);
  const std::vector<double> expected{-s0, s0, s1, s1, s0, -s0, -s1, -s1};
  for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == rel(expected[i], 1e-6));
  CHECK(values(bn.running_mean)[1] == rel(0.3, 1e-6));
  CHECK(values(bn.running_var)[1] == rel(0.9 + 0.1 * 16.0 / 3.0, 1e-6));

  std::vector<std::string> params, buffers;
  for (auto& [name, t] : bn.named_parameters()) params.push_back(name);
  for (auto& [name, t] : bn.named_buffers()) buffers.push_back(name);
  CHECK(params == std::vector<std::string>{"weight", "bias"});
  CHECK(buffers == std::vector<std::string>{"running_mean", "running_var"});
  CHECK_FALSE(bn.running_mean.requires_grad());

  // Without affine or tracking: no parameters, no buffers, batch statistics even in eval.
  nn::BatchNorm2d bare(2, {.affine = false, .track_running_stats = false});
  CHECK(bare.parameters().empty());
  CHECK(bare.named_buffers().empty());
  bare.eval();
  const std::vector<float> yb = values(bare(x));
  for (std::size_t i = 0; i < yb.size(); ++i) CHECK(yb[i] == rel(expected[i], 1e-6));
}

TEST_CASE("BatchNorm: gradients match finite differences; sum of outputs has zero input gradient") {
  nn::BatchNorm2d bn(2);
  Generator gen(3);
  const auto f = [&](In in) {
    bn.weight = in[1];
    bn.bias = in[2];
    return bn(in[0]);
  };
  const GradcheckResult r = gradcheck(f, {randn({3, 2, 2, 2}, gen), uniform({2}, 0.5, 1.5, gen), randn({2}, gen)});
  INFO(r.message);
  CHECK(r.ok);
  // Without affine, normalised values sum to 0 per channel whatever x is: the gradient is 0.
  nn::BatchNorm1d plain(3, {.affine = false});
  const Tensor x = randn({4, 3}, gen).requires_grad_();
  sum(plain(x)).backward();
  for (float g : values(x.grad())) CHECK(std::abs(g) < 1e-5f);
}

TEST_CASE("BatchNorm: bad inputs") {
  nn::BatchNorm2d bn(3);
  CHECK_THROWS_WITH_AS(bn(zeros({2, 2, 4, 4})), "BatchNorm2d: expected 3 channels in dim 1, got input [2, 2, 4, 4]",
                       Error);
  CHECK_THROWS_WITH_AS(bn(zeros({2, 3, 4})), "BatchNorm2d: expected a 4-D [N, C, H, W] input, got [2, 3, 4]", Error);
  nn::BatchNorm1d bn1(3);
  CHECK_THROWS_WITH_AS(bn1(zeros({1, 3})),
                       "BatchNorm1d: expected more than 1 value per channel when training, got input [1, 3]", Error);
  bn1.eval();
  CHECK(bn1(zeros({1, 3})).shape() == Shape{1, 3});  // fine in eval
  CHECK_THROWS_WITH_AS(nn::BatchNorm1d(0), "BatchNorm1d: num_features must be positive, got 0", Error);
}

TEST_CASE("LayerNorm normalises each sample over its trailing dims") {
  nn::LayerNorm ln({4});
  ln.weight = tensor({1, 2, 3, 4}).requires_grad_();
  ln.bias = tensor({0, 0, 0, 1}).requires_grad_();
  // Row [0, 0, 2, 2]: mean 1, var 1. Row [1, 5, 1, 5]: mean 3, var 4.
  const std::vector<float> y = values(ln(tensor({0, 0, 2, 2, 1, 5, 1, 5}, {2, 4})));
  const double a = 1.0 / std::sqrt(1.0 + 1e-5), b = 2.0 / std::sqrt(4.0 + 1e-5);
  const std::vector<double> expected{-a, -2 * a, 3 * a, 4 * a + 1, -b, 2 * b, -3 * b, 4 * b + 1};
  for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == rel(expected[i], 1e-6));

  nn::LayerNorm ln2({2, 2}, {.elementwise_affine = false});
  CHECK(ln2.parameters().empty());
  const std::vector<float> y2 = values(ln2(tensor({0, 0, 2, 2}, {1, 2, 2})));
  CHECK(y2[0] == rel(-a, 1e-6));
  CHECK(y2[3] == rel(a, 1e-6));

  CHECK_THROWS_WITH_AS(ln(zeros({2, 3})), "LayerNorm: input [2, 3] does not end in normalized_shape [4]", Error);
  Generator gen(4);
  nn::LayerNorm ln3({3});
  const auto f = [&](In in) {
    ln3.weight = in[1];
    ln3.bias = in[2];
    return ln3(in[0]);
  };
  const GradcheckResult r = gradcheck(f, {randn({2, 2, 3}, gen), uniform({3}, 0.5, 1.5, gen), randn({3}, gen)});
  INFO(r.message);
  CHECK(r.ok);
}
