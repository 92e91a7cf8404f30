// NLL, cross-entropy with class weights / ignore_index / label smoothing, BCE, BCE with pos_weight,
// Huber, smooth L1, KL divergence and per-sample weights / masks, against values worked out by hand.
#include <doctest/doctest.h>

#include <cmath>

#include "approx.h"
#include "ladon.h"
#include "nn/loss.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;
using nn::Reduction;
using testing::rel;
using testing::error_message;

namespace {
void check_close(const Tensor& t, const std::vector<double>& expected, double tol = 1e-6) {
  const std::vector<float> v = values(t);
  REQUIRE(v.size() == expected.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    CAPTURE(i);
    if (expected[i] == 0.0)
      CHECK(std::abs(v[i]) < 1e-7);
    else
      CHECK(v[i] == rel(expected[i], tol));
  }
}
Tensor labels(std::vector<std::int64_t> v) {
  const auto n = static_cast<std::int64_t>(v.size());
  return tensor(std::move(v), {n});
}
}  // namespace

TEST_CASE("nll_loss: class weights, ignore_index and per-sample masks by hand") {
  const Tensor lp = tensor({-1, -2, -3, -0.5f, -1.5f, -2.5f}, {2, 3});
  const Tensor y = labels({2, 0});
  check_close(nn::nll_loss(lp, y, {.reduction = Reduction::none}), {3, 0.5});
  CHECK(nn::nll_loss(lp, y, {.reduction = Reduction::sum}).item() == 3.5);
  CHECK(nn::nll_loss(lp, y).item() == 1.75);

  // Class weights [2, 1, 0.5]: losses 0.5 * 3 and 2 * 0.5; the mean divides by 0.5 + 2.
  const Tensor w = tensor({2, 1, 0.5f});
  check_close(nn::nll_loss(lp, y, {.reduction = Reduction::none, .class_weight = w}), {1.5, 1.0});
  CHECK(nn::nll_loss(lp, y, {.reduction = Reduction::sum, .class_weight = w}).item() == 2.5);
  CHECK(nn::nll_loss(lp, y, {.class_weight = w}).item() == 1.0);

  // Ignored samples give 0 and leave the mean's denominator: 3 / 1, and 1.5 / 0.5 with weights.
  const Tensor y_ign = labels({2, -100});
  check_close(nn::nll_loss(lp, y_ign, {.reduction = Reduction::none}), {3, 0});
  CHECK(nn::nll_loss(lp, y_ign).item() == 3.0);
  CHECK(nn::nll_loss(lp, y_ign, {.class_weight = w}).item() == 3.0);
  CHECK(nn::nll_loss(lp, labels({-1, 0}), {.ignore_index = -1}).item() == 0.5);

  // A 0/1 mask: the mean over the labelled samples only; with class weights, 1.5 / 0.5.
  const Tensor mask = tensor({0, 1});
  check_close(nn::nll_loss(lp, y, {.reduction = Reduction::none, .weight = mask}), {0, 0.5});
  CHECK(nn::nll_loss(lp, y, {.weight = mask}).item() == 0.5);
  CHECK(nn::nll_loss(lp, y, {.weight = tensor({1, 0}), .class_weight = w}).item() == 3.0);
  // Real-valued sample weights [1, 3]: (3 + 1.5) / 4.
  CHECK(nn::nll_loss(lp, y, {.weight = tensor({1, 3})}).item() == rel(4.5 / 4, 1e-7));
}

TEST_CASE("a batch with no labelled sample gives 0 and zero gradients") {
  Tensor logits = tensor({1, 2, 3, 4}, {2, 2}).requires_grad_();
  const Tensor loss = nn::cross_entropy(logits, labels({0, 1}), {.weight = tensor({0, 0})});
  CHECK(loss.item() == 0.0);
  loss.backward();
  CHECK(values(logits.grad()) == std::vector<float>{0, 0, 0, 0});
  logits.zero_grad();
  const Tensor all_ignored = nn::cross_entropy(logits, labels({-100, -100}), nn::CrossEntropyOptions{});
  CHECK(all_ignored.item() == 0.0);
  all_ignored.backward();
  CHECK(values(logits.grad()) == std::vector<float>{0, 0, 0, 0});
  Tensor pred = tensor({1, 2}).requires_grad_();
  const Tensor mse = nn::mse_loss(pred, tensor({0, 0}), {.weight = tensor({0, 0})});
  CHECK(mse.item() == 0.0);
  mse.backward();
  CHECK(values(pred.grad()) == std::vector<float>{0, 0});
}

TEST_CASE("cross_entropy with label smoothing and class weights by hand") {
  // Row 0 uniform: log p_c = -log 3. Row 1 logits [1, 2, 3]: log p_c = c + 1 - L,
  // L = 3 + log(1 + e^-1 + e^-2).
  const Tensor logits = tensor({0, 0, 0, 1, 2, 3}, {2, 3});
  const Tensor y = labels({1, 0});
  const double l3 = std::log(3.0);
  const double L = 3.0 + std::log(1.0 + std::exp(-1.0) + std::exp(-2.0));
  // Defaults reproduce the plain loss.
  check_close(nn::cross_entropy(logits, y, nn::CrossEntropyOptions{.reduction = Reduction::none}), {l3, L - 1});

  // s = 0.3: per = 0.7 nll + 0.1 sum_c (-log p_c).
  // Row 0: 0.7 log 3 + 0.1 * 3 log 3 = log 3. Row 1: 0.7 (L - 1) + 0.1 (3L - 6) = L - 1.3.
  check_close(nn::cross_entropy(logits, y, {.reduction = Reduction::none, .label_smoothing = 0.3}), {l3, L - 1.3});
  CHECK(nn::cross_entropy(logits, y, {.label_smoothing = 0.3}).item() == rel((l3 + L - 1.3) / 2, 1e-6));

  // Class weights [1, 2, 3] with s = 0.3. Row 0 (target 1): 0.7 * 2 log 3 + 0.1 * 6 log 3 = 2 log 3.
  // Row 1 (target 0): 0.7 (L - 1) + 0.1 (6L - 14) = 1.3 L - 2.1. Mean divides by w[1] + w[0] = 3.
  const Tensor w = tensor({1, 2, 3});
  check_close(nn::cross_entropy(logits, y, {.reduction = Reduction::none, .class_weight = w, .label_smoothing = 0.3}),
              {2 * l3, 1.3 * L - 2.1});
  CHECK(nn::cross_entropy(logits, y, {.class_weight = w, .label_smoothing = 0.3}).item() ==
        rel((2 * l3 + 1.3 * L - 2.1) / 3, 1e-6));
  // Ignored rows drop out of both parts: only row 0 counts, denominator w[1] = 2.
  CHECK(nn::cross_entropy(logits, labels({1, -100}), {.class_weight = w, .label_smoothing = 0.3}).item() ==
        rel(l3, 1e-6));
}

TEST_CASE("cross_entropy gradient with label smoothing is (softmax - smoothed target) / B") {
  Tensor logits = tensor({0, 0, 0, 1, 2, 3}, {2, 3}).requires_grad_();
  nn::cross_entropy(logits, labels({1, 0}), {.label_smoothing = 0.3}).backward();
  const double s = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  const std::vector<double> softmax = {1.0 / 3,           1.0 / 3,           1.0 / 3,
                                       std::exp(1.0) / s, std::exp(2.0) / s, std::exp(3.0) / s};
  // q = 0.7 onehot + 0.1.
  const std::vector<double> q = {0.1, 0.8, 0.1, 0.8, 0.1, 0.1};
  std::vector<double> expected(6);
  for (std::size_t i = 0; i < 6; ++i) expected[i] = (softmax[i] - q[i]) / 2;
  check_close(logits.grad(), expected, 1e-5);
}

TEST_CASE("binary_cross_entropy on probabilities, with clamped logs") {
  const Tensor p = tensor({0.5f, 0.9f, 0.2f, 0, 1});
  const Tensor y = tensor({1, 0, 0.25f, 1, 1});
  // -[y log p + (1 - y) log(1 - p)]; log 0 clamps to -100; p = 1, y = 1 gives 0.
  const double third = -(0.25 * std::log(0.2) + 0.75 * std::log(0.8));
  check_close(nn::binary_cross_entropy(p, y, {.reduction = Reduction::none}),
              {std::log(2.0), -std::log(0.1), third, 100, 0}, 2e-6);
  CHECK(nn::binary_cross_entropy(p, y).item() == rel((std::log(2.0) - std::log(0.1) + third + 100) / 5, 1e-6));
  // Finite gradients everywhere, -1 / (5 p) at p = 0.5, y = 1.
  Tensor q = tensor({0.5f, 0, 1}).requires_grad_();
  nn::binary_cross_entropy(q, tensor({1, 1, 0})).backward();
  const std::vector<float> g = values(q.grad());
  CHECK(g[0] == rel(-2.0 / 3, 1e-6));
  for (float v : g) CHECK(std::isfinite(v));
  CHECK(error_message([] {
          nn::binary_cross_entropy(tensor({0.5f, 1.5f}), tensor({0, 1}));
        }) ==
        "binary_cross_entropy: probs must be in [0, 1], element 1 is 1.5 (for logits use "
        "binary_cross_entropy_with_logits)");
}

TEST_CASE("binary_cross_entropy_with_logits with pos_weight") {
  const std::vector<double> xs = {0, 2, -1, 0.5}, ys = {1, 0, 1, 0.5}, pw = {3, 0.5};
  std::vector<double> expected;
  for (std::size_t i = 0; i < 4; ++i) {
    const double s = 1.0 / (1.0 + std::exp(-xs[i]));
    expected.push_back(-(pw[i % 2] * ys[i] * std::log(s) + (1 - ys[i]) * std::log(1 - s)));
  }
  CHECK(expected[0] == rel(3 * std::log(2.0), 1e-12));  // x = 0, y = 1, pw = 3
  const Tensor x = tensor({0, 2, -1, 0.5f}, {2, 2});
  const Tensor y = tensor({1, 0, 1, 0.5f}, {2, 2});
  const Tensor pos = tensor({3, 0.5f});
  check_close(nn::binary_cross_entropy_with_logits(x, y, {.reduction = Reduction::none, .pos_weight = pos}), expected);
  // pos_weight 1 is the plain loss; weight masks rows.
  const Tensor plain = nn::binary_cross_entropy_with_logits(x, y, Reduction::none);
  CHECK(
      allclose(nn::binary_cross_entropy_with_logits(x, y, {.reduction = Reduction::none, .pos_weight = tensor({1, 1})}),
               plain, 1e-6, 1e-7));
  const Tensor row_mask = tensor({0, 1}, {2, 1});
  CHECK(nn::binary_cross_entropy_with_logits(x, y, {.weight = row_mask, .pos_weight = pos}).item() ==
        rel((expected[2] + expected[3]) / 2, 1e-6));
  // Gradient: d/dx = (1 + (pw - 1) y) sigmoid(x) - pw y... at x = 0, y = 1, pw = 3: 3 * 0.5 - 3 = -1.5.
  Tensor xg = tensor({0}).requires_grad_();
  nn::binary_cross_entropy_with_logits(xg, tensor({1}), {.pos_weight = tensor({3})}).backward();
  CHECK(values(xg.grad())[0] == rel(-1.5, 1e-6));
  CHECK(error_message([&] {
          nn::binary_cross_entropy_with_logits(x, y, {.pos_weight = tensor({1, 2, 3})});
        }) == "binary_cross_entropy_with_logits: pos_weight [3] does not broadcast to the logits' shape [2, 2]");
}

TEST_CASE("huber_loss and smooth_l1_loss by hand") {
  const Tensor pred = tensor({0.5f, -2, 1, 0});
  const Tensor target = zeros({4});
  // delta 1: 0.5 d^2 inside, |d| - 0.5 outside (and at |d| = 1 both give 0.5).
  check_close(nn::huber_loss(pred, target, {.reduction = Reduction::none}), {0.125, 1.5, 0.5, 0});
  CHECK(nn::huber_loss(pred, target).item() == rel(2.125 / 4, 1e-7));
  // delta 2: 2 (|d| - 1) outside: d = -2 gives 2.
  check_close(nn::huber_loss(pred, target, {.reduction = Reduction::none, .delta = 2}), {0.125, 2, 0.5, 0});
  // smooth L1, beta 0.5: 0.5 d^2 / 0.5 inside, |d| - 0.25 outside.
  check_close(nn::smooth_l1_loss(tensor({0.25f, -2, 1}), zeros({3}), {.reduction = Reduction::none, .beta = 0.5}),
              {0.0625, 1.75, 0.75});
  // beta 0 is L1.
  check_close(nn::smooth_l1_loss(pred, target, {.reduction = Reduction::none, .beta = 0}), {0.5, 2, 1, 0});
  // Huber's gradient is d clipped to [-delta, delta].
  Tensor p = tensor({0.5f, -2, 3, 0}).requires_grad_();
  nn::huber_loss(p, target, {.reduction = Reduction::sum}).backward();
  CHECK(values(p.grad()) == std::vector<float>{0.5f, -1, 1, 0});
  CHECK(error_message([&] { nn::huber_loss(pred, target, {.delta = 0}); }) == "huber_loss: delta must be > 0, got 0");
}

TEST_CASE("kl_div: mean, batchmean, sum, log_target") {
  // Row 0: p = [0.5, 0.5, 0], q = [0.25, 0.25, 0.5]: KL = log 2 (the p = 0 term is 0).
  // Row 1: p = [1, 0, 0], q = [0.5, 0.25, 0.25]: KL = log 2.
  const Tensor p = tensor({0.5f, 0.5f, 0, 1, 0, 0}, {2, 3});
  const Tensor log_q = log(tensor({0.25f, 0.25f, 0.5f, 0.5f, 0.25f, 0.25f}, {2, 3}));
  const double l2 = std::log(2.0);
  check_close(nn::kl_div(log_q, p, {.reduction = Reduction::none}), {0.5 * l2, 0.5 * l2, 0, l2, 0, 0});
  CHECK(nn::kl_div(log_q, p, {.reduction = Reduction::sum}).item() == rel(2 * l2, 1e-6));
  CHECK(nn::kl_div(log_q, p).item() == rel(2 * l2 / 6, 1e-6));
  CHECK(nn::kl_div(log_q, p, {.batchmean = true}).item() == rel(l2, 1e-6));
  // log_target: the same numbers from log p (log 0 = -inf gives exp(-inf) * ... = 0).
  const Tensor log_p = log(tensor({0.5f, 0.5f, 1e-30f, 1, 1e-30f, 1e-30f}, {2, 3}));
  CHECK(nn::kl_div(log_q, log_p, {.batchmean = true, .log_target = true}).item() == rel(l2, 1e-5));
  // Gradient with respect to the input: -p / batch.
  Tensor in = log_q.detach().requires_grad_();
  nn::kl_div(in, p, {.batchmean = true}).backward();
  check_close(in.grad(), {-0.25, -0.25, 0, -0.5, 0, 0});
  // A per-row mask with batchmean: only row 1 counts.
  CHECK(nn::kl_div(log_q, p, {.batchmean = true, .weight = tensor({0, 1}, {2, 1})}).item() == rel(l2, 1e-6));
  CHECK(error_message([&] { nn::kl_div(log_q, p, {.reduction = Reduction::sum, .batchmean = true}); }) ==
        "kl_div: batchmean needs Reduction::mean");
}

TEST_CASE("per-sample weights and masks on elementwise losses") {
  const Tensor pred = tensor({1, 2, 3, 4});
  const Tensor zero = zeros({4});
  const Tensor mask = tensor({1, 0, 1, 0});
  check_close(nn::mse_loss(pred, zero, {.reduction = Reduction::none, .weight = mask}), {1, 0, 9, 0});
  CHECK(nn::mse_loss(pred, zero, {.reduction = Reduction::sum, .weight = mask}).item() == 10.0);
  CHECK(nn::mse_loss(pred, zero, {.weight = mask}).item() == 5.0);  // mean over the 2 kept
  CHECK(nn::l1_loss(pred, zero, {.weight = tensor({0.5f, 0.5f, 0, 1})}).item() == rel(5.5 / 2.0, 1e-7));
  // A [B, 1] mask on a [B, T] loss drops whole rows: (1 + 4) / 2.
  const Tensor p2 = tensor({1, 2, 3, 4}, {2, 2});
  CHECK(nn::mse_loss(p2, zeros({2, 2}), {.weight = tensor({1, 0}, {2, 1})}).item() == 2.5);
  CHECK(nn::huber_loss(p2, zeros({2, 2}), {.weight = tensor({0, 1}, {2, 1}), .delta = 10}).item() == rel(6.25, 1e-7));
  // Gradient of a masked mean: 2 d / 2 where kept, 0 elsewhere.
  Tensor pg = tensor({1, 2, 3, 4}).requires_grad_();
  nn::mse_loss(pg, zero, {.weight = mask}).backward();
  CHECK(values(pg.grad()) == std::vector<float>{1, 0, 3, 0});
  CHECK(error_message([&] {
          nn::mse_loss(p2, zeros({2, 2}), {.weight = tensor({1, 0, 1})});
        }) == "mse_loss: weight [3] does not broadcast to the loss's shape [2, 2]");
  CHECK(error_message([&] {
          nn::cross_entropy(p2, labels({0, 1}), {.weight = tensor({1, 0, 1})});
        }) == "cross_entropy: weight [3] must be [2], one per sample (input [2, 2])");
  CHECK(error_message([&] {
          nn::cross_entropy(p2, labels({0, 1}), {.class_weight = tensor({1, 0, 1})});
        }) == "cross_entropy: class_weight [3] must be [2], one per class (input [2, 2])");
  CHECK(error_message([&] {
          nn::cross_entropy(p2, labels({0, 7}), {.label_smoothing = 0.1});
        }) == "cross_entropy: target[1] = 7 is out of range for 2 classes (input [2, 2])");
  CHECK(error_message([&] {
          nn::cross_entropy(p2, labels({0, 1}), {.label_smoothing = 1.5});
        }) == "cross_entropy: label_smoothing must be in [0, 1], got 1.5");
}
