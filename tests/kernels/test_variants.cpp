#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/conv.h"
#include "kernels/elementwise.h"
#include "kernels/gemm_bf16.h"
#include "kernels/isa.h"
#include "kernels/norm.h"
#include "kernels/optim.h"
#include "kernels/reduce.h"
#include "kernels/simd.h"

// Every multiversioned kernel (kernels/simd.h) gives the same numbers under each instruction set
// the CPU supports as under the portable baseline, at awkward sizes (every vector tail) and on
// strided, broadcast and contiguous operands. Tolerance: 4 ulp of the baseline result (8 for
// centered RMSprop) or 1e-6 absolute; NaN where it is NaN. The variants evaluate the same
// expressions in the same order, but the vector ones contract a * b + c into one fused
// multiply-add, rounded once: where terms cancel the difference is absolute, not relative, and
// it compounds over an optimizer's three steps. The inputs are of order 1 to 30, so 1e-6
// absolute is a few ulp of them.

namespace {

using ladon::kernels::Isa;
using i64 = std::int64_t;

constexpr i64 kSizes[] = {0, 1, 3, 7, 15, 16, 17, 255, 1023, 4097};

// A kernel run on fresh copies of fixed inputs: returns every float it wrote.
using Run = std::function<std::vector<float>(i64 n)>;

// How far got is from want, in units of the tolerance: <= 1 passes.
double error_ratio(float got, float want, double ulps) {
  if (std::isnan(want) || std::isnan(got)) return std::isnan(want) && std::isnan(got) ? 0.0 : INFINITY;
  if (std::isinf(want)) return got == want ? 0.0 : INFINITY;
  const float ulp = std::nextafter(std::fabs(want), std::numeric_limits<float>::infinity()) - std::fabs(want);
  return std::fabs(static_cast<double>(got) - want) / std::max(ulps * ulp, 1e-6);
}

// The kernels (by the name in kernels::kMultiversioned) that have a row in this run.
std::set<std::string>& covered() {
  static std::set<std::string> names;
  return names;
}

void check_variants(const std::string& kernel, const std::string& name, const Run& run, double ulps = 4.0) {
  covered().insert(kernel);
  CAPTURE(kernel);
  CAPTURE(name);
  for (i64 n : kSizes) {
    CAPTURE(n);
    std::vector<float> want;
    {
      const ladon::kernels::IsaOverride use(Isa::baseline);
      want = run(n);
    }
    for (Isa isa : ladon::kernels::kIsas) {
      if (isa == Isa::baseline || !ladon::kernels::isa_supported(isa)) continue;
      const std::string isa_name = ladon::kernels::isa_name(isa);
      CAPTURE(isa_name);
      const ladon::kernels::IsaOverride use(isa);
      const std::vector<float> got = run(n);
      REQUIRE(got.size() == want.size());
      i64 bad = 0;
      double worst = 0;
      for (std::size_t i = 0; i < got.size(); ++i) {
        const double ratio = error_ratio(got[i], want[i], ulps);
        bad += !(ratio <= 1.0);
        worst = std::max(worst, ratio);
      }
      CHECK_MESSAGE(bad == 0, bad, " of ", got.size(), " values differ from the baseline variant; worst ", worst,
                    " x the tolerance");
    }
  }
}

// Inputs over a wide range (including a few NaN, inf and zeros), fixed by seed; 2n + 1 of them so a
// stride of 2 stays in bounds.
std::vector<float> values(i64 n, std::uint32_t seed, float low = -30.0f, float high = 30.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(low, high);
  std::vector<float> v(static_cast<std::size_t>(2 * n + 1));
  for (float& x : v) x = u(rng);
  if (v.size() > 7) {
    v[3] = 0.0f;
    v[5] = std::numeric_limits<float>::infinity();
    v[6] = std::numeric_limits<float>::quiet_NaN();
  }
  return v;
}

struct Layout {
  i64 sa, sb, so;
  const char* name;
};
constexpr Layout kLayouts[] = {{1, 1, 1, "contiguous"},
                               {1, 0, 1, "b broadcast"},
                               {0, 1, 1, "a broadcast"},
                               {2, 2, 1, "strided"},
                               {1, 1, 2, "strided out"}};

TEST_CASE("IsaOverride: names, support, nesting, and a clear error for a set the CPU lacks") {
  using ladon::kernels::active_isa;
  using ladon::kernels::best_isa;
  CHECK(ladon::kernels::isa_supported(Isa::baseline));
  CHECK(ladon::kernels::isa_supported(best_isa()));
  CHECK(active_isa() == best_isa());
  CHECK(std::string(ladon::kernels::isa_name(Isa::avx2)) == "avx2");
  CHECK(std::string(ladon::kernels::isa_name(Isa::avx512_bf16)) == "avx512_bf16");
  // Levels include the ones below them: AVX512_BF16 is only used on top of x86-64-v4.
  if (ladon::kernels::isa_supported(Isa::avx512_bf16)) CHECK(ladon::kernels::isa_supported(Isa::avx512));
  {
    const ladon::kernels::IsaOverride outer(Isa::baseline);
    CHECK(active_isa() == Isa::baseline);
    {
      const ladon::kernels::IsaOverride inner(best_isa());
      CHECK(active_isa() == best_isa());
    }
    CHECK(active_isa() == Isa::baseline);
  }
  CHECK(active_isa() == best_isa());
  if (!ladon::kernels::isa_supported(Isa::avx512)) {
    CHECK_THROWS_WITH_AS(ladon::kernels::IsaOverride(Isa::avx512),
                         doctest::Contains("IsaOverride: this CPU does not support avx512"), std::invalid_argument);
    CHECK(active_isa() == best_isa());
  }
  if (!ladon::kernels::isa_supported(Isa::avx512_bf16))
    CHECK_THROWS_WITH_AS(ladon::kernels::IsaOverride(Isa::avx512_bf16),
                         doctest::Contains("IsaOverride: this CPU does not support avx512_bf16"), std::invalid_argument);
}

void elementwise_rows() {
  using ladon::kernels::BinaryOp;
  using ladon::kernels::UnaryOp;
  const std::pair<UnaryOp, const char*> unary_ops[] = {
      {UnaryOp::copy, "copy"}, {UnaryOp::neg, "neg"},   {UnaryOp::exp, "exp"},   {UnaryOp::log, "log"},
      {UnaryOp::sqrt, "sqrt"}, {UnaryOp::abs, "abs"},   {UnaryOp::relu, "relu"}, {UnaryOp::sigmoid, "sigmoid"},
      {UnaryOp::tanh, "tanh"}, {UnaryOp::gelu, "gelu"}, {UnaryOp::sign, "sign"}, {UnaryOp::gelu_grad, "gelu_grad"},
      {UnaryOp::gelu_tanh, "gelu_tanh"}, {UnaryOp::gelu_tanh_grad, "gelu_tanh_grad"}};
  for (const auto& [op, name] : unary_ops)
    for (i64 sx : {1, 2}) {
      check_variants("unary", std::string(name) + (sx == 1 ? "" : " strided"), [op = op, sx](i64 n) {
        const std::vector<float> x = values(n, 1);
        std::vector<float> out(static_cast<std::size_t>(n));
        ladon::kernels::unary(op, n, x.data(), sx, out.data(), 1);
        return out;
      });
    }

  const std::pair<BinaryOp, const char*> binary_ops[] = {
      {BinaryOp::add, "add"}, {BinaryOp::sub, "sub"},         {BinaryOp::mul, "mul"},        {BinaryOp::div, "div"},
      {BinaryOp::pow, "pow"}, {BinaryOp::maximum, "maximum"}, {BinaryOp::minimum, "minimum"}};
  for (const auto& [op, name] : binary_ops)
    for (const Layout& l : kLayouts) {
      check_variants("binary", std::string(name) + " " + l.name, [op = op, l](i64 n) {
        const std::vector<float> a = values(n, 2, -3.0f, 3.0f), b = values(n, 3, -3.0f, 3.0f);
        std::vector<float> out(static_cast<std::size_t>(n * l.so));
        ladon::kernels::binary(op, n, a.data(), l.sa, b.data(), l.sb, out.data(), l.so);
        return out;
      });
    }

  using ladon::kernels::CompareOp;
  for (CompareOp op : {CompareOp::eq, CompareOp::ne, CompareOp::lt, CompareOp::le, CompareOp::gt, CompareOp::ge})
    check_variants("compare", "compare " + std::to_string(static_cast<int>(op)), [op](i64 n) {
      std::vector<float> a = values(n, 4, -2.0f, 2.0f), b = values(n, 5, -2.0f, 2.0f);
      for (std::size_t i = 0; i < a.size(); i += 3) a[i] = b[i];  // some equal pairs
      std::vector<float> out(static_cast<std::size_t>(n));
      ladon::kernels::compare(op, n, a.data(), 1, b.data(), 1, out.data(), 1);
      return out;
    });

  check_variants("clamp", "clamp", [](i64 n) {
    const std::vector<float> x = values(n, 6);
    std::vector<float> out(static_cast<std::size_t>(n));
    ladon::kernels::clamp(n, x.data(), 1, -1.5f, 2.5f, out.data(), 1);
    return out;
  });
  check_variants("relu_grad", "relu_grad", [](i64 n) {
    const std::vector<float> y = values(n, 7), g = values(n, 8);
    std::vector<float> out(static_cast<std::size_t>(n));
    ladon::kernels::relu_grad(n, y.data(), g.data(), out.data());
    return out;
  });
}

void reduction_rows() {
  for (i64 inner : {1, 3}) {
    check_variants("sum_reduce", "sum_reduce inner " + std::to_string(inner), [inner](i64 n) {
      const std::vector<float> x = values(2 * n * inner, 9, -1.0f, 1.0f);
      std::vector<float> out(static_cast<std::size_t>(2 * inner));
      ladon::kernels::sum_reduce(2, n, inner, x.data(), out.data());
      return out;
    });
    for (bool log : {false, true})
      check_variants("softmax", std::string(log ? "log_softmax" : "softmax") + " inner " + std::to_string(inner),
                     [inner, log](i64 n) {
                       const std::vector<float> x = values(2 * n * inner, 10, -20.0f, 20.0f);
                       std::vector<float> out(static_cast<std::size_t>(2 * n * inner));
                       ladon::kernels::softmax(2, n, inner, x.data(), out.data(), log);
                       return out;
                     });
  }
  check_variants("softmax_backward", "softmax_backward", [](i64 n) {
    // y of a softmax's size (about 1/n each), so the row's dot is g's weighted mean, not a sum of n.
    const float mean = 1.0f / static_cast<float>(n + 1);
    const std::vector<float> y = values(3 * n, 19, 0.0f, 2.0f * mean), g = values(3 * n, 20, -1.0f, 1.0f);
    std::vector<float> out(static_cast<std::size_t>(3 * n));
    ladon::kernels::softmax_backward(3, n, y.data(), g.data(), out.data());
    return out;
  });
  // 130 rows: short rows go in blocks of 64, so two full blocks and a ragged one.
  for (bool log : {false, true})
    check_variants("softmax", std::string(log ? "log_softmax" : "softmax") + " 130 rows", [log](i64 n) {
      const std::vector<float> x = values(130 * n, 18, -20.0f, 20.0f);
      std::vector<float> out(static_cast<std::size_t>(130 * n));
      ladon::kernels::softmax(130, n, 1, x.data(), out.data(), log);
      return out;
    });
  // Three rows, the middle one read at a stride longer than n (a column block of wider rows).
  check_variants("gram", "gram", [](i64 n) {
    const i64 stride = n + 5;
    const std::vector<float> x = values(3 * stride, 12, -1.0f, 1.0f);
    std::vector<double> out(9);
    ladon::kernels::gram(3, n, stride, x.data(), out.data());
    return std::vector<float>(out.begin(), out.end());
  });
  // Rows of n values mixed over 3 experts, the weights read at a stride (a gate's column).
  check_variants("mix", "mix", [](i64 n) {
    const i64 rows = 2, experts = 3, w_stride = 5;
    const std::vector<float> w = values(rows * w_stride, 13, -1.0f, 1.0f),
                             x = values(rows * experts * n, 14, -1.0f, 1.0f);
    std::vector<float> out(static_cast<std::size_t>(rows * n));
    ladon::kernels::mix(rows, experts, n, w.data(), w_stride, x.data(), out.data());
    return out;
  });
  check_variants("mix_backward", "mix_backward", [](i64 n) {
    const i64 rows = 2, experts = 3, w_stride = 5;
    const std::vector<float> w = values(rows * w_stride, 15, -1.0f, 1.0f),
                             x = values(rows * experts * n, 16, -1.0f, 1.0f), g = values(rows * n, 17, -1.0f, 1.0f);
    std::vector<float> out(static_cast<std::size_t>(rows * experts + rows * experts * n));
    ladon::kernels::mix_backward(rows, experts, n, w.data(), w_stride, x.data(), g.data(), out.data(),
                                 out.data() + rows * experts);
    return out;
  });
  check_variants("softmax_cross_entropy", "softmax_cross_entropy", [](i64 n) {
    const i64 rows = 3;
    const std::vector<float> x = values(rows * n, 11, -20.0f, 20.0f);
    std::vector<std::int64_t> target(rows);
    for (i64 r = 0; r < rows; ++r) target[static_cast<std::size_t>(r)] = n > 0 ? (r * 5) % n : 0;
    std::vector<float> out(static_cast<std::size_t>(rows * n + rows));
    if (n > 0)
      ladon::kernels::softmax_cross_entropy(rows, n, x.data(), target.data(), out.data(), out.data() + rows * n);
    return out;
  });
}

void optimizer_rows() {
  // Parameter, gradient and state buffers, updated three steps in place; the result is all of them.
  auto state = [](i64 n, int buffers) {
    std::vector<std::vector<float>> s;
    s.push_back(values(n, 12, -1.0f, 1.0f));
    s.push_back(values(n, 13, -1.0f, 1.0f));
    for (int b = 0; b < buffers; ++b) s.emplace_back(static_cast<std::size_t>(2 * n + 1), 0.0f);
    return s;
  };
  auto flatten = [](const std::vector<std::vector<float>>& s) {
    std::vector<float> all;
    for (const auto& v : s) all.insert(all.end(), v.begin(), v.end());
    return all;
  };
  for (bool nesterov : {false, true})
    check_variants("sgd_update", nesterov ? "sgd nesterov" : "sgd momentum", [&, nesterov](i64 n) {
      auto s = state(n, 1);
      for (int step = 0; step < 3; ++step)
        ladon::kernels::sgd_update(n, s[0].data(), s[1].data(), s[2].data(), 0.1f, 0.9f, 0.0f, 0.01f, nesterov,
                                   step == 0);
      return flatten(s);
    });
  for (bool decoupled : {false, true})
    check_variants("adam_update", decoupled ? "adamw" : "adam", [&, decoupled](i64 n) {
      auto s = state(n, 2);
      for (int step = 1; step <= 3; ++step)
        ladon::kernels::adam_update(n, s[0].data(), s[1].data(), s[2].data(), s[3].data(), 1e-3f, 0.9f, 0.999f, 1e-8f,
                                    0.01f, decoupled, step);
      return flatten(s);
    });
  // Centered RMSprop divides by sqrt(E[g^2] - E[g]^2), a difference of squares: rounding differences
  // grow to 7 ulp of the momentum buffer over three steps, so it gets 8.
  check_variants(
      "rmsprop_update", "rmsprop centered with momentum",
      [&](i64 n) {
        auto s = state(n, 3);
        for (int step = 0; step < 3; ++step)
          ladon::kernels::rmsprop_update(n, s[0].data(), s[1].data(), s[2].data(), s[3].data(), s[4].data(), 0.01f,
                                         0.99f, 1e-8f, 0.01f, 0.9f);
        return flatten(s);
      },
      8.0);
  check_variants("adagrad_update", "adagrad", [&](i64 n) {
    auto s = state(n, 1);
    for (int step = 0; step < 3; ++step)
      ladon::kernels::adagrad_update(n, s[0].data(), s[1].data(), s[2].data(), 0.01f, 1e-10f, 0.01f);
    return flatten(s);
  });
  // The row forms on rows 3, 0 and 2 of a [5, n] table (n the row width), three steps.
  const std::vector<std::int64_t> rows = {3, 0, 2};
  check_variants("sgd_update_rows", "sgd rows", [&](i64 n) {
    auto s = state(5 * n, 0);
    for (int step = 0; step < 3; ++step)
      ladon::kernels::sgd_update_rows(3, rows.data(), n, s[0].data(), s[1].data(), 0.1f);
    return flatten(s);
  });
  check_variants("adam_update_rows", "adam rows", [&](i64 n) {
    auto s = state(5 * n, 2);
    for (int step = 1; step <= 3; ++step)
      ladon::kernels::adam_update_rows(3, rows.data(), n, s[0].data(), s[1].data(), s[2].data(), s[3].data(), 1e-3f,
                                       0.9f, 0.999f, 1e-8f, step);
    return flatten(s);
  });
  check_variants("adagrad_update_rows", "adagrad rows", [&](i64 n) {
    auto s = state(5 * n, 1);
    for (int step = 0; step < 3; ++step)
      ladon::kernels::adagrad_update_rows(3, rows.data(), n, s[0].data(), s[1].data(), s[2].data(), 0.01f, 1e-10f);
    return flatten(s);
  });
}

void norm_rows() {
  // [outer, channels, inner] = [3, 2, n], the second channel only: the range must be respected.
  for (const i64 inner : {i64{1}, i64{5}}) {
    auto layout = [inner](i64 n) { return ladon::kernels::ChannelRange{3, 2, n * inner, 1, 2}; };
    const std::string tag = " inner x" + std::to_string(inner);
    check_variants("channel_mean_var", "channel_mean_var" + tag, [&](i64 n) {
      const std::vector<float> x = values(3 * 2 * n * inner, 11, -3.0f, 3.0f);
      std::vector<float> mean(2, -1.0f), var(2, -1.0f);
      ladon::kernels::channel_mean_var(layout(n), x.data(), mean.data(), var.data());
      if (n * inner == 0) return std::vector<float>{};
      return std::vector<float>{mean[0], mean[1], var[0], var[1]};
    });
    check_variants("channel_scale_shift", "channel_scale_shift" + tag, [&](i64 n) {
      const std::vector<float> x = values(3 * 2 * n * inner, 12);
      const std::vector<float> scale = {0.5f, -1.5f}, shift = {2.0f, 0.25f};
      std::vector<float> y(x.size(), 7.0f);
      ladon::kernels::channel_scale_shift(layout(n), x.data(), scale.data(), shift.data(), y.data());
      return y;
    });
    // Sums of hundreds of signed terms, added in another order by the vector variants: where they
    // cancel, the difference is a few ulp of the terms, not of the sum, so this row gets 16.
    check_variants("channel_grad_sums", "channel_grad_sums" + tag, [&](i64 n) {
      const std::vector<float> dy = values(3 * 2 * n * inner, 13, -1.0f, 1.0f), x = values(3 * 2 * n * inner, 14, -3.0f, 3.0f);
      const std::vector<float> mean = {0.1f, -0.2f};
      std::vector<float> sum_dy(2, 0.0f), sum_dy_xc(2, 0.0f);
      ladon::kernels::channel_grad_sums(layout(n), dy.data(), x.data(), mean.data(), sum_dy.data(), sum_dy_xc.data());
      return std::vector<float>{sum_dy[0], sum_dy[1], sum_dy_xc[0], sum_dy_xc[1]};
    }, 16.0);
    check_variants("channel_combine", "channel_combine" + tag, [&](i64 n) {
      const std::vector<float> dy = values(3 * 2 * n * inner, 15), x = values(3 * 2 * n * inner, 16);
      const std::vector<float> a = {0.5f, 1.25f}, b = {-0.75f, 0.125f}, k = {0.0f, 3.0f};
      std::vector<float> dx(dy.size(), 7.0f);
      ladon::kernels::channel_combine(layout(n), dy.data(), a.data(), x.data(), b.data(), k.data(), dx.data());
      return dx;
    });
  }
}

// The 2x2 stride-2 window over planes of height x width: 2 rows of width / 2 outputs.
ladon::kernels::Window2d pool_2x2_window(i64 height, i64 width) {
  ladon::kernels::Window2d w;
  w.height = height;
  w.width = width;
  w.kernel_h = w.kernel_w = w.stride_h = w.stride_w = 2;
  w.out_h = 2;
  w.out_w = width / 2;
  return w;
}

// Three planes of 5 x n for the 2x2 pool's backward rows: ties (the first must win), NaNs and
// zeros (which a ReLU mask blocks).
std::vector<float> pool_backward_input(i64 n) {
  std::vector<float> x = values(15 * n, 27);
  for (std::size_t i = 0; i + 9 < x.size(); i += 11) x[i + 1] = x[i];
  for (std::size_t i = 5; i < x.size(); i += 37) x[i] = NAN;
  for (std::size_t i = 3; i < x.size(); i += 13) x[i] = 0.0f;
  return x;
}

void pool_rows() {
  // The 2x2 stride-2 fast path: 3 planes of 4 x 2n, ties and NaN included by values().
  check_variants("max_pool2d_2x2", "max_pool2d 2x2", [](i64 n) {
    const ladon::kernels::Window2d w = pool_2x2_window(4, 2 * n);
    std::vector<float> x = values(3 * 4 * n, 17);
    for (std::size_t i = 8; i + 1 < x.size(); i += 9) x[i + 1] = x[i];  // ties: the first must win
    std::vector<float> out(static_cast<std::size_t>(3 * 2 * n));
    std::vector<std::int64_t> argmax(out.size());
    ladon::kernels::max_pool2d(w, 3, x.data(), out.data(), argmax.data());
    for (std::int64_t a : argmax) out.push_back(static_cast<float>(a));
    return out;
  });
}

void conv_rows() {
  using ladon::kernels::Activation;
  // Two images of three rows, n positions each, side by side in a block whose rows are padded.
  for (const Activation act : {Activation::none, Activation::relu})
    for (const bool with_bias : {false, true})
      check_variants("conv_store", std::string("conv_store") + (act == Activation::relu ? " relu" : "") + (with_bias ? " bias" : ""),
                     [act, with_bias](i64 n) {
                       const i64 ld = 2 * n + 3;
                       const std::vector<float> c = values(3 * ld, 21), bias = {0.5f, -2.0f, 7.0f};
                       std::vector<float> out(static_cast<std::size_t>(6 * n));
                       ladon::kernels::conv_store(2, 3, n, c.data(), ld, with_bias ? bias.data() : nullptr, act,
                                                  out.data());
                       return out;
                     });
  for (const bool masked : {false, true})
    check_variants("conv_gather", std::string("conv_gather") + (masked ? " relu mask" : ""), [masked](i64 n) {
      const i64 ld = 2 * n + 3;
      const std::vector<float> g = values(3 * n, 22), y = values(3 * n, 23);
      std::vector<float> c(static_cast<std::size_t>(3 * ld), -1.0f);
      ladon::kernels::conv_gather(2, 3, n, g.data(), masked ? y.data() : nullptr, c.data(), ld);
      return c;
    });
  // Two planes of 3 x n padded by (1, 2), with and without the ReLU mask.
  for (const bool masked : {false, true})
    check_variants("conv_pad", std::string("conv_pad") + (masked ? " relu mask" : ""), [masked](i64 n) {
      const std::vector<float> x = values(6 * n, 25), y = values(6 * n, 26);
      std::vector<float> padded(static_cast<std::size_t>(2 * 5 * (n + 4)), -1.0f);
      ladon::kernels::conv_pad(2, 3, n, 1, 2, x.data(), masked ? y.data() : nullptr, padded.data());
      return padded;
    });
  // The 2x2 stride-2 max pool on three planes of 2 x n (rows of n / 2 outputs: every tile tail),
  // values and the winners' offsets.
  check_variants("max_pool2d_2x2", "max_pool2d 2x2 rows of n", [](i64 n) {
    const ladon::kernels::Window2d w = pool_2x2_window(4, n);
    std::vector<float> x = values(6 * n, 24);
    for (std::size_t i = 0; i + 9 < x.size(); i += 11) x[i + 1] = x[i];  // ties
    std::vector<float> out(static_cast<std::size_t>(6 * w.out_w));
    std::vector<std::int64_t> at(out.size());
    ladon::kernels::max_pool2d(w, 3, x.data(), out.data(), at.data());
    for (const std::int64_t a : at) out.push_back(static_cast<float>(a));
    return out;
  });
  // The same windows keeping taps (conv2d_max_pool2x2's bytes): the same values, and each tap
  // names the element the offset kernel names, under each set.
  check_variants("max_pool2d_2x2_taps", "max_pool2d 2x2 taps rows of n", [](i64 n) {
    const ladon::kernels::Window2d w = pool_2x2_window(4, n);
    std::vector<float> x = values(6 * n, 24);
    for (std::size_t i = 0; i + 9 < x.size(); i += 11) x[i + 1] = x[i];  // ties
    std::vector<float> out(static_cast<std::size_t>(6 * w.out_w)), with(out.size());
    std::vector<std::uint8_t> taps(out.size(), 9);
    std::vector<std::int64_t> at(out.size());
    ladon::kernels::max_pool2d_2x2_taps(w, 3, x.data(), out.data(), taps.data());
    ladon::kernels::max_pool2d(w, 3, x.data(), with.data(), at.data());
    CHECK((out.empty() || std::memcmp(out.data(), with.data(), out.size() * sizeof(float)) == 0));
    for (std::size_t i = 0; i < taps.size(); ++i) {
      const i64 plane_row = static_cast<i64>(i) / w.out_w, ox = static_cast<i64>(i) % w.out_w;
      const i64 oy = plane_row % w.out_h, top = 2 * oy * w.width;
      CHECK(top + 2 * ox + (taps[i] & 1) + (taps[i] >> 1) * w.width == at[i]);
    }
    for (const std::uint8_t t : taps) out.push_back(static_cast<float>(t));
    return out;
  });
  // Without argmax (a no-grad forward): rows of n / 2 outputs, and an odd-height plane (its last
  // row in no window); its values are bit for bit those of the argmax kernel, under each set.
  check_variants("max_pool2d_2x2_values", "max_pool2d 2x2 values only", [](i64 n) {
    ladon::kernels::Window2d w = pool_2x2_window(5, n);
    std::vector<float> x = values(15 * n, 27);
    for (std::size_t i = 0; i + 9 < x.size(); i += 11) x[i + 1] = x[i];  // ties
    std::vector<float> out(static_cast<std::size_t>(6 * w.out_w), -7.0f), with(out.size(), -8.0f);
    std::vector<std::int64_t> at(out.size());
    ladon::kernels::max_pool2d(w, 3, x.data(), out.data(), nullptr);
    ladon::kernels::max_pool2d(w, 3, x.data(), with.data(), at.data());
    // (memcmp takes no null pointer, which an empty vector may hold)
    CHECK((out.empty() || std::memcmp(out.data(), with.data(), out.size() * sizeof(float)) == 0));
    return out;
  });
  // Its backward on three planes of 5 x n (the last row, and for odd n the last column, in no
  // window), from argmaxes with ties and NaNs: every element written, once, into a buffer of -7.
  // With mask: the pooled values themselves, as conv2d_max_pool2x2's ReLU (negative, zero and NaN
  // ones block the gradient).
  for (const bool masked : {false, true})
    check_variants(
        "max_pool2d_2x2_backward", std::string("max_pool2d 2x2 backward rows of n") + (masked ? " masked" : ""),
        [masked](i64 n) {
          const ladon::kernels::Window2d w = pool_2x2_window(5, n);
          const std::vector<float> x = pool_backward_input(n);
          std::vector<float> pooled(static_cast<std::size_t>(6 * w.out_w)), grad = values(6 * w.out_w, 28);
          std::vector<std::int64_t> at(pooled.size());
          {
            const ladon::kernels::IsaOverride baseline(Isa::baseline);  // the same argmaxes for every variant
            ladon::kernels::max_pool2d(w, 3, x.data(), pooled.data(), at.data());
          }
          std::vector<float> gx(static_cast<std::size_t>(15 * n + 1), -7.0f);  // one guard float past the planes
          ladon::kernels::max_pool2d_2x2_backward(w, 3, grad.data(), at.data(), masked ? pooled.data() : nullptr,
                                                  gx.data());
          return gx;
        });
  // The same from taps: bit for bit the offsets' gradient, under each set.
  for (const bool masked : {false, true})
    check_variants(
        "max_pool2d_2x2_taps_backward",
        std::string("max_pool2d 2x2 taps backward rows of n") + (masked ? " masked" : ""), [masked](i64 n) {
          const ladon::kernels::Window2d w = pool_2x2_window(5, n);
          const std::vector<float> x = pool_backward_input(n);
          std::vector<float> pooled(static_cast<std::size_t>(6 * w.out_w)), grad = values(6 * w.out_w, 28);
          std::vector<std::int64_t> at(pooled.size());
          std::vector<std::uint8_t> taps(pooled.size());
          {
            const ladon::kernels::IsaOverride baseline(Isa::baseline);  // the same winners for every variant
            ladon::kernels::max_pool2d(w, 3, x.data(), pooled.data(), at.data());
            ladon::kernels::max_pool2d_2x2_taps(w, 3, x.data(), pooled.data(), taps.data());
          }
          const float* mask = masked ? pooled.data() : nullptr;
          std::vector<float> gx(static_cast<std::size_t>(15 * n + 1), -7.0f), from_offsets = gx;
          ladon::kernels::max_pool2d_2x2_taps_backward(w, 3, grad.data(), taps.data(), mask, gx.data());
          ladon::kernels::max_pool2d_2x2_backward(w, 3, grad.data(), at.data(), mask, from_offsets.data());
          CHECK(std::memcmp(gx.data(), from_offsets.data(), gx.size() * sizeof(float)) == 0);
          return gx;
        });
}

void bf16_rows() {
  // Rounding to bf16 in place: NaN, infinities, zeros, ties at every vector tail (values() has
  // them), the same bits as the scalar float_to_bf16.
  check_variants("round_to_bf16", "round_to_bf16", [](i64 n) {
    std::vector<float> x = values(n, 37);
    for (std::size_t i = 8; i < x.size(); i += 5)
      x[i] = std::bit_cast<float>(static_cast<std::uint32_t>(0x3f808000u + (i & 1u) * 0x10000u));  // ties
    std::vector<float> out = x;
    ladon::kernels::round_to_bf16(static_cast<i64>(out.size()), out.data());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float want = ladon::kernels::bf16_to_float(ladon::kernels::float_to_bf16(x[i]));
      CHECK((std::isnan(want) ? std::isnan(out[i])
                              : std::bit_cast<std::uint32_t>(out[i]) == std::bit_cast<std::uint32_t>(want)));
    }
    return out;
  });
}

void layer_norm_variant_rows() {
  // Three rows of n values (n = 0 has no rows to normalise), with and without the affine.
  for (const bool affine : {false, true}) {
    check_variants("layer_norm_rows", std::string("layer_norm_rows") + (affine ? " affine" : ""), [affine](i64 n) {
      if (n == 0) return std::vector<float>{};
      const std::vector<float> x = values(3 * n, 31, -3.0f, 3.0f), w = values(n, 32, -2.0f, 2.0f),
                               b = values(n, 33, -2.0f, 2.0f);
      std::vector<float> out(static_cast<std::size_t>(3 * n + 6));
      ladon::kernels::layer_norm_rows(3, n, x.data(), affine ? w.data() : nullptr, affine ? b.data() : nullptr, 1e-5f,
                                      out.data(), out.data() + 3 * n, out.data() + 3 * n + 3);
      return out;
    });
    check_variants("layer_norm_backward_rows", std::string("layer_norm_backward_rows") + (affine ? " affine" : ""), [affine](i64 n) {
      if (n == 0) return std::vector<float>{};
      const std::vector<float> x = values(3 * n, 34, -3.0f, 3.0f), dy = values(3 * n, 35, -2.0f, 2.0f),
                               w = values(n, 36, -2.0f, 2.0f), mean = {0.5f, -0.25f, 1.0f}, rstd = {1.5f, 0.75f, 2.0f};
      std::vector<float> out(static_cast<std::size_t>(5 * n), 0.0f);  // dx, dweight, dbias
      ladon::kernels::layer_norm_backward_rows(3, n, dy.data(), x.data(), mean.data(), rstd.data(),
                                               affine ? w.data() : nullptr, out.data(), out.data() + 3 * n,
                                               out.data() + 4 * n);
      return out;
    });
  }
}

}  // namespace

// The variants test walks kernels::kMultiversioned: a kernel in that list without a row fails.
TEST_CASE("every multiversioned kernel: every instruction set matches the baseline") {
  covered().clear();
  elementwise_rows();
  reduction_rows();
  optimizer_rows();
  norm_rows();
  pool_rows();
  conv_rows();
  layer_norm_variant_rows();
  bf16_rows();
  for (const char* kernel : ladon::kernels::kMultiversioned) {
    CAPTURE(kernel);
    CHECK_MESSAGE(covered().count(kernel) == 1, "no variants row in tests/kernels/test_variants.cpp");
  }
  for (const std::string& name : covered()) {
    const bool listed = std::find_if(std::begin(ladon::kernels::kMultiversioned), std::end(ladon::kernels::kMultiversioned),
                                     [&](const char* k) { return name == k; }) != std::end(ladon::kernels::kMultiversioned);
    CHECK_MESSAGE(listed, name, " has a row but is not in kernels::kMultiversioned");
  }
}

// And the list names every kernel: each Multiversion<NAME_body> in kernels/*.cpp is in it, so a new
// kernel cannot skip the list (and with it the variants test).
TEST_CASE("kernels::kMultiversioned names every Multiversion body in kernels/") {
  std::set<std::string> in_source;
  const std::filesystem::path dir = std::filesystem::path(LADON_SOURCE_ROOT) / "kernels";
  REQUIRE(std::filesystem::is_directory(dir));
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".cpp" && entry.path().extension() != ".h") continue;
    std::ifstream in(entry.path());
    REQUIRE_MESSAGE(in.good(), "cannot read ", entry.path().string());
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    // Every "Multiversion<NAME_body>", found by hand: std::regex trips GCC 12's -Wmaybe-uninitialized
    // at -O1 (the sanitizer build).
    const std::string open = "Multiversion<", close = "_body>";
    for (std::size_t at = s.find(open); at != std::string::npos; at = s.find(open, at + 1)) {
      const std::size_t name = at + open.size(), end = s.find(close, name);
      if (end == std::string::npos) break;
      const std::string id = s.substr(name, end - name);
      const bool word = !id.empty() && std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
      });
      if (word) in_source.insert(id);
    }
  }
  CHECK(in_source.size() >= 21);
  for (const std::string& kernel : in_source) {
    CAPTURE(kernel);
    const bool listed = std::find_if(std::begin(ladon::kernels::kMultiversioned), std::end(ladon::kernels::kMultiversioned),
                                     [&](const char* k) { return kernel == k; }) != std::end(ladon::kernels::kMultiversioned);
    CHECK_MESSAGE(listed, "add it to kernels::kMultiversioned (kernels/simd.h) and give it a variants row");
  }
}

TEST_CASE("gram: the Gramian of strided rows against a double loop, over several column blocks") {
  // 3 rows of 9,001 floats (two full 4096-column blocks and a ragged tail) at a stride of 9,010.
  const i64 rows = 3, n = 9001, stride = 9010;
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(rows * stride));
  for (float& v : x) v = u(rng);
  std::vector<double> got(9, -1.0);
  ladon::kernels::gram(rows, n, stride, x.data(), got.data());
  for (i64 i = 0; i < rows; ++i)
    for (i64 j = 0; j < rows; ++j) {
      double want = 0;
      for (i64 k = 0; k < n; ++k)
        want += static_cast<double>(x[static_cast<std::size_t>(i * stride + k)]) *
                x[static_cast<std::size_t>(j * stride + k)];
      CAPTURE(i);
      CAPTURE(j);
      // Float sums over 64 products per lane: a few ulp of the lane sums, far below 1e-5 here.
      CHECK(got[static_cast<std::size_t>(i * rows + j)] == doctest::Approx(want).epsilon(1e-5));
    }
  CHECK(got[1] == got[3]);  // symmetric by construction
  // No rows, or rows of no columns: zeros, and nothing read.
  std::vector<double> empty_out(4, -1.0);
  ladon::kernels::gram(2, 0, 0, nullptr, empty_out.data());
  CHECK(empty_out == std::vector<double>(4, 0.0));
}

TEST_CASE("optimizer row forms: each listed row as the flat kernel on that row, to the bit; no other row moves") {
  // 40 rows (more than the prefetch distance) of 17 floats (a vector and a tail), 30 of them listed,
  // out of order; three steps under every instruction set the CPU has.
  const i64 num = 40, dim = 17;
  std::vector<std::int64_t> rows;
  for (i64 k = 0; k < 30; ++k) rows.push_back((k * 7) % num);
  const auto n = static_cast<i64>(rows.size());
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto fill = [&](i64 count) {
    std::vector<float> v(static_cast<std::size_t>(count));
    for (float& x : v) x = u(rng);
    return v;
  };
  const std::vector<float> param0 = fill(num * dim), grad = fill(n * dim);
  std::vector<float> m0 = fill(num * dim), v0 = fill(num * dim);
  for (float& x : v0) x = std::fabs(x);  // a second moment or a sum of squares: >= 0
  for (Isa isa : ladon::kernels::kIsas) {
    if (!ladon::kernels::isa_supported(isa)) continue;
    const ladon::kernels::IsaOverride use(isa);
    CAPTURE(ladon::kernels::isa_name(isa));
    auto row = [&](std::vector<float>& t, std::int64_t r) { return t.data() + r * dim; };
    std::vector<float> p = param0, m = m0, v = v0, want_p = param0, want_m = m0, want_v = v0;
    for (int step = 1; step <= 3; ++step) {
      ladon::kernels::adam_update_rows(n, rows.data(), dim, p.data(), grad.data(), m.data(), v.data(), 1e-2f, 0.9f,
                                       0.999f, 1e-8f, step);
      for (i64 k = 0; k < n; ++k)
        ladon::kernels::adam_update(dim, row(want_p, rows[static_cast<std::size_t>(k)]), grad.data() + k * dim,
                                    row(want_m, rows[static_cast<std::size_t>(k)]),
                                    row(want_v, rows[static_cast<std::size_t>(k)]), 1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f,
                                    false, step);
    }
    CHECK(p == want_p);
    CHECK(m == want_m);
    CHECK(v == want_v);
    CHECK(p[5 * dim] == param0[5 * dim]);  // row 5 is not listed ((k * 7) % 40 for k < 30 skips it)
    p = param0, v = v0, want_p = param0, want_v = v0;
    ladon::kernels::adagrad_update_rows(n, rows.data(), dim, p.data(), grad.data(), v.data(), 0.1f, 1e-10f);
    for (i64 k = 0; k < n; ++k)
      ladon::kernels::adagrad_update(dim, row(want_p, rows[static_cast<std::size_t>(k)]), grad.data() + k * dim,
                                     row(want_v, rows[static_cast<std::size_t>(k)]), 0.1f, 1e-10f, 0.0f);
    CHECK(p == want_p);
    CHECK(v == want_v);
    p = param0, want_p = param0;
    ladon::kernels::sgd_update_rows(n, rows.data(), dim, p.data(), grad.data(), 0.1f);
    for (i64 k = 0; k < n; ++k)
      ladon::kernels::sgd_update(dim, row(want_p, rows[static_cast<std::size_t>(k)]), grad.data() + k * dim, nullptr,
                                 0.1f, 0.0f, 0.0f, 0.0f, false, false);
    CHECK(p == want_p);
  }
}
