// Dropout: identity in eval, inverted dropout in training, reproducible by seed.
#include <doctest/doctest.h>

#include <cmath>

#include "ladon.h"
#include "nn/dropout.h"

using namespace ladon;

TEST_CASE("Dropout in eval mode is the identity") {
  nn::Dropout drop(0.7);
  drop.eval();
  const Tensor x = tensor({1, -2, 3, 4});
  CHECK(drop(x).same(x));
}

TEST_CASE("Dropout in training zeroes a fraction p and scales the rest by 1 / (1 - p)") {
  const double p = 0.3;
  nn::Dropout drop(p, 11);
  CHECK(drop.is_training());
  const std::int64_t n = 100000;
  const Tensor x = full({n}, 2.0);
  const std::vector<float> y = drop(x).to_vector<float>();
  const float kept = static_cast<float>(2.0 / (1.0 - p));  // 2.857143
  std::int64_t zeros_seen = 0, others = 0;
  for (float v : y) {
    if (v == 0.0f)
      ++zeros_seen;
    else if (v != kept)
      ++others;
  }
  CHECK(others == 0);
  // Standard error of the fraction: sqrt(p (1 - p) / n) = 0.00145; allow 5 of them.
  CHECK(std::fabs(static_cast<double>(zeros_seen) / static_cast<double>(n) - p) < 0.0073);

  // The gradient is the same mask: 0 where dropped, 1 / (1 - p) where kept.
  Tensor xg = ones({1000}).requires_grad_();
  const Tensor out = drop(xg);
  sum(out).backward();
  CHECK(equal(xg.grad(), out));  // x = 1, so out is the mask itself
}

TEST_CASE("Dropout masks are fixed by the seed and change from call to call") {
  const Tensor x = ones({256});
  nn::Dropout a(0.5, 7), b(0.5, 7), c(0.5, 8);
  const Tensor a1 = a(x), b1 = b(x), c1 = c(x);
  CHECK(equal(a1, b1));
  CHECK_FALSE(equal(a1, c1));
  const Tensor a2 = a(x);
  CHECK_FALSE(equal(a1, a2));  // the generator advanced
  CHECK(equal(a2, b(x)));
}

TEST_CASE("Dropout with p = 0 passes through; bad p is rejected") {
  nn::Dropout none(0.0);
  const Tensor x = tensor({1, 2, 3});
  CHECK(equal(none(x), x));
  CHECK_THROWS_WITH_AS(nn::Dropout(1.0), "Dropout: p must be in [0, 1), got 1", Error);
  CHECK_THROWS_WITH_AS(nn::Dropout(-0.1), "Dropout: p must be in [0, 1), got -0.1", Error);
  CHECK_THROWS_WITH_AS(nn::Dropout(0.5)(zeros({2}, Dtype::int64)),
                       "Dropout: expected a float32 tensor, got int64 of shape [2]", Error);
}
