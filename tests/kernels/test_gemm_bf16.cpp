#include <doctest/doctest.h>
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/gemm_bf16.h"

// The bf16 GEMM (kernels/gemm_bf16.h): the float -> bf16 rounding bit by bit, every variant against
// a double-precision product of the bf16-rounded inputs, and the native kernel against its
// emulation.
//
// Tolerance against the double reference: |c - ref| <= (k + 4) * 2^-24 * (|alpha| sum_p |a_ip||b_pj|
// + |beta c0_ij| + |bias_j|) + 1e-30, the classic bound for a float32 sum of k exact products plus
// the alpha/beta/bias steps. The reference rounds the inputs to bf16 the same way, so only float32
// accumulation is left; an unrounded input (the kernel silently computing in float32) is off by
// up to 2^-9 relative, which the last check of each case catches.
//
// Native vs emulated: both sum the same exact products in the same order with the same rounding,
// so they agree bit for bit where the instruction follows its specification (Zen 5 does). The test
// allows (k/2 + 1) * 2^-24 * sum |a||b|: what any other order of float32 additions stays within,
// so a CPU that fused the pair differently would still pass while an indexing error would not.

namespace {

using ladon::kernels::Activation;
using ladon::kernels::bf16_to_float;
using ladon::kernels::float_to_bf16;
using ladon::kernels::Isa;
using i64 = std::int64_t;

std::uint16_t bits_of(std::uint32_t u) { return float_to_bf16(std::bit_cast<float>(u)); }

float round_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }

constexpr const auto& kAllIsas = ladon::kernels::kIsas;  // every set, weakest first (isa.h)
using ladon::kernels::Bf16Kernel;
using ladon::kernels::bf16_kernel_name;

// The AVX512_BF16-level kernels this machine can run (vdpbf16ps needs AVX512_BF16, the FMA one
// AVX-512, the AMX one AMX-BF16).
std::vector<Bf16Kernel> supported_kernels() {
  std::vector<Bf16Kernel> kernels;
  for (Bf16Kernel k : {Bf16Kernel::dot, Bf16Kernel::fma, Bf16Kernel::amx})
    if (ladon::kernels::bf16_kernel_supported(k)) kernels.push_back(k);
  return kernels;
}

struct Case {
  i64 m, n, k;
  bool ta, tb;
  float alpha = 1.0f, beta = 0.0f;
  bool bias = false;
  Activation activation = Activation::none;
};

struct Problem {
  Case cs;
  i64 lda, ldb, ldc;
  std::vector<float> a, b, c0, bias;
  std::vector<double> ref, ref_unrounded, mag;
  ladon::kernels::Epilogue epilogue;

  Problem(const Case& c, std::mt19937& rng) : cs(c) {
    const i64 a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
    const i64 b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
    lda = a_cols + 3;  // padded rows: leading dimensions are honoured
    ldb = b_cols + 1;
    ldc = c.n + 2;
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    a.resize(static_cast<std::size_t>(std::max<i64>(a_rows * lda, 1)));
    b.resize(static_cast<std::size_t>(std::max<i64>(b_rows * ldb, 1)));
    for (float& x : a) x = dist(rng);
    for (float& x : b) x = dist(rng);
    c0.assign(static_cast<std::size_t>(std::max<i64>(c.m * ldc, 1)), -777.0f);
    for (i64 i = 0; i < c.m; ++i)
      for (i64 j = 0; j < c.n; ++j)
        c0[static_cast<std::size_t>(i * ldc + j)] =
            c.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : dist(rng);
    if (c.bias) {
      bias.resize(static_cast<std::size_t>(std::max<i64>(c.n, 1)));
      for (float& x : bias) x = dist(rng);
      epilogue.bias = bias.data();
    }
    epilogue.activation = c.activation;
    ref.assign(static_cast<std::size_t>(c.m * c.n), 0.0);
    ref_unrounded = ref;
    mag = ref;
    for (i64 i = 0; i < c.m; ++i)
      for (i64 j = 0; j < c.n; ++j) {
        double s = 0.0, s32 = 0.0, sa = 0.0;
        for (i64 p = 0; p < c.k; ++p) {
          const float av = c.ta ? a[static_cast<std::size_t>(p * lda + i)] : a[static_cast<std::size_t>(i * lda + p)];
          const float bv = c.tb ? b[static_cast<std::size_t>(j * ldb + p)] : b[static_cast<std::size_t>(p * ldb + j)];
          const double prod = static_cast<double>(round_bf16(av)) * round_bf16(bv);
          s += prod;
          s32 += static_cast<double>(av) * bv;
          sa += std::fabs(prod);
        }
        const std::size_t o = static_cast<std::size_t>(i * c.n + j);
        const double old = c.beta == 0.0f ? 0.0 : c0[static_cast<std::size_t>(i * ldc + j)];
        const double bj = c.bias ? bias[static_cast<std::size_t>(j)] : 0.0;
        ref[o] = c.alpha * s + c.beta * old + bj;
        ref_unrounded[o] = c.alpha * s32 + c.beta * old + bj;
        mag[o] = std::fabs(c.alpha) * sa + std::fabs(c.beta * old) + std::fabs(bj);
        if (c.activation == Activation::relu) {
          ref[o] = std::max(ref[o], 0.0);
          ref_unrounded[o] = std::max(ref_unrounded[o], 0.0);
        }
      }
  }

  std::vector<float> run(Isa isa) const {
    std::vector<float> c = c0;
    ladon::kernels::gemm_bf16_with_isa(isa, cs.ta, cs.tb, cs.m, cs.n, cs.k, cs.alpha, a.data(), lda, b.data(), ldb,
                                       cs.beta, c.data(), ldc, epilogue);
    return c;
  }
  std::vector<float> run(Bf16Kernel kernel) const {
    std::vector<float> c = c0;
    ladon::kernels::gemm_bf16_with_kernel(kernel, cs.ta, cs.tb, cs.m, cs.n, cs.k, cs.alpha, a.data(), lda, b.data(),
                                          ldb, cs.beta, c.data(), ldc, epilogue);
    return c;
  }

  // How many elements miss the reference (and C's padding must keep its sentinel).
  i64 misses(const std::vector<float>& c, const std::vector<double>& want, double& worst) const {
    i64 bad = 0;
    const double tol_scale = (static_cast<double>(cs.k) + 4.0) * std::ldexp(1.0, -24);
    for (i64 i = 0; i < cs.m; ++i)
      for (i64 j = 0; j < ldc; ++j) {
        const float got = c[static_cast<std::size_t>(i * ldc + j)];
        if (j >= cs.n) {
          bad += got != -777.0f;
          continue;
        }
        const std::size_t o = static_cast<std::size_t>(i * cs.n + j);
        const double err = std::fabs(got - want[o]), tol = tol_scale * mag[o] + 1e-30;
        if (!(err <= tol)) {
          ++bad;
          worst = std::max(worst, std::isnan(err) ? INFINITY : err / tol);
        }
      }
    return bad;
  }
};

std::string describe(const Case& c) {
  return "m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) +
         " ta=" + std::to_string(c.ta) + " tb=" + std::to_string(c.tb) + " alpha=" + std::to_string(c.alpha) +
         " beta=" + std::to_string(c.beta) + " bias=" + std::to_string(c.bias) +
         " relu=" + std::to_string(c.activation == Activation::relu);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 false positive in _mm512 intrinsics
// The CPU's own float -> bf16 conversion (vcvtneps2bf16), to hold float_to_bf16 to it.
__attribute__((target("avx512f,avx512bf16"))) void native_convert(const float* x, std::uint16_t* out) {
  const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(x));
  std::memcpy(out, &h, 32);
}
#pragma GCC diagnostic pop

}  // namespace

TEST_CASE("float_to_bf16: round to nearest even, ties to even, NaN, infinities, denormals") {
  // 1 + 2^-8 lies exactly between bf16 1.0 (0x3f80, even) and 1 + 2^-7 (0x3f81): a tie goes to even.
  CHECK(bits_of(0x3f808000u) == 0x3f80);
  CHECK(bits_of(0x3f818000u) == 0x3f82);  // tie between 0x3f81 (odd) and 0x3f82: up to even
  CHECK(bits_of(0x3f808001u) == 0x3f81);  // just above the tie: up
  CHECK(bits_of(0x3f807fffu) == 0x3f80);  // just below: down
  CHECK(bits_of(0xbf808000u) == 0xbf80);  // negative ties alike (magnitude rounding)
  CHECK(bits_of(0xbf818000u) == 0xbf82);
  CHECK(float_to_bf16(1.0f) == 0x3f80);
  CHECK(float_to_bf16(-2.5f) == 0xc020);
  CHECK(float_to_bf16(0.0f) == 0x0000);
  CHECK(float_to_bf16(-0.0f) == 0x8000);
  // Infinities stay; the largest finite floats round up to infinity, as nearest-even demands.
  CHECK(float_to_bf16(std::numeric_limits<float>::infinity()) == 0x7f80);
  CHECK(float_to_bf16(-std::numeric_limits<float>::infinity()) == 0xff80);
  CHECK(bits_of(0x7f7fffffu) == 0x7f80);
  CHECK(bits_of(0x7f7f7fffu) == 0x7f7f);
  CHECK(bits_of(0xff7fffffu) == 0xff80);
  // NaN stays NaN, quiet, sign kept: a signalling NaN with only low payload bits must not become inf.
  CHECK(bits_of(0x7fc00000u) == 0x7fc0);
  CHECK(bits_of(0x7f800001u) == 0x7fc0);
  CHECK(bits_of(0xff800001u) == 0xffc0);
  CHECK(bits_of(0x7fffffffu) == 0x7fff);
  CHECK(std::isnan(bf16_to_float(bits_of(0x7f800001u))));
  // float32 denormals flush to a zero of their sign (as the bf16 instructions treat them); the
  // smallest normal float survives and a value just below 2^-125 rounds up across the binade.
  CHECK(bits_of(0x00000001u) == 0x0000);
  CHECK(bits_of(0x007fffffu) == 0x0000);
  CHECK(bits_of(0x807fffffu) == 0x8000);
  CHECK(bits_of(0x00800000u) == 0x0080);
  CHECK(bits_of(0x00ffffffu) == 0x0100);
  // Every finite bf16 value (normal or zero) and both infinities convert back exactly.
  i64 mismatched = 0;
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const bool nan = (h & 0x7fffu) > 0x7f80u, denormal = (h & 0x7f80u) == 0 && (h & 0x7fu) != 0;
    if (nan || denormal) continue;
    mismatched += float_to_bf16(bf16_to_float(static_cast<std::uint16_t>(h))) != h;
  }
  CHECK(mismatched == 0);
}

TEST_CASE("float_to_bf16 matches the CPU's vcvtneps2bf16 bit for bit") {
  if (!ladon::kernels::isa_supported(Isa::avx512_bf16)) {
    MESSAGE("no AVX512_BF16 on this CPU: the native conversion is not compared");
    return;
  }
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::uint32_t> any;
  i64 differ = 0;
  for (int round = 0; round < 20000; ++round) {
    float x[16];
    std::uint16_t native[16];
    for (int i = 0; i < 16; ++i) {
      // Mix random bit patterns (many NaN, inf, denormal) with exact ties.
      std::uint32_t u = any(rng);
      if (i % 4 == 1) u = (u & 0xffff0000u) | 0x8000u;
      if (i % 4 == 2) u &= 0x807fffffu;  // denormal or zero
      x[i] = std::bit_cast<float>(u);
    }
    native_convert(x, native);
    for (int i = 0; i < 16; ++i) differ += float_to_bf16(x[i]) != native[i];
  }
  CHECK(differ == 0);
}

TEST_CASE("gemm_bf16: every variant matches a double product of bf16-rounded inputs at awkward sizes") {
  // Sizes cross each block: MR = 14, NR = 32, KC = 768 (k-pairs, odd k), MC = 280, NC = 4096; for
  // AMX MR = 32 (two tiles of 16 rows), KC = 512, MC = 256, k padded to whole tiles of 32.
  const Case shapes[] = {{1, 1, 1, false, false},      {7, 17, 1, false, false},   {17, 7, 33, false, false},
                         {13, 31, 1023, false, false}, {15, 33, 2, false, false},  {29, 65, 769, false, false},
                         {300, 40, 50, false, false},  {1, 4100, 3, false, false}, {1023, 17, 9, false, false},
                         {14, 32, 64, false, false},   {2, 3, 1537, false, false}, {33, 48, 513, false, false},
                         {257, 31, 32, false, false},  {64, 64, 31, false, false}};
  std::mt19937 rng(5);
  for (Case base : shapes)
    for (int layout = 0; layout < 4; ++layout) {
      Case c = base;
      c.ta = layout & 1;
      c.tb = layout & 2;
      // Vary scaling and the epilogue across layouts rather than multiplying the cases.
      if (layout == 1) c.alpha = -0.5f;
      if (layout == 2) c.beta = 1.0f, c.bias = true;
      if (layout == 3) c.alpha = 2.0f, c.beta = 0.25f, c.bias = true, c.activation = Activation::relu;
      const Problem p(c, rng);
      std::vector<std::pair<std::string, std::vector<float>>> results;
      for (Isa isa : kAllIsas)
        if (ladon::kernels::isa_supported(isa)) results.emplace_back(ladon::kernels::isa_name(isa), p.run(isa));
      for (Bf16Kernel kernel : supported_kernels()) results.emplace_back(bf16_kernel_name(kernel), p.run(kernel));
      for (const auto& [variant, got] : results) {
        double worst = 0.0;
        const i64 bad = p.misses(got, p.ref, worst);
        CHECK_MESSAGE(bad == 0, variant, " ", describe(c), ": ", bad, " wrong elements, worst error/tolerance ", worst);
        // The inputs really were rounded: against the unrounded product the error is of bf16 size.
        if (c.k >= 17 && c.m * c.n >= 16) {
          double unused = 0.0;
          CHECK_MESSAGE(p.misses(got, p.ref_unrounded, unused) > 0, variant, " ", describe(c),
                        ": matches the float32 product: the inputs were not rounded to bf16");
        }
      }
    }
}

TEST_CASE("gemm_bf16: the AVX512_BF16-level kernels (vdpbf16ps, FMA, AMX) match the emulation") {
  if (supported_kernels().empty()) {
    MESSAGE("no AVX-512 on this CPU: only the emulation ran");
    return;
  }
  std::mt19937 rng(9);
  const Case cases[] = {{200, 300, 1000, false, false},
                        {61, 95, 777, true, false},
                        {130, 47, 1601, false, true},
                        {33, 70, 255, true, true, 1.5f, 0.5f, true, Activation::relu}};
  for (const Case& c : cases)
    for (Bf16Kernel kernel : supported_kernels()) {
      INFO("kernel: " << bf16_kernel_name(kernel));
      const Problem p(c, rng);
      const std::vector<float> native = p.run(kernel);
      for (Isa emulated : {Isa::baseline, Isa::avx512}) {
        const std::vector<float> emu = p.run(emulated);
        i64 bad = 0, identical = 0;
        const double bound = (static_cast<double>(c.k) / 2.0 + 1.0) * std::ldexp(1.0, -24);
        for (i64 i = 0; i < c.m; ++i)
          for (i64 j = 0; j < c.n; ++j) {
            const float x = native[static_cast<std::size_t>(i * p.ldc + j)];
            const float y = emu[static_cast<std::size_t>(i * p.ldc + j)];
            identical += x == y;
            bad += !(std::fabs(x - y) <= bound * p.mag[static_cast<std::size_t>(i * c.n + j)] + 1e-30);
          }
        CHECK_MESSAGE(bad == 0, describe(c), " vs ", std::string(ladon::kernels::isa_name(emulated)), ": ", bad,
                      " elements apart (", identical, " of ", c.m * c.n, " bit-identical)");
        // The FMA kernel takes the emulation's steps: same products, order and flushing. (Not through
        // beta * C + alpha * sum, which the vector store fuses into one rounding.)
        if (kernel == Bf16Kernel::fma && (c.beta == 0.0f || c.beta == 1.0f)) CHECK(identical == c.m * c.n);
      }
    }
}

TEST_CASE("gemm_bf16: k == 0 or alpha == 0 scales C by beta; an IsaOverride picks the variant") {
  std::vector<float> c = {1.0f, 2.0f, 3.0f, 4.0f};
  ladon::kernels::gemm_bf16(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.5f, c.data(), 2);
  CHECK(c == std::vector<float>{0.5f, 1.0f, 1.5f, 2.0f});
  const float bias[] = {1.0f, -1.0f};
  ladon::kernels::gemm_bf16(false, false, 2, 2, 3, 0.0f, nullptr, 3, nullptr, 2, 0.0f, c.data(), 2,
                            {.bias = bias, .activation = Activation::relu});
  CHECK(c == std::vector<float>{1.0f, 0.0f, 1.0f, 0.0f});

  std::mt19937 rng(3);
  const Problem p({40, 40, 40, false, false}, rng);
  for (Isa isa : kAllIsas) {
    if (!ladon::kernels::isa_supported(isa)) continue;
    CAPTURE(ladon::kernels::isa_name(isa));
    const std::vector<float> forced = p.run(isa);
    const ladon::kernels::IsaOverride use(isa);
    std::vector<float> overridden = p.c0;
    ladon::kernels::gemm_bf16(false, false, 40, 40, 40, 1.0f, p.a.data(), p.lda, p.b.data(), p.ldb, 0.0f,
                              overridden.data(), p.ldc);
    CHECK(std::memcmp(forced.data(), overridden.data(), forced.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("gemm_bf16_with_kernel: a kernel the machine lacks is a clear error, not an illegal instruction") {
  const std::pair<Bf16Kernel, const char*> needs[] = {{Bf16Kernel::dot, "Bf16Kernel::dot needs AVX512_BF16"},
                                                      {Bf16Kernel::fma, "Bf16Kernel::fma needs AVX512_BF16"},
                                                      {Bf16Kernel::amx, "Bf16Kernel::amx needs AMX-BF16"}};
  float c = 0.0f;
  const float one = 1.0f;
  for (const auto& [kernel, message] : needs) {
    CAPTURE(bf16_kernel_name(kernel));
    if (ladon::kernels::bf16_kernel_supported(kernel)) {
      ladon::kernels::gemm_bf16_with_kernel(kernel, false, false, 1, 1, 1, 1.0f, &one, 1, &one, 1, 0.0f, &c, 1);
      CHECK(c == 1.0f);
    } else {
      CHECK_THROWS_WITH_AS(ladon::kernels::gemm_bf16_with_kernel(kernel, false, false, 1, 1, 1, 1.0f, &one, 1, &one, 1,
                                                                 0.0f, &c, 1),
                           doctest::Contains(message), std::invalid_argument);
    }
  }
  // What gemm_bf16 picks is always one the machine has.
  if (ladon::kernels::isa_supported(Isa::avx512))
    CHECK(ladon::kernels::bf16_kernel_supported(ladon::kernels::gemm_bf16_kernel()));
}

TEST_CASE("gemm_bf16: where both vdpbf16ps and FMA kernels run, they give the same bits") {
  // gemm_bf16 mixes them by shape on Intel without AMX (thin products on vdpbf16ps, the rest on
  // FMAs): that must never show in a result. Shapes on both sides of the rule (14 rows, 16 columns,
  // 16 k).
  if (!ladon::kernels::bf16_kernel_supported(Bf16Kernel::dot)) {
    MESSAGE("no AVX512_BF16 on this CPU: only the FMA kernel runs at its level");
    return;
  }
  std::mt19937 rng(11);
  const Case cases[] = {{200, 300, 1000, false, false}, {61, 95, 777, true, false}, {130, 47, 1601, false, true},
                        {32, 8, 64, false, true},       {1, 16, 32, true, false},   {32, 16, 1, false, false},
                        {13, 15, 15, true, true}};
  for (const Case& c : cases) {
    CAPTURE(describe(c));
    const Problem p(c, rng);
    CHECK(p.run(Bf16Kernel::dot) == p.run(Bf16Kernel::fma));
    // gemm_bf16 runs the kernel it names for the shape.
    CHECK(p.run(Isa::avx512_bf16) == p.run(ladon::kernels::gemm_bf16_kernel_for(c.m, c.n, c.k)));
  }
}

TEST_CASE("gemm_bf16: a row or column of C does not depend on how the product is split") {
  // The parallel GEMMs hand each thread a block of rows or columns; every kernel's sums for one
  // element of C must be the same in any block, or results would change with the thread count. The
  // blocks here stay above the small-product rule, as the parallel split's do.
  std::mt19937 rng(13);
  const Problem p({96, 80, 700, false, false}, rng);
  for (Bf16Kernel kernel : supported_kernels()) {
    CAPTURE(bf16_kernel_name(kernel));
    const std::vector<float> all = p.run(kernel);
    std::vector<float> rows = p.c0, cols = p.c0;
    for (i64 r0 : {i64{0}, i64{37}})  // rows [0, 37) and [37, 96)
      ladon::kernels::gemm_bf16_with_kernel(kernel, false, false, r0 == 0 ? 37 : 59, 80, 700, 1.0f,
                                            p.a.data() + r0 * p.lda, p.lda, p.b.data(), p.ldb, 0.0f,
                                            rows.data() + r0 * p.ldc, p.ldc);
    for (i64 c0 : {i64{0}, i64{45}})  // columns [0, 45) and [45, 80)
      ladon::kernels::gemm_bf16_with_kernel(kernel, false, false, 96, c0 == 0 ? 45 : 35, 700, 1.0f, p.a.data(), p.lda,
                                            p.b.data() + c0, p.ldb, 0.0f, cols.data() + c0, p.ldc);
    CHECK(rows == all);
    CHECK(cols == all);
  }
}

TEST_CASE("gemm_bf16: denormal sums flush to zero in every variant, as vdpbf16ps does") {
  // A = [[t, t], [s, 0]], B = [[t, s], [t, 0]] with t = 2^-70, s = 2^-60 (normal floats, exact in
  // bf16). C(0, 0) = t t + t t: each step's sum (2^-140) is a float32 denormal and flushes, so 0;
  // C(0, 1) = t s = 2^-130 and C(1, 0) = s t flush too. C(1, 1) = s s = 2^-120 is normal and kept;
  // alpha = 2^-10 then scales it to the denormal 2^-130 on the way out, which is not a sum and
  // stays. Without the flushing C would be 2^-149, 2^-140, 2^-140 in the first three.
  const float t = std::ldexp(1.0f, -70), s = std::ldexp(1.0f, -60), alpha = std::ldexp(1.0f, -10);
  const std::vector<float> a = {t, t, s, 0.0f}, b = {t, s, t, 0.0f};
  const std::vector<float> want = {0.0f, 0.0f, 0.0f, std::ldexp(1.0f, -130)};
  for (Isa isa : kAllIsas) {
    if (!ladon::kernels::isa_supported(isa)) continue;
    CAPTURE(ladon::kernels::isa_name(isa));
    std::vector<float> c(4, -1.0f);
    ladon::kernels::gemm_bf16_with_isa(isa, false, false, 2, 2, 2, alpha, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2);
    CHECK(c == want);
  }
  for (Bf16Kernel kernel : supported_kernels()) {
    CAPTURE(bf16_kernel_name(kernel));
    std::vector<float> c(4, -1.0f);
    ladon::kernels::gemm_bf16_with_kernel(kernel, false, false, 2, 2, 2, alpha, a.data(), 2, b.data(), 2, 0.0f,
                                          c.data(), 2);
    CHECK(c == want);
  }
}
