// nn defects from issue 11: activation gradients at exactly 0, GELU's exact form, Dropout seeds,
// scheduler epochs.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "ladon.h"
#include "nn/activation.h"
#include "nn/dropout.h"
#include "nn/scheduler.h"

using namespace ladon;

namespace {
std::vector<float> grad_at(nn::Layer& layer, std::vector<float> x) {
  const Tensor t = tensor(x, {static_cast<std::int64_t>(x.size())}).requires_grad_();
  sum(layer(t)).backward();
  return t.grad().to_vector<float>();
}
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
}  // namespace

TEST_CASE("LeakyReLU's gradient at exactly 0 is negative_slope, and NaN stays NaN") {
  nn::LeakyReLU leaky(0.2);
  const std::vector<float> g = grad_at(leaky, {0.0f, -0.0f, 1.0f, -1.0f});
  CHECK(g[0] == doctest::Approx(0.2));
  CHECK(g[1] == doctest::Approx(0.2));
  CHECK(g[2] == 1.0f);
  CHECK(g[3] == doctest::Approx(0.2));
  CHECK(std::isnan(leaky(tensor({kNaN})).item()));
}

TEST_CASE("ELU's gradient at exactly 0 is alpha (1 for the default), and NaN stays NaN") {
  nn::ELU elu;
  CHECK(grad_at(elu, {0.0f})[0] == 1.0f);
  nn::ELU elu3(3.0);
  const std::vector<float> g = grad_at(elu3, {0.0f, -1.0f, 100.0f});
  CHECK(g[0] == doctest::Approx(3.0));
  CHECK(g[1] == doctest::Approx(3.0 * std::exp(-1.0)));
  CHECK(g[2] == 1.0f);  // exp never sees 100: no inf * 0
  CHECK(std::isnan(elu(tensor({kNaN})).item()));
}

TEST_CASE("GELU is exact by default, the tanh approximation on request") {
  nn::GELU exact, approx(Gelu::tanh);
  // x Phi(x) at 2: 2 * 0.5 * (1 + erf(sqrt 2)) = 1.9544997; tanh form: 1.9545977.
  CHECK(exact(tensor({2.0f})).item() == doctest::Approx(1.9544997).epsilon(1e-6));
  CHECK(approx(tensor({2.0f})).item() == doctest::Approx(1.9545977).epsilon(1e-6));
  // Derivative at 1: Phi(1) + phi(1) = 0.8413447 + 0.2419707 = 1.0833155.
  CHECK(grad_at(exact, {1.0f})[0] == doctest::Approx(1.0833155).epsilon(1e-6));
}

TEST_CASE("two Dropouts without a seed draw different masks; manual_seed repeats them") {
  const auto masks = [] {
    nn::Dropout a(0.5), b(0.5);
    const Tensor x = ones({64});
    return std::pair{a(x).to_vector<float>(), b(x).to_vector<float>()};
  };
  manual_seed(7);
  const auto [a1, b1] = masks();
  CHECK(a1 != b1);
  manual_seed(7);
  const auto [a2, b2] = masks();
  CHECK(a1 == a2);
  CHECK(b1 == b2);
  // An explicit seed fixes the mask whatever the global generator holds.
  nn::Dropout s1(0.5, 9), s2(0.5, 9);
  CHECK(s1(ones({64})).to_vector<float>() == s2(ones({64})).to_vector<float>());
}

TEST_CASE("schedulers reject a negative epoch instead of extrapolating backwards") {
  Tensor w = zeros({1}).requires_grad_();
  nn::SGD opt({w}, {.lr = 1.0});
  nn::StepLR step(opt, {.step_size = 3, .gamma = 0.5});
  CHECK(step.lr_at(4, 1.0) == 0.5);
  CHECK_THROWS_WITH_AS(step.lr_at(-5, 1.0), "StepLR: lr_at: epoch must be >= 0, got -5", Error);
  nn::ExponentialLR expo(opt, {.gamma = 0.5});
  CHECK_THROWS_WITH_AS(expo.lr_at(-1, 1.0), "ExponentialLR: lr_at: epoch must be >= 0, got -1", Error);
}

TEST_CASE("Sequential[i] out of range names Sequential and both numbers") {
  nn::Sequential seq{nn::ReLU(), nn::Tanh()};
  CHECK_THROWS_WITH_AS(seq[5], "Sequential: index 5 is out of range for 2 layers", Error);
}

TEST_CASE("LayerNorm on a batch of 0 rows gives 0 rows; a mean over an empty dim is still an error") {
  nn::LayerNorm norm({4});
  const Tensor y = norm(zeros({0, 4}));
  CHECK(y.shape() == Shape{0, 4});
  CHECK(mean(zeros({0, 4}), {1}).shape() == Shape{0});
  CHECK_THROWS_WITH_AS(mean(zeros({3, 0}), {1}), "mean: mean over dims of size 0 in a tensor of shape [3, 0]", Error);
  CHECK_THROWS_WITH_AS(mean(zeros({0})), "mean: mean over dims of size 0 in a tensor of shape [0]", Error);
}
