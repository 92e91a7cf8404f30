#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "for_each_isa.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"

// The vectorised exp/log/tanh/sigmoid of kernels/vmath.h, reached through kernels::unary under every
// instruction set the CPU supports (each variant vectorises its own copy), against double-precision
// libm: the bounds stated in vmath.h, over dense sweeps, plus the special values.

namespace {

using ladon::kernels::UnaryOp;

std::vector<float> apply(UnaryOp op, const std::vector<float>& x) {
  std::vector<float> y(x.size());
  ladon::kernels::unary(op, static_cast<std::int64_t>(x.size()), x.data(), 1, y.data(), 1);
  return y;
}

// Error in units in the last place of the correctly rounded float result.
double ulps(float got, double want) {
  const float w = static_cast<float>(want);
  const float a = std::fabs(w);
  const double ulp = std::nextafter(a, std::numeric_limits<float>::infinity()) - a;
  return std::fabs(static_cast<double>(got) - want) / ulp;
}

std::vector<float> sweep(float lo, float hi, int n) {
  std::vector<float> x(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) x[static_cast<std::size_t>(i)] = lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(n - 1);
  return x;
}

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

}  // namespace

TEST_CASE("vexp: within 2 ulp on [-87, 88], subnormal results scaled right, overflow and NaN") {
  ladon::testing::for_each_isa([] {
    const std::vector<float> x = sweep(-87.0f, 88.0f, 400001);
    const std::vector<float> y = apply(UnaryOp::exp, x);
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, ulps(y[i], std::exp(static_cast<double>(x[i]))));
    CHECK(worst <= 2.0);

    // Subnormal results: within one subnormal step (1.4e-45) plus 2 ulp of the leading part.
    for (float v : sweep(-103.0f, -87.5f, 2001)) {
      const double want = std::exp(static_cast<double>(v));
      CHECK(std::fabs(apply(UnaryOp::exp, {v})[0] - want) <=
            2.0 * std::numeric_limits<float>::denorm_min() + 3e-7 * want);
    }
    const std::vector<float> special = apply(UnaryOp::exp, {88.72f, 88.73f, 1000.0f, kInf, -104.5f, -kInf, kNaN, 0.0f});
    CHECK(ulps(special[0], std::exp(static_cast<double>(88.72f))) <= 2.0);
    CHECK(special[1] == kInf);
    CHECK(special[2] == kInf);
    CHECK(special[3] == kInf);
    CHECK(special[4] == 0.0f);
    CHECK(special[5] == 0.0f);
    CHECK(std::isnan(special[6]));
    CHECK(special[7] == 1.0f);
  });
}

TEST_CASE("vlog: 2e-7 absolute on [0.5, 2], 2 ulp elsewhere including subnormals; 0, negatives, inf, NaN") {
  ladon::testing::for_each_isa([] {
    double worst_abs = 0;
    const std::vector<float> near_one = sweep(0.5f, 2.0f, 300001);
    const std::vector<float> y = apply(UnaryOp::log, near_one);
    for (std::size_t i = 0; i < y.size(); ++i)
      worst_abs = std::max(worst_abs, std::fabs(y[i] - std::log(static_cast<double>(near_one[i]))));
    CHECK(worst_abs <= 2e-7);

  std::vector<float> wide;  // every binade from the smallest subnormal to the largest float
  for (float v = std::numeric_limits<float>::denorm_min(); v < 3e38f; v = std::max(v * 1.0137f, std::nextafter(v, kInf)))
    wide.push_back(v);
  const std::vector<float> yw = apply(UnaryOp::log, wide);
  double worst = 0;
  for (std::size_t i = 0; i < wide.size(); ++i)
    if (wide[i] < 0.5f || wide[i] > 2.0f) worst = std::max(worst, ulps(yw[i], std::log(static_cast<double>(wide[i]))));
  CHECK(worst <= 2.0);

    const std::vector<float> special = apply(UnaryOp::log, {0.0f, -0.0f, -1.0f, kInf, kNaN, 1.0f});
    CHECK(special[0] == -kInf);
    CHECK(special[1] == -kInf);
    CHECK(std::isnan(special[2]));
    CHECK(special[3] == kInf);
    CHECK(std::isnan(special[4]));
    CHECK(special[5] == 0.0f);
  });
}

TEST_CASE("vtanh and vsigmoid: stated absolute and relative bounds, saturation, NaN") {
  ladon::testing::for_each_isa([] {
    const std::vector<float> x = sweep(-12.0f, 12.0f, 400001);
    const std::vector<float> t = apply(UnaryOp::tanh, x);
    double worst_abs = 0, worst_rel_small = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double want = std::tanh(static_cast<double>(x[i]));
      worst_abs = std::max(worst_abs, std::fabs(t[i] - want));
      if (std::fabs(x[i]) < 0.625f && x[i] != 0.0f) worst_rel_small = std::max(worst_rel_small, ulps(t[i], want));
    }
    CHECK(worst_abs <= 2.4e-7);
    CHECK(worst_rel_small <= 3.0);

  const std::vector<float> xs = sweep(-87.0f, 40.0f, 400001);
  const std::vector<float> s = apply(UnaryOp::sigmoid, xs);
  double worst_sig_abs = 0, worst_sig_rel = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double want = 1.0 / (1.0 + std::exp(-static_cast<double>(xs[i])));
    worst_sig_abs = std::max(worst_sig_abs, std::fabs(s[i] - want));
    worst_sig_rel = std::max(worst_sig_rel, ulps(s[i], want));
  }
  CHECK(worst_sig_abs <= 2.4e-7);
  CHECK(worst_sig_rel <= 4.0);

    const std::vector<float> ts = apply(UnaryOp::tanh, {kInf, -kInf, 30.0f, kNaN, 0.0f, 1e-30f});
    CHECK(ts[0] == 1.0f);
    CHECK(ts[1] == -1.0f);
    CHECK(ts[2] == 1.0f);
    CHECK(std::isnan(ts[3]));
    CHECK(ts[4] == 0.0f);
    CHECK(ts[5] == 1e-30f);
    const std::vector<float> ss = apply(UnaryOp::sigmoid, {kInf, -kInf, 0.0f, kNaN});
    CHECK(ss[0] == 1.0f);
    CHECK(ss[1] == 0.0f);
    CHECK(ss[2] == 0.5f);
    CHECK(std::isnan(ss[3]));
  });
}

TEST_CASE("gelu (exact form) through verf: error within 3e-7 * (1 + |x|), derivative too") {
  ladon::testing::for_each_isa([] {
    const std::vector<float> x = sweep(-10.0f, 10.0f, 200001);
    const std::vector<float> y = apply(UnaryOp::gelu, x);
    const std::vector<float> dy = apply(UnaryOp::gelu_grad, x);
    double worst = 0, worst_grad = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      const double cdf = 0.5 * (1.0 + std::erf(v / std::sqrt(2.0)));
      worst = std::max(worst, std::fabs(y[i] - v * cdf) / (1.0 + std::fabs(v)));
      const double want_grad = cdf + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
      worst_grad = std::max(worst_grad, std::fabs(dy[i] - want_grad) / (1.0 + std::fabs(v)));
    }
    CHECK(worst <= 3e-7);
    CHECK(worst_grad <= 3e-7);
    const std::vector<float> edges = apply(UnaryOp::gelu, {kInf, -30.0f, kNaN, 0.0f});
    CHECK(edges[0] == kInf);
    CHECK(edges[1] == 0.0f);
    CHECK(std::isnan(edges[2]));
    CHECK(edges[3] == 0.0f);
  });
}

TEST_CASE("gelu (tanh form) through vtanh: error within 2.4e-7 * (1 + |x|)") {
  ladon::testing::for_each_isa([] {
    const std::vector<float> x = sweep(-10.0f, 10.0f, 200001);
    const std::vector<float> y = apply(UnaryOp::gelu_tanh, x);
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      const double want = 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
      worst = std::max(worst, std::fabs(y[i] - want) / (1.0 + std::fabs(v)));
    }
    CHECK(worst <= 2.4e-7);
  });
}

TEST_CASE("softmax kernel: rows along the last axis and along a strided axis agree with double") {
  ladon::testing::for_each_isa([] {
    const std::int64_t n = 37;
    std::vector<float> x(static_cast<std::size_t>(3 * n));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(std::sin(0.7 * static_cast<double>(i)) * 20.0);
    for (bool log : {false, true}) {
      std::vector<float> rows(x.size()), cols(x.size()), transposed(x.size());
      ladon::kernels::softmax(3, n, 1, x.data(), rows.data(), log);
      // The same three rows laid out as [n, 3]: softmax over the middle axis with inner = 3.
      for (std::int64_t o = 0; o < 3; ++o)
        for (std::int64_t r = 0; r < n; ++r)
          transposed[static_cast<std::size_t>(r * 3 + o)] = x[static_cast<std::size_t>(o * n + r)];
      ladon::kernels::softmax(1, n, 3, transposed.data(), cols.data(), log);
      for (std::int64_t o = 0; o < 3; ++o) {
        double top = -1e300, total = 0;
        for (std::int64_t r = 0; r < n; ++r)
          top = std::max(top, static_cast<double>(x[static_cast<std::size_t>(o * n + r)]));
        for (std::int64_t r = 0; r < n; ++r) total += std::exp(x[static_cast<std::size_t>(o * n + r)] - top);
        for (std::int64_t r = 0; r < n; ++r) {
          const double z = x[static_cast<std::size_t>(o * n + r)] - top;
          const double want = log ? z - std::log(total) : std::exp(z) / total;
          CHECK(rows[static_cast<std::size_t>(o * n + r)] == doctest::Approx(want).epsilon(1e-5).scale(1.0));
          CHECK(cols[static_cast<std::size_t>(r * 3 + o)] == doctest::Approx(want).epsilon(1e-5).scale(1.0));
        }
      }
    }
  });
}

TEST_CASE("sum_reduce: a long row in blocks matches the double sum; odd lengths hit every tail") {
  ladon::testing::for_each_isa([] {
    for (std::int64_t n : {1, 15, 17, 4095, 4096, 4097, 1000003}) {
      std::vector<float> x(static_cast<std::size_t>(n));
      double want = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        x[static_cast<std::size_t>(i)] = static_cast<float>(1.0 + std::cos(static_cast<double>(i)));
        want += x[static_cast<std::size_t>(i)];
      }
      float got = 0;
      ladon::kernels::sum_reduce(1, n, 1, x.data(), &got);
      CHECK(got == doctest::Approx(want).epsilon(1e-6));
    }
  });
}
