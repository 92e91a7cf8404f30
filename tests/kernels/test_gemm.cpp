#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/gemm.h"

// Every sgemm path (each micro-kernel forced in turn, the CPUID-chosen default, OpenBLAS) against a
// naive double-precision product. Tolerance: |c - ref| <= 1e-5 * (|alpha| * sum_p |a_ip||b_pj| +
// |beta| * |c0_ij|) + 1e-30, i.e. relative to the magnitude of what was summed: rounding in float
// with k <= 1000 stays well inside it, while any indexing, packing or edge error is of order 1.
// C's padding between rows (ldc > n) is filled with a sentinel that must survive, and C starts as NaN
// when beta == 0, which must be overwritten, never read.

namespace {

using ladon::kernels::Activation;
using ladon::kernels::Isa;
using i64 = std::int64_t;

struct Case {
  i64 m, n, k;
  bool ta, tb;
  float alpha, beta;
  i64 pad;  // extra elements per row of A, B and C beyond the minimum leading dimension
  bool bias = false;
  Activation activation = Activation::none;
};

constexpr float kSentinel = -12345.0f;

struct Problem {
  Case cs;
  i64 lda, ldb, ldc;
  std::vector<float> a, b, c0, bias;
  std::vector<double> ref, mag;
  ladon::kernels::Epilogue epilogue;

  explicit Problem(const Case& c, std::mt19937& rng) : cs(c) {
    const i64 a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
    const i64 b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
    lda = a_cols + c.pad;
    ldb = b_cols + c.pad;
    ldc = c.n + c.pad;
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    a.assign(static_cast<std::size_t>(std::max<i64>(a_rows * lda, 1)), 0.0f);
    b.assign(static_cast<std::size_t>(std::max<i64>(b_rows * ldb, 1)), 0.0f);
    for (float& x : a) x = dist(rng);
    for (float& x : b) x = dist(rng);
    c0.assign(static_cast<std::size_t>(std::max<i64>(c.m * ldc, 1)), kSentinel);
    for (i64 i = 0; i < c.m; ++i)
      for (i64 j = 0; j < c.n; ++j)
        c0[static_cast<std::size_t>(i * ldc + j)] =
            c.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : dist(rng);
    ref.assign(static_cast<std::size_t>(c.m * c.n), 0.0);
    mag.assign(static_cast<std::size_t>(c.m * c.n), 0.0);
    for (i64 i = 0; i < c.m; ++i)
      for (i64 j = 0; j < c.n; ++j) {
        double s = 0.0, sa = 0.0;
        for (i64 p = 0; p < c.k; ++p) {
          const double av = c.ta ? a[static_cast<std::size_t>(p * lda + i)] : a[static_cast<std::size_t>(i * lda + p)];
          const double bv = c.tb ? b[static_cast<std::size_t>(j * ldb + p)] : b[static_cast<std::size_t>(p * ldb + j)];
          s += av * bv;
          sa += std::fabs(av * bv);
        }
        const double old = c.beta == 0.0f ? 0.0 : c0[static_cast<std::size_t>(i * ldc + j)];
        ref[static_cast<std::size_t>(i * c.n + j)] = c.alpha * s + c.beta * old;
        mag[static_cast<std::size_t>(i * c.n + j)] = std::fabs(c.alpha) * sa + std::fabs(c.beta * old);
      }
    if (c.bias) {
      bias.resize(static_cast<std::size_t>(std::max<i64>(c.n, 1)));
      for (float& x : bias) x = dist(rng);
      epilogue.bias = bias.data();
      for (i64 i = 0; i < c.m; ++i)
        for (i64 j = 0; j < c.n; ++j) {
          ref[static_cast<std::size_t>(i * c.n + j)] += bias[static_cast<std::size_t>(j)];
          mag[static_cast<std::size_t>(i * c.n + j)] += std::fabs(bias[static_cast<std::size_t>(j)]);
        }
    }
    epilogue.activation = c.activation;
    if (c.activation == Activation::relu)
      for (double& r : ref) r = std::max(r, 0.0);
  }

  template <class Fn>
  void check(const std::string& what, Fn&& gemm) const {
    std::vector<float> c = c0;
    gemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, cs.alpha, a.data(), lda, b.data(), ldb, cs.beta, c.data(), ldc, epilogue);
    INFO(what, " m=", cs.m, " n=", cs.n, " k=", cs.k, " ta=", cs.ta, " tb=", cs.tb, " alpha=", cs.alpha,
         " beta=", cs.beta, " pad=", cs.pad, " bias=", cs.bias, " relu=", cs.activation == Activation::relu);
    i64 bad = 0;
    double worst = 0.0;
    for (i64 i = 0; i < cs.m; ++i)
      for (i64 j = 0; j < ldc; ++j) {
        const float got = c[static_cast<std::size_t>(i * ldc + j)];
        if (j >= cs.n) {
          bad += got != kSentinel;  // padding must not be touched
          continue;
        }
        const double want = ref[static_cast<std::size_t>(i * cs.n + j)];
        const double err = std::fabs(got - want), tol = 1e-5 * mag[static_cast<std::size_t>(i * cs.n + j)] + 1e-30;
        if (!(err <= tol)) {
          ++bad;
          worst = std::max(worst, std::isnan(err) ? INFINITY : err / tol);
        }
      }
    CHECK_MESSAGE(bad == 0, bad, " wrong elements, worst error/tolerance ", worst);
  }
};

void check_all_paths(const Case& c, std::mt19937& rng) {
  const Problem p(c, rng);
  for (Isa isa : ladon::kernels::kIsas) {
    if (!ladon::kernels::isa_supported(isa)) continue;
    const std::string name = ladon::kernels::isa_name(isa);
    for (bool allow_unpacked : {true, false})
      p.check(allow_unpacked ? name : name + " packed only",
              [isa, allow_unpacked](bool ta, bool tb, i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda,
                                    const float* b, i64 ldb, float beta, float* c, i64 ldc,
                                    const ladon::kernels::Epilogue& ep) {
                ladon::kernels::sgemm_with_isa(isa, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                                               allow_unpacked, ep);
              });
  }
  p.check("sgemm", [](auto... args) { ladon::kernels::sgemm(args...); });
  p.check("sgemm_scalar", [](auto... args) { ladon::kernels::sgemm_scalar(args...); });
  p.check("openblas", [](auto... args) { ladon::kernels::sgemm_reference(args...); });
}

}  // namespace

TEST_CASE("sgemm: every path matches a double-precision product at awkward sizes") {
  std::mt19937 rng(7);
  const i64 sizes[] = {0, 1, 3, 7, 17};
  const float betas[] = {0.0f, 1.0f, 0.5f};
  int index = 0;
  for (int t = 0; t < 4; ++t)
    for (i64 m : sizes)
      for (i64 n : sizes)
        for (i64 k : sizes) {
          const float beta = betas[index % 3];
          const i64 pad = index % 2 == 0 ? 0 : 3;
          ++index;
          // Every third case adds a bias epilogue, every other one a ReLU: all four mixes occur.
          check_all_paths({m, n, k, (t & 1) != 0, (t & 2) != 0, index % 4 == 0 ? 1.0f : -0.75f, beta, pad,
                           index % 3 == 0, index % 2 == 0 ? Activation::relu : Activation::none},
                          rng);
        }
}

TEST_CASE("sgemm: larger shapes cross every cache block and register-tile edge") {
  std::mt19937 rng(11);
  // Chosen to cross MC (m > 280), KC (k > 384, so beta is applied only to the first k block), NC
  // (n > 4096), to leave every remainder of the 14 x 32 / 6 x 16 / 4 x 8 tiles, and to give each
  // packing routine both full 16-wide transposes and scalar tails.
  const struct {
    i64 m, n, k;
  } shapes[] = {{255, 255, 255}, {1023, 65, 300}, {17, 255, 7}, {255, 1, 255}, {1, 255, 255},
                {31, 47, 800},   {300, 33, 17},   {5, 4100, 3}, {29, 100, 385}};
  const float betas[] = {0.0f, 1.0f, 0.5f};
  int index = 0;
  for (const auto& s : shapes)
    for (int t = 0; t < 4; ++t) {
      const float beta = betas[index % 3];
      ++index;
      check_all_paths({s.m, s.n, s.k, (t & 1) != 0, (t & 2) != 0, 1.5f, beta, index % 2 == 0 ? 0 : 5, t >= 2,
                       t % 2 == 1 ? Activation::relu : Activation::none},
                      rng);
    }
}

TEST_CASE("sgemm: k == 0 or alpha == 0 scales C by beta without reading A or B") {
  std::vector<float> c = {1.0f, 2.0f, 3.0f, 4.0f};
  ladon::kernels::sgemm(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.5f, c.data(), 2);
  CHECK(c == std::vector<float>{0.5f, 1.0f, 1.5f, 2.0f});
  c.assign(4, std::numeric_limits<float>::quiet_NaN());
  ladon::kernels::sgemm(false, false, 2, 2, 3, 0.0f, nullptr, 3, nullptr, 2, 0.0f, c.data(), 2);
  CHECK(c == std::vector<float>{0.0f, 0.0f, 0.0f, 0.0f});
}

TEST_CASE("sgemm follows an IsaOverride") {
  // A 64x64x64 product takes the packed path; under each override it must equal that micro-kernel's.
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> a(64 * 64), b(64 * 64), forced(64 * 64), overridden(64 * 64);
  for (float& v : a) v = normal(rng);
  for (float& v : b) v = normal(rng);
  for (Isa isa : ladon::kernels::kIsas) {
    if (!ladon::kernels::isa_supported(isa)) continue;
    CAPTURE(ladon::kernels::isa_name(isa));
    ladon::kernels::sgemm_with_isa(isa, false, false, 64, 64, 64, 1.0f, a.data(), 64, b.data(), 64, 0.0f, forced.data(),
                                   64);
    const ladon::kernels::IsaOverride use(isa);
    ladon::kernels::sgemm(false, false, 64, 64, 64, 1.0f, a.data(), 64, b.data(), 64, 0.0f, overridden.data(), 64);
    CHECK(forced == overridden);
  }
}

TEST_CASE("sgemm: the AVX2 unpacked path for small products gives the packed path's bits and a plain FMA loop's") {
  if (!ladon::kernels::isa_supported(Isa::avx2)) return;
  // Shapes with m * k or m * n <= 64 (the unpacked path): an MMoE mixture's three products (the
  // [2, 4] x [4, 64] forward, its [2, 64] x [64, 4]^T and [4, 2]^T x [2, 64] gradients), every row
  // count of the 4-row tile and column tails of the 16-wide one, and k past the 256-long k block.
  const struct {
    i64 m, n, k;
    bool ta, tb;
  } shapes[] = {{2, 64, 4, false, false}, {2, 4, 64, false, true},  {4, 64, 2, true, false}, {1, 32, 2048, true, false},
                {3, 17, 21, true, true},  {5, 9, 12, false, true},  {7, 5, 9, false, false}, {64, 1, 1, true, true},
                {1, 100, 64, false, false}, {9, 7, 300, false, true}, {16, 4, 600, true, false}};
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const auto& s : shapes)
    for (float beta : {0.0f, 1.0f})
      for (float alpha : {1.0f, -0.75f}) {
        CAPTURE(s.m);
        CAPTURE(s.n);
        CAPTURE(s.k);
        CAPTURE(beta);
        CAPTURE(alpha);
        const i64 lda = (s.ta ? s.m : s.k) + 1, ldb = (s.tb ? s.k : s.n) + 2, ldc = s.n + 3;
        std::vector<float> a(static_cast<std::size_t>((s.ta ? s.k : s.m) * lda));
        std::vector<float> b(static_cast<std::size_t>((s.tb ? s.n : s.k) * ldb));
        std::vector<float> c0(static_cast<std::size_t>(s.m * ldc));
        for (float& x : a) x = dist(rng);
        for (float& x : b) x = dist(rng);
        for (float& x : c0) x = dist(rng);
        std::vector<float> direct = c0, packed = c0;
        ladon::kernels::sgemm_with_isa(Isa::avx2, s.ta, s.tb, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta,
                                       direct.data(), ldc, true);
        ladon::kernels::sgemm_with_isa(Isa::avx2, s.ta, s.tb, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta,
                                       packed.data(), ldc, false);
        // alpha = 1 (every product ladon's ops ask for): the same bits, padding included. Other
        // alphas round differently in the packed path's own edge tiles (alpha * acc + beta * C
        // contracted into one FMA) and full tiles (alpha * acc rounded first), so only the plain
        // loop below pins them.
        if (alpha == 1.0f) CHECK(direct == packed);
        if (s.k > 256) continue;  // one k block: the plain loop below is the whole story
        std::vector<float> plain = c0;
        for (i64 i = 0; i < s.m; ++i)
          for (i64 j = 0; j < s.n; ++j) {
            float acc = 0.0f;
            for (i64 p = 0; p < s.k; ++p)
              acc = std::fma(s.ta ? a[static_cast<std::size_t>(p * lda + i)] : a[static_cast<std::size_t>(i * lda + p)],
                             s.tb ? b[static_cast<std::size_t>(j * ldb + p)] : b[static_cast<std::size_t>(p * ldb + j)],
                             acc);
            float& out = plain[static_cast<std::size_t>(i * ldc + j)];
            out = beta == 0.0f ? alpha * acc : std::fma(beta, out, alpha * acc);
          }
        CHECK(direct == plain);
      }
}
