// Defects found by checking ladon against libtorch and by a battery of bad inputs (issue 11): the
// exact numbers at kinks, zeros and NaN, and the errors bad sizes and indices give.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <thread>

#include "kernels/gemm.h"
#include "kernels/reduce.h"
#include "ladon.h"

using namespace ladon;

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
std::vector<float> values(const Tensor& t) { return t.to_vector<float>(); }
}  // namespace

// ---- wrong numbers ------------------------------------------------------------------------------

TEST_CASE("pow backward is 0, not NaN or inf, where the base is 0 (as in PyTorch)") {
  // d/d(exponent) of 0^b (b > 0 and b = 0), d/d(base) of 0^0.
  const Tensor a = tensor({0.0f, 0.0f, 0.0f, 2.0f}).requires_grad_();
  const Tensor b = tensor({2.0f, 0.0f, 0.5f, 3.0f}).requires_grad_();
  sum(pow(a, b)).backward();
  // d/da = b a^(b-1): 0, 0 (b = 0), inf (0^-0.5: the true one-sided limit, PyTorch too), 12.
  const std::vector<float> ga = values(a.grad()), gb = values(b.grad());
  CHECK(ga[0] == 0.0f);
  CHECK(ga[1] == 0.0f);
  CHECK(std::isinf(ga[2]));
  CHECK(ga[3] == doctest::Approx(12.0));
  // d/db = a^b log a: 0 at a = 0, 8 log 2 at (2, 3).
  CHECK(gb[0] == 0.0f);
  CHECK(gb[1] == 0.0f);
  CHECK(gb[2] == 0.0f);
  CHECK(gb[3] == doctest::Approx(8.0 * std::log(2.0)));
  // pow(x, 0.0) is flat everywhere, x = 0 included.
  const Tensor x = tensor({0.0f, -1.0f, 3.0f}).requires_grad_();
  sum(pow(x, 0.0)).backward();
  CHECK(values(x.grad()) == std::vector<float>{0, 0, 0});
}

TEST_CASE("relu and the GEMM epilogue's ReLU propagate NaN instead of turning it into 0") {
  CHECK(std::isnan(values(relu(tensor({kNaN, 1.0f})))[0]));
  // The fused epilogue, through every path: C = relu(A B + bias) with one NaN in A.
  for (std::int64_t m : {1, 20}) {
    std::vector<float> a(static_cast<std::size_t>(m * 3), 1.0f), b(3 * 5, -1.0f), bias(5, 0.0f), c(m * 5);
    a[0] = kNaN;
    kernels::sgemm(false, false, m, 5, 3, 1.0f, a.data(), 3, b.data(), 5, 0.0f, c.data(), 5,
                   {.bias = bias.data(), .activation = kernels::Activation::relu});
    CHECK(std::isnan(c[0]));  // row 0 saw the NaN
    if (m > 1) CHECK(c[5 * (m - 1) + 1] == 0.0f);  // the other rows are -3, clipped to 0
  }
  // Linear + ReLU in a Sequential runs the fused epilogue; NaN in, NaN out.
  Generator gen(3);
  nn::Sequential seq{nn::Linear(3, 4, {}, gen), nn::ReLU()};
  const std::vector<float> out = values(seq(tensor({kNaN, 1, 2}, {1, 3})));
  for (float v : out) CHECK(std::isnan(v));
}

TEST_CASE("an MMoE fed a NaN returns NaN, not a finite output") {
  Generator gen(5);
  mtl::MMoE model({.in = 4, .experts = 2, .expert_hidden = {6}, .tasks = {{"a", 2, {3}}, {"b", 2, {3}}}}, gen);
  Tensor x = randn({2, 4}, gen);
  x.data<float>()[1] = kNaN;
  const std::vector<Tensor> out = model(x);
  for (const Tensor& t : out) CHECK(std::isnan(values(t)[0]));
}

TEST_CASE("max over all elements splits the gradient among tied maxima") {
  const Tensor x = tensor({1.0f, 3.0f, 3.0f, -2.0f, 3.0f, 0.0f}, {2, 3}).requires_grad_();
  const Tensor m = max(x);
  CHECK(m.item() == 3.0);
  (m * 6.0).backward();
  CHECK(values(x.grad()) == std::vector<float>{0, 2, 2, 0, 2, 0});
  // A single maximum takes all of it.
  const Tensor y = tensor({1.0f, 5.0f}).requires_grad_();
  max(y).backward();
  CHECK(values(y.grad()) == std::vector<float>{0, 1});
}

TEST_CASE("column sums over 524k rows stay accurate to float rounding") {
  // Values chosen so every partial sum is inexact: a plain float running sum drifts by ~1e-3.
  const std::int64_t rows = 524288, cols = 3;
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  std::vector<double> want(cols, 0.0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const float v = 0.1f + 0.01f * static_cast<float>((r * 7 + c) % 13);
      x[static_cast<std::size_t>(r * cols + c)] = v;
      want[static_cast<std::size_t>(c)] += v;
    }
  std::vector<float> out(cols);
  kernels::sum_reduce(1, rows, cols, x.data(), out.data());
  for (std::int64_t c = 0; c < cols; ++c) {
    CAPTURE(c);
    CHECK(std::fabs(out[c] - want[c]) / want[c] < 1e-7);  // plain float: 2e-4
  }
  // The same through sum(x, {0}) on a tensor.
  const Tensor t = tensor(x, {rows, cols});
  const std::vector<float> s = values(sum(t, {0}));
  for (std::int64_t c = 0; c < cols; ++c) CHECK(std::fabs(s[c] - want[c]) / want[c] < 1e-7);
}

// ---- crashes and out-of-bounds reads on bad input -----------------------------------------------

TEST_CASE("indexing ops on a 0-d tensor throw instead of reading out of bounds") {
  const Tensor empty_index = tensor(std::vector<std::int64_t>{}, {0});
  CHECK_THROWS_WITH_AS(index_select(scalar(1.0), 0, empty_index), "index_select: cannot index a 0-d tensor along dim 0",
                       Error);
  CHECK_THROWS_WITH_AS(index_add(scalar(1.0), 0, empty_index, zeros({0})),
                       "index_add: cannot index a 0-d tensor along dim 0", Error);
  CHECK_THROWS_WITH_AS(gather(scalar(1.0), 0, tensor(std::vector<std::int64_t>{0}, {})),
                       "gather: cannot index a 0-d tensor along dim 0", Error);
  CHECK_THROWS_WITH_AS(split(scalar(1.0), 1, 0), "split: cannot split a 0-d tensor", Error);
}

TEST_CASE("narrow with a start near INT64_MAX throws (start + length overflowed)") {
  const Tensor x = zeros({4, 2});
  const std::int64_t big = std::numeric_limits<std::int64_t>::max();
  CHECK_THROWS_WITH_AS(x.narrow(0, big, 1),
                       "narrow: start 9223372036854775807 and length 1 are out of bounds for dim 0 of size 4 in [4, 2]",
                       Error);
  CHECK_THROWS_AS(x.narrow(0, 1, big), Error);
  CHECK(x.narrow(0, 4, 0).numel() == 0);  // an empty range at the end is fine
}

TEST_CASE("sizes whose element count overflows int64 throw a clear error") {
  const std::int64_t huge = (std::int64_t{1} << 62) + 1;
  CHECK_THROWS_WITH_AS(zeros({huge, 4}), "shape: [4611686018427387905, 4] has more elements than fit in int64", Error);
  CHECK_THROWS_AS(zeros({huge, 4}).reshape({-1}), Error);
  CHECK_THROWS_AS(zeros({1, 4}).expand({huge, 4}).reshape({-1}), Error);
  // Large but representable: too large to allocate, said as such (no bare std::bad_alloc).
  CHECK_THROWS_WITH_AS(empty({std::int64_t{1} << 59, 4}),
                       "empty: shape [576460752303423488, 4] of float32 needs 2305843009213693952 elements of 4 bytes: "
                       "too large to allocate",
                       Error);
  try {
    (void)empty({std::int64_t{1} << 40, 1024});  // 4 PiB: the system refuses
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("empty: out of memory allocating") == 0);
  }
}

TEST_CASE("expand to a negative size names expand and the size") {
  CHECK_THROWS_WITH_AS(zeros({1, 4}).expand({-3, 4}), "expand: cannot expand [1, 4] to [-3, 4]: size -3 in dim 0 is negative",
                       Error);
  CHECK_THROWS_WITH_AS(zeros({4}).expand({-2, 4}),
                       "expand: cannot expand [4] to [-2, 4]: size -2 in new leading dim 0 is negative", Error);
  CHECK(zeros({1, 4}).expand({-1, 4}).shape() == Shape{1, 4});
}

TEST_CASE("arange with a non-finite or huge range throws naming arange") {
  const double inf = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(arange(0.0, inf), "arange: start, end and step must be finite, got 0, inf, 1", Error);
  CHECK_THROWS_WITH_AS(arange(0.0, std::nan("")), "arange: start, end and step must be finite, got 0, nan, 1", Error);
  CHECK_THROWS_WITH_AS(arange(0.0, 1e300, 1.0), "arange: [0, 1e+300) in steps of 1 has 1e+300 elements: too many", Error);
}

TEST_CASE("random draws reject impossible parameters") {
  Generator gen(1);
  CHECK_THROWS_WITH_AS(gen.below(0), "Generator::below: n must be positive, got 0", Error);
  CHECK_THROWS_WITH_AS(uniform({2}, 1.0, 0.0, gen), "uniform: needs finite low <= high, got low 1, high 0", Error);
  CHECK_THROWS_WITH_AS(normal({2}, 0.0, -1.0, gen), "normal: needs a finite mean and a finite std >= 0, got mean 0, std -1",
                       Error);
  CHECK(values(uniform({1}, 2.0, 2.0, gen))[0] == 2.0f);  // low == high is a constant
  // xoshiro256 never leaves the all-zero state: a generator set to it would return 0 forever.
  const Generator::State before = gen.state();
  CHECK_THROWS_WITH_AS(gen.set_state(Generator::State{}),
                       "Generator::set_state: the all-zero state is not a state of xoshiro256 (it would draw 0 forever)",
                       Error);
  for (int i = 0; i < 4; ++i) CHECK(gen.state().words[i] == before.words[i]);
}

// ---- threads ------------------------------------------------------------------------------------

TEST_CASE("two threads drawing from the default generator get one unbroken sequence between them") {
  constexpr int kDraws = 200000;
  manual_seed(123);
  std::vector<std::uint64_t> a(kDraws), b(kDraws);
  {
    std::thread ta([&] {
      for (auto& v : a) v = default_generator().next_u64();
    });
    std::thread tb([&] {
      for (auto& v : b) v = default_generator().next_u64();
    });
    ta.join();
    tb.join();
  }
  // Together they are exactly the first 2 * kDraws values of the seeded sequence, each once: a
  // race would repeat or corrupt values.
  Generator reference(123);
  std::vector<std::uint64_t> want(2 * kDraws);
  for (auto& v : want) v = reference.next_u64();
  std::vector<std::uint64_t> got = a;
  got.insert(got.end(), b.begin(), b.end());
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  CHECK(got == want);
}

TEST_CASE("set_num_threads, num_threads and parallel_for are safe to call from different threads at once") {
  const int before = num_threads();
  std::atomic<bool> bad = false;
  std::thread setter([] {
    for (int i = 0; i < 500; ++i) set_num_threads(1 + i % 2);
  });
  std::thread worker([&] {
    for (int i = 0; i < 500; ++i) {
      const int n = num_threads();
      if (n != 1 && n != 2 && n != before) bad = true;
      std::atomic<std::int64_t> total = 0;
      parallel_for(0, 10000, 100, [&](std::int64_t b, std::int64_t e) {
        std::int64_t s = 0;
        for (std::int64_t k = b; k < e; ++k) s += k;
        total += s;
      });
      if (total != std::int64_t{10000} * 9999 / 2) bad = true;
    }
  });
  setter.join();
  worker.join();
  CHECK_FALSE(bad);
  set_num_threads(before);
  CHECK(num_threads() == before);
}
