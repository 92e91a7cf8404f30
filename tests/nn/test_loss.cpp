// Losses against values worked out by hand, their gradients, and their error messages.
#include <doctest/doctest.h>

#include <cmath>

#include "ladon.h"
#include "approx.h"
#include "nn/loss.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;
using testing::rel;
using nn::Reduction;

namespace {
void check_close(const Tensor& t, const std::vector<double>& expected, double tol = 1e-6) {
  const std::vector<float> v = values(t);
  REQUIRE(v.size() == expected.size());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == rel(expected[i], tol));
}
}  // namespace

TEST_CASE("mse_loss and l1_loss by hand, every reduction") {
  // diff = pred - target = [-0.5, 0, 1, -2]
  const Tensor pred = tensor({1, 2, 3, 4});
  const Tensor target = tensor({1.5f, 2, 2, 6});
  // squares [0.25, 0, 1, 4], sum 5.25, mean 1.3125
  CHECK(values(nn::mse_loss(pred, target, Reduction::none)) == std::vector<float>{0.25f, 0, 1, 4});
  CHECK(nn::mse_loss(pred, target, Reduction::sum).item() == 5.25);
  CHECK(nn::mse_loss(pred, target).item() == 1.3125);
  CHECK(nn::mse_loss(pred, target).dim() == 0);
  // absolute values [0.5, 0, 1, 2], sum 3.5, mean 0.875
  CHECK(values(nn::l1_loss(pred, target, Reduction::none)) == std::vector<float>{0.5f, 0, 1, 2});
  CHECK(nn::l1_loss(pred, target, Reduction::sum).item() == 3.5);
  CHECK(nn::l1_loss(pred, target).item() == 0.875);

  // Multi-dim: the mean runs over every element.
  const Tensor p2 = tensor({1, 2, 3, 4}, {2, 2});
  const Tensor t2 = tensor({0, 0, 0, 0}, {2, 2});
  CHECK(nn::mse_loss(p2, t2).item() == 7.5);  // (1 + 4 + 9 + 16) / 4
  CHECK(nn::l1_loss(p2, t2, Reduction::none).shape() == Shape{2, 2});
}

TEST_CASE("mse_loss and l1_loss gradients") {
  Tensor pred = tensor({1, 2, 3, 4}).requires_grad_();
  Tensor target = tensor({1.5f, 2, 2, 6}).requires_grad_();
  // d/dpred mean((p - t)^2) = 2 (p - t) / 4 = [-0.25, 0, 0.5, -1]; target gets the negation.
  nn::mse_loss(pred, target).backward();
  CHECK(values(pred.grad()) == std::vector<float>{-0.25f, 0, 0.5f, -1});
  CHECK(values(target.grad()) == std::vector<float>{0.25f, 0, -0.5f, 1});
  pred.zero_grad();
  // d/dpred mean|p - t| = sign(p - t) / 4, 0 where they are equal.
  nn::l1_loss(pred, target).backward();
  CHECK(values(pred.grad()) == std::vector<float>{-0.25f, 0, 0.25f, -0.25f});
  pred.zero_grad();
  nn::l1_loss(pred, target, Reduction::sum).backward();
  CHECK(values(pred.grad()) == std::vector<float>{-1, 0, 1, -1});
}

TEST_CASE("cross_entropy by hand") {
  // Row 0 is uniform over 3 classes: loss log 3 whatever the target.
  // Row 1, target 0: log(e + e^2 + e^3) - 1 = 2 + log(1 + e^-1 + e^-2).
  const Tensor logits = tensor({0, 0, 0, 1, 2, 3}, {2, 3});
  const Tensor target = tensor(std::vector<std::int64_t>{1, 0}, {2});
  const double l0 = std::log(3.0);
  const double l1 = 2.0 + std::log(1.0 + std::exp(-1.0) + std::exp(-2.0));
  check_close(nn::cross_entropy(logits, target, Reduction::none), {l0, l1});
  CHECK(nn::cross_entropy(logits, target, Reduction::none).shape() == Shape{2});
  CHECK(nn::cross_entropy(logits, target, Reduction::sum).item() == rel(l0 + l1, 1e-6));
  CHECK(nn::cross_entropy(logits, target).item() == rel((l0 + l1) / 2, 1e-6));

  // Huge logits stay finite: log_softmax never exponentiates a positive number.
  const Tensor big = tensor({1000, 0}, {1, 2});
  CHECK(nn::cross_entropy(big, tensor(std::vector<std::int64_t>{0}, {1})).item() == 0.0);
  CHECK(nn::cross_entropy(big, tensor(std::vector<std::int64_t>{1}, {1})).item() == 1000.0);
}

TEST_CASE("cross_entropy gradient is (softmax - onehot) / B") {
  Tensor logits = tensor({0, 0, 0, 1, 2, 3}, {2, 3}).requires_grad_();
  const Tensor target = tensor(std::vector<std::int64_t>{1, 0}, {2});
  nn::cross_entropy(logits, target).backward();
  const double s = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  const std::vector<double> softmax = {1.0 / 3, 1.0 / 3, 1.0 / 3, std::exp(1.0) / s, std::exp(2.0) / s,
                                       std::exp(3.0) / s};
  const std::vector<double> onehot = {0, 1, 0, 1, 0, 0};
  std::vector<double> expected(6);
  for (std::size_t i = 0; i < 6; ++i) expected[i] = (softmax[i] - onehot[i]) / 2.0;
  const std::vector<float> g = values(logits.grad());
  REQUIRE(g.size() == 6);
  for (std::size_t i = 0; i < 6; ++i) CHECK(g[i] == rel(expected[i], 1e-6));

  // With sum reduction the 1/B goes away.
  logits.zero_grad();
  nn::cross_entropy(logits, target, Reduction::sum).backward();
  const std::vector<float> gs = values(logits.grad());
  for (std::size_t i = 0; i < 6; ++i) CHECK(gs[i] == rel(2.0 * expected[i], 1e-6));
}

TEST_CASE("binary_cross_entropy_with_logits by hand") {
  // Reference: -[y log s + (1 - y) log(1 - s)], s = sigmoid(x), in double.
  const std::vector<double> xs = {0, 2, -3, 0.5};
  const std::vector<double> ys = {1, 0, 0.25, 1};
  std::vector<double> expected;
  double total = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double s = 1.0 / (1.0 + std::exp(-xs[i]));
    expected.push_back(-(ys[i] * std::log(s) + (1 - ys[i]) * std::log(1 - s)));
    total += expected.back();
  }
  // Spot values: x = 0 gives log 2; x = 2, y = 0 gives 2 + log(1 + e^-2).
  CHECK(expected[0] == rel(0.6931471806, 1e-6));
  CHECK(expected[1] == rel(2.1269280110, 1e-6));
  const Tensor x = tensor({0, 2, -3, 0.5f});
  const Tensor y = tensor({1, 0, 0.25f, 1});
  check_close(nn::binary_cross_entropy_with_logits(x, y, Reduction::none), expected);
  CHECK(nn::binary_cross_entropy_with_logits(x, y, Reduction::sum).item() == rel(total, 1e-6));
  CHECK(nn::binary_cross_entropy_with_logits(x, y).item() == rel(total / 4, 1e-6));

  // Large |x|: the naive form gives log(0) = -inf; the stable one gives 0 or |x|.
  const Tensor far = tensor({100, -100, -100, 100});
  const Tensor far_y = tensor({1, 0, 1, 0});
  CHECK(values(nn::binary_cross_entropy_with_logits(far, far_y, Reduction::none)) ==
        std::vector<float>{0, 0, 100, 100});
}

TEST_CASE("binary_cross_entropy_with_logits gradient is (sigmoid(x) - y) / n, also at x = 0") {
  Tensor x = tensor({0, 0, 2, -3}).requires_grad_();
  const Tensor y = tensor({1, 0, 0, 0.25f});
  nn::binary_cross_entropy_with_logits(x, y).backward();
  const std::vector<double> xs = {0, 0, 2, -3}, ys = {1, 0, 0, 0.25};
  const std::vector<float> g = values(x.grad());
  for (std::size_t i = 0; i < 4; ++i)
    CHECK(g[i] == rel((1.0 / (1.0 + std::exp(-xs[i])) - ys[i]) / 4, 1e-6));
  // The kink at 0, by hand: (0.5 - 1) / 4 and (0.5 - 0) / 4.
  CHECK(g[0] == -0.125f);
  CHECK(g[1] == 0.125f);
}

TEST_CASE("loss errors name the loss and the shapes") {
  const Tensor logits = zeros({32, 10});
  CHECK_THROWS_WITH_AS(nn::cross_entropy(logits, zeros({16}, Dtype::int64)),
                       "cross_entropy: logits [32, 10] and target [16]: batch sizes differ", Error);
  CHECK_THROWS_WITH_AS(nn::cross_entropy(zeros({2, 10}), tensor(std::vector<std::int64_t>{3, 12}, {2})),
                       "cross_entropy: target[1] = 12 is out of range for 10 classes (logits [2, 10])", Error);
  CHECK_THROWS_WITH_AS(nn::cross_entropy(zeros({2, 10}), tensor(std::vector<std::int64_t>{-1, 0}, {2})),
                       "cross_entropy: target[0] = -1 is out of range for 10 classes (logits [2, 10])", Error);
  CHECK_THROWS_WITH_AS(nn::cross_entropy(zeros({2, 10}), zeros({2})),
                       "cross_entropy: target [2] must be int64 class indices, got float32", Error);
  CHECK_THROWS_WITH_AS(nn::cross_entropy(zeros({10}), zeros({1}, Dtype::int64)),
                       "cross_entropy: logits must be 2-D [batch, classes], got [10]", Error);
  CHECK_THROWS_WITH_AS(nn::cross_entropy(zeros({2, 10}), zeros({2, 1}, Dtype::int64)),
                       "cross_entropy: target must be 1-D [batch] class indices, got [2, 1] (logits [2, 10])", Error);
  CHECK_THROWS_WITH_AS(nn::cross_entropy(zeros({0, 10}), zeros({0}, Dtype::int64)),
                       "cross_entropy: mean over an empty input of shape [0]", Error);
  CHECK(nn::cross_entropy(zeros({0, 10}), zeros({0}, Dtype::int64), Reduction::sum).item() == 0.0);

  CHECK_THROWS_WITH_AS(nn::mse_loss(zeros({4, 1}), zeros({4})),
                       "mse_loss: pred [4, 1] and target [4]: shapes differ", Error);
  CHECK_THROWS_WITH_AS(nn::l1_loss(zeros({3}), zeros({3}, Dtype::int64)),
                       "l1_loss: target [3] must be float32, got int64", Error);
  CHECK_THROWS_WITH_AS(nn::binary_cross_entropy_with_logits(zeros({3}), zeros({3}, Dtype::int64)),
                       "binary_cross_entropy_with_logits: target [3] must be float32, got int64", Error);
  CHECK_THROWS_WITH_AS(nn::binary_cross_entropy_with_logits(zeros({2, 3}), zeros({3, 2})),
                       "binary_cross_entropy_with_logits: logits [2, 3] and target [3, 2]: shapes differ", Error);
}
