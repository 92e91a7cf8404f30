// Gradient clipping by global norm and by value, against hand-computed numbers.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "approx.h"
#include "ladon.h"
#include "nn/clip.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;
using testing::rel;

namespace {
Tensor vec(std::vector<float> v) {
  const auto n = static_cast<std::int64_t>(v.size());
  return tensor(std::move(v), {n});
}
}  // namespace

TEST_CASE("clip_grad_norm scales all gradients by one factor and returns the norm before") {
  Tensor a = zeros({2}).requires_grad_();
  Tensor b = zeros({1}).requires_grad_();
  Tensor none = zeros({3}).requires_grad_();  // no gradient: skipped
  a.set_grad(vec({3.0f, 0.0f}));
  b.set_grad(vec({-4.0f}));
  // Global 2-norm sqrt(9 + 16) = 5; max_norm 1: factor 1 / (5 + 1e-6).
  const double total = nn::clip_grad_norm({a, b, none}, 1.0);
  CHECK(total == rel(5.0, 1e-12));
  const double f = 1.0 / (5.0 + 1e-6);
  CHECK(values(a.grad())[0] == rel(3.0 * f, 1e-6));
  CHECK(values(a.grad())[1] == 0.0f);
  CHECK(values(b.grad())[0] == rel(-4.0 * f, 1e-6));
  CHECK_FALSE(none.grad().defined());
  // Now the norm is just under 1, so a max_norm of 2 changes nothing.
  const std::vector<float> before = values(a.grad());
  CHECK(nn::clip_grad_norm({a, b}, 2.0) == rel(5.0 * f, 1e-6));
  CHECK(values(a.grad()) == before);

  // Infinity norm: the largest |g| = 4; 1-norm: 7; 3-norm: (27 + 64)^(1/3).
  a.set_grad(vec({3.0f, 0.0f}));
  b.set_grad(vec({-4.0f}));
  CHECK(nn::clip_grad_norm({a, b}, 100.0, std::numeric_limits<double>::infinity()) == 4.0);
  CHECK(nn::clip_grad_norm({a, b}, 100.0, 1.0) == rel(7.0, 1e-12));
  CHECK(nn::clip_grad_norm({a, b}, 100.0, 3.0) == rel(std::cbrt(91.0), 1e-12));
  CHECK(nn::clip_grad_norm({a, b}, 2.0, 1.0) == rel(7.0, 1e-12));
  CHECK(values(b.grad())[0] == rel(-4.0 * 2.0 / (7.0 + 1e-6), 1e-6));
}

TEST_CASE("clip_grad_norm does not scale a shared gradient twice") {
  Tensor a = zeros({2}).requires_grad_();
  Tensor b = zeros({2}).requires_grad_();
  const Tensor g = vec({6.0f, 8.0f});
  a.set_grad(g);
  b.set_grad(g);  // the same tensor: norm sqrt(2 * 100)
  const double total = nn::clip_grad_norm({a, b}, 1.0);
  CHECK(total == rel(std::sqrt(200.0), 1e-12));
  const double f = 1.0 / (std::sqrt(200.0) + 1e-6);
  CHECK(values(a.grad())[0] == rel(6.0 * f, 1e-6));
  CHECK(values(b.grad())[0] == rel(6.0 * f, 1e-6));
  CHECK(values(g)[0] == 6.0f);  // the original is untouched
}

TEST_CASE("clip_grad_norm on autograd gradients and non-finite norms") {
  Tensor w = tensor({1, 2}).requires_grad_();
  sum(w * w).backward();  // grad 2w = [2, 4], norm sqrt(20)
  CHECK(nn::clip_grad_norm({w}, 1.0) == rel(std::sqrt(20.0), 1e-7));
  CHECK(values(w.grad())[1] == rel(4.0 / (std::sqrt(20.0) + 1e-6), 1e-6));

  w.set_grad(vec({std::numeric_limits<float>::infinity(), 1.0f}));
  CHECK_THROWS_WITH_AS(
      nn::clip_grad_norm({w}, 1.0, 2.0, true),
      "clip_grad_norm: the total gradient norm is inf; pass error_if_nonfinite = false to scale anyway", Error);
  CHECK_THROWS_WITH_AS(nn::clip_grad_norm({w}, -1.0), "clip_grad_norm: max_norm must be >= 0, got -1", Error);
}

TEST_CASE("clip_grad_value clamps each element") {
  Tensor a = zeros({4}).requires_grad_();
  a.set_grad(vec({-3.0f, -0.5f, 0.25f, 7.0f}));
  Tensor b = zeros({1}).requires_grad_();
  nn::clip_grad_value({a, b}, 1.0);
  CHECK(values(a.grad()) == std::vector<float>{-1.0f, -0.5f, 0.25f, 1.0f});
  CHECK_FALSE(b.grad().defined());
  CHECK_THROWS_WITH_AS(nn::clip_grad_value({a}, -0.1), "clip_grad_value: clip_value must be >= 0, got -0.1", Error);
}
