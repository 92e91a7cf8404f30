// max/avg/adaptive-avg pooling, Flatten and Unflatten against values worked out by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "ladon.h"
#include "nn/pool.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;

namespace {
Tensor floor_values(Tensor t) {
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = std::floor(t.data<float>()[i]);
  return t;
}
Tensor plane_4x4() { return tensor({1, 5, 2, 0, 3, 4, 8, 6, 7, 0, 1, 2, 9, 3, 4, 5}, {1, 1, 4, 4}); }
}  // namespace

TEST_CASE("max_pool2d: 2x2 windows, values, indices and gradient routing") {
  const Tensor x = plane_4x4().requires_grad_();
  // Windows {1,5,3,4} {2,0,8,6} {7,0,9,3} {1,2,4,5}.
  const ValuesIndices r = max_pool2d_with_indices(x, 2);
  CHECK(values(r.values) == std::vector<float>{5, 8, 9, 5});
  CHECK(r.indices.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 6, 12, 15});
  r.values.backward(tensor({1, 2, 3, 4}, {1, 1, 2, 2}));
  CHECK(values(x.grad()) == std::vector<float>{0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 0, 4});

  // Overlapping windows (stride 1) all pick the centre: its gradient accumulates 4 times.
  const Tensor c = tensor({1, 2, 3, 4, 9, 5, 6, 7, 8}, {1, 1, 3, 3}).requires_grad_();
  const Tensor y = max_pool2d(c, 2, {.stride = 1});
  CHECK(values(y) == std::vector<float>{9, 9, 9, 9});
  sum(y).backward();
  CHECK(values(c.grad()) == std::vector<float>{0, 0, 0, 0, 4, 0, 0, 0, 0});
}

TEST_CASE("max_pool2d: the 2x2 stride-2 fast path agrees with a plain loop on odd sizes, ties and NaN") {
  // [2, 3, 7, 9]: the last row and column fall outside every window. Small integers make ties.
  Generator gen(5);
  Tensor x = floor_values(uniform({2, 3, 7, 9}, 0.0, 4.0, gen));
  x.data<float>()[10] = std::numeric_limits<float>::quiet_NaN();
  x.data<float>()[11] = std::numeric_limits<float>::quiet_NaN();
  const ValuesIndices r = max_pool2d_with_indices(x, 2);
  REQUIRE(r.values.shape() == Shape{2, 3, 3, 4});
  const float* in = x.data<float>();
  const std::vector<float> got = values(r.values);
  const std::vector<std::int64_t> got_at = r.indices.to_vector<std::int64_t>();
  for (std::int64_t p = 0; p < 6; ++p)
    for (std::int64_t oy = 0; oy < 3; ++oy)
      for (std::int64_t ox = 0; ox < 4; ++ox) {
        float best = -std::numeric_limits<float>::infinity();
        std::int64_t best_at = -1;
        for (std::int64_t i = 0; i < 2; ++i)
          for (std::int64_t j = 0; j < 2; ++j) {
            const std::int64_t at = (2 * oy + i) * 9 + 2 * ox + j;
            const float v = in[p * 63 + at];
            if (best_at < 0 || v > best || std::isnan(v)) best = v, best_at = at;  // first maximum; NaN wins
          }
        const std::size_t o = static_cast<std::size_t>((p * 3 + oy) * 4 + ox);
        CAPTURE(o);
        CHECK(got_at[o] == best_at);
        CHECK((got[o] == best || (std::isnan(got[o]) && std::isnan(best))));
      }
  // max_pool2d of an input that needs no gradient, and under no-grad, keeps no indices (the values
  // kernel): the same values bit for bit, NaNs included, and no graph.
  const Tensor xg = x.detach().requires_grad_();
  Tensor plain, guarded;
  plain = max_pool2d(x, 2);
  {
    NoGradGuard no_grad;
    guarded = max_pool2d(xg, 2);
  }
  const Tensor recorded = max_pool2d(xg, 2);
  REQUIRE(recorded.grad_fn() != nullptr);
  CHECK(guarded.grad_fn() == nullptr);
  CHECK(plain.grad_fn() == nullptr);
  for (const Tensor& t : {plain, guarded, recorded}) {
    REQUIRE(t.shape() == r.values.shape());
    CHECK(std::memcmp(t.data<float>(), r.values.data<float>(), sizeof(float) * got.size()) == 0);
  }
  // max_pool2d_with_indices returns its indices under no-grad too.
  NoGradGuard no_grad;
  CHECK(max_pool2d_with_indices(xg, 2).indices.to_vector<std::int64_t>() == got_at);
}

TEST_CASE("max_pool2d: padding never wins, even over negative values") {
  // 3x3 kernel, stride 2, padding 1 on -1..-9: windows {-1,-2,-4,-5} {-2,-3,-5,-6} {-4,-5,-7,-8} {-5,-6,-8,-9}.
  const Tensor x = neg(arange(1.0, 10.0)).reshape({1, 3, 3});
  const Tensor y = max_pool2d(x, 3, {.stride = 2, .padding = 1});
  CHECK(y.shape() == Shape{1, 2, 2});
  CHECK(values(y) == std::vector<float>{-1, -2, -4, -5});
}

TEST_CASE("avg_pool2d: plain windows, and padding counted or not") {
  CHECK(values(avg_pool2d(plane_4x4(), 2)) == std::vector<float>{3.25f, 4, 4.75f, 3});
  // 2x2 kernel, stride 2, padding 1 on 1..9: windows {1}, {2,3}, {4,7}, {5,6,8,9}.
  const Tensor x = arange(1.0, 10.0).reshape({1, 1, 3, 3}).requires_grad_();
  CHECK(values(avg_pool2d(x, 2, {.padding = 1})) == std::vector<float>{0.25f, 1.25f, 2.75f, 7});
  const Tensor y = avg_pool2d(x, 2, {.padding = 1, .count_include_pad = false});
  CHECK(values(y) == std::vector<float>{1, 2.5f, 5.5f, 7});
  sum(y).backward();
  // Each input shares its window's gradient with the window's real elements only.
  CHECK(values(x.grad()) == std::vector<float>{1, 0.5f, 0.5f, 0.5f, 0.25f, 0.25f, 0.5f, 0.25f, 0.25f});
}

TEST_CASE("adaptive_avg_pool2d: PyTorch's overlapping windows") {
  // x[r][c] = 5r + c on 3x5 -> 2x3. Rows {0,1}, {1,2}; cols {0,1}, {1,2,3}, {3,4}.
  const Tensor x = arange(0.0, 15.0).reshape({1, 1, 3, 5}).requires_grad_();
  const Tensor y = adaptive_avg_pool2d(x, {2, 3});
  CHECK(y.shape() == Shape{1, 1, 2, 3});
  CHECK(values(y) == std::vector<float>{3, 4.5f, 6, 8, 9.5f, 11});
  CHECK(values(adaptive_avg_pool2d(x, 1)) == std::vector<float>{7});
  sum(adaptive_avg_pool2d(x, 1)).backward();
  CHECK(values(x.grad()) == std::vector<float>(15, 1.0f / 15.0f));
}

TEST_CASE("pooling: bad inputs name the op and the sizes") {
  CHECK_THROWS_WITH_AS(max_pool2d(zeros({1, 1, 2, 2}), 3),
                       "max_pool2d: kernel (3, 3) (dilation (1, 1)) is larger than the padded input (2, 2) of "
                       "[1, 1, 2, 2]",
                       Error);
  CHECK_THROWS_WITH_AS(max_pool2d(zeros({1, 1, 4, 4}), 2, {.padding = 2}),
                       "max_pool2d: padding (2, 2) must be at most half the kernel (2, 2)", Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(zeros({1, 1, 4, 4}), 2, {.dilation = 2}),
                       "avg_pool2d: dilation is not supported, got (2, 2)", Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(zeros({16}), 2), "avg_pool2d: expected a [N, C, H, W] or [C, H, W] input, got [16]",
                       Error);
  CHECK_THROWS_WITH_AS(adaptive_avg_pool2d(zeros({1, 1, 4, 4}), {0, 2}),
                       "adaptive_avg_pool2d: output size must be positive, got (0, 2)", Error);
}

TEST_CASE("pooling layers, Flatten and Unflatten") {
  nn::MaxPool2d max(2);
  nn::AvgPool2d avg(2);
  nn::AdaptiveAvgPool2d adaptive(1);
  CHECK(values(max(plane_4x4())) == std::vector<float>{5, 8, 9, 5});
  CHECK(values(avg(plane_4x4())) == std::vector<float>{3.25f, 4, 4.75f, 3});
  CHECK(values(adaptive(plane_4x4())) == std::vector<float>{3.75f});  // 60 / 16
  CHECK(max.parameters().empty());

  nn::Flatten flatten;
  CHECK(flatten(zeros({2, 3, 4, 5})).shape() == Shape{2, 60});
  CHECK(nn::Flatten(0, 1)(zeros({2, 3, 4})).shape() == Shape{6, 4});
  nn::Unflatten unflatten(1, {2, -1});
  const Tensor u = unflatten(arange(0.0, 18.0).reshape({3, 6}));
  CHECK(u.shape() == Shape{3, 2, 3});
  CHECK(values(u)[4] == 4.0f);
  CHECK(nn::Unflatten(-1, {3, 2})(zeros({5, 6})).shape() == Shape{5, 3, 2});
  CHECK_THROWS_WITH_AS(nn::Unflatten(1, {4, 2})(zeros({3, 6})),
                       "Unflatten: dim 1 of [3, 6] has size 6, which cannot be split into [4, 2]", Error);
  CHECK_THROWS_WITH_AS(nn::Unflatten(1, {-1, -1}), "Unflatten: at most one size may be -1, got [-1, -1]", Error);
}
