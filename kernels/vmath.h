// exp, log, tanh and sigmoid for float, written without branches or library calls so that loops over
// them vectorise (GCC turns the selects into blends) inside Multiversion kernels (simd.h). libm's expf
// is a scalar call: an exp loop with it ran at 0.10 of memcpy bandwidth.
//
// Accuracy, checked in tests/kernels/test_vmath.cpp against double-precision libm over dense sweeps:
//   vexp     relative error <= 2 ulp (3e-7) on [-87, 88]; results below FLT_MIN are the correctly
//            scaled subnormals; exp(x) = +inf for x > 88.72, 0 for x < -104; NaN stays NaN.
//   vlog     absolute error <= 2e-7 for x in [0.5, 2], relative error <= 2 ulp elsewhere, subnormal
//            inputs included; log(0) = -inf, log(x < 0) = NaN, log(+inf) = +inf.
//   vtanh    absolute error <= 2 ulp of 1 (2.4e-7), and relative error <= 3 ulp for |x| < 0.625.
//   vsigmoid absolute error <= 2.4e-7, relative error <= 4 ulp for x > -87.
//   verf     absolute error <= 3e-7 (Abramowitz & Stegun 7.1.26, 1.5e-7, plus float rounding).
//   gelu     (elementwise.cpp) exact form through verf: error <= 3e-7 * (1 + |x|); tanh form through
//            vtanh: error <= 2.4e-7 * (1 + |x|) against the tanh formula.
// The polynomials are the classic Cephes minimax ones (S. Moshier), evaluated in float.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>

#include "simd.h"

namespace ladon::kernels {

LADON_INLINE float vexp(float x) {
  // exp(x) = 2^n * exp(r) with n = round(x / ln 2) and r = x - n ln 2 in [-ln2/2, ln2/2]; ln 2 is
  // split in two (Cody-Waite) so that n * ln2_hi is exact.
  const float xc = x < -104.0f ? -104.0f : (x > 88.8f ? 88.8f : x);
  const float rounder = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (xc * 1.44269504088896341f + rounder) - rounder;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n as two factors, 2^(n/2) * 2^(n - n/2): each stays a normal float over n in [-150, 128],
  // so the ends (exp(88.7), subnormal results) need no special path.
  const auto ni = static_cast<std::int32_t>(n);
  const std::int32_t half = ni / 2;
  const float s1 = std::bit_cast<float>((half + 127) << 23);
  const float s2 = std::bit_cast<float>((ni - half + 127) << 23);
  float y = p * s1 * s2;
  y = x > 88.7228394f ? std::numeric_limits<float>::infinity() : y;
  y = x < -104.0f ? 0.0f : y;
  return x != x ? x : y;
}

LADON_INLINE float vlog(float x) {
  // x = m * 2^e with m in [sqrt(1/2), sqrt(2)); log x = log m + e ln 2, log m by a polynomial in m - 1.
  const bool subnormal = x < std::numeric_limits<float>::min();
  const float xs = subnormal ? x * 8388608.0f : x;  // * 2^23 brings subnormals into the normal range
  const auto bits = std::bit_cast<std::int32_t>(xs);
  float e = static_cast<float>(((bits >> 23) & 0xff) - 126) - (subnormal ? 23.0f : 0.0f);
  float m = std::bit_cast<float>((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
  const bool low = m < 0.707106781186547524f;
  e = low ? e - 1.0f : e;
  m = low ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float p = 7.0376836292e-2f;
  p = p * m - 1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m - 1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m - 1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m - 2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  float y = p * m * z;
  y += e * -2.12194440e-4f;
  y += -0.5f * z;
  y = m + y;
  y += e * 0.693359375f;
  y = x == std::numeric_limits<float>::infinity() ? x : y;
  y = x == 0.0f ? -std::numeric_limits<float>::infinity() : y;
  y = x < 0.0f ? std::numeric_limits<float>::quiet_NaN() : y;
  return x != x ? x : y;
}

LADON_INLINE float vtanh(float x) {
  const float a = x < 0.0f ? -x : x;
  // Small |x|: an odd polynomial keeps the relative accuracy that 1 - 2/(e^2x + 1) would lose.
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float big = 1.0f - 2.0f / (vexp(2.0f * a) + 1.0f);  // exp overflows to inf: 1 exactly
  const float y = a < 0.625f ? small : (x < 0.0f ? -big : big);
  return x != x ? x : y;
}

LADON_INLINE float vsigmoid(float x) { return 1.0f / (1.0f + vexp(-x)); }

LADON_INLINE float verf(float x) {
  // Abramowitz & Stegun 7.1.26: erf(a) = 1 - t (a1 + t (a2 + ... + t a5)) exp(-a^2), t = 1 / (1 + p a),
  // for a = |x|, odd in x. vexp underflows to 0 for large a, where erf is 1 to float precision.
  const float a = x < 0.0f ? -x : x;
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float y = 1.0f - p * t * vexp(-a * a);
  const float r = x < 0.0f ? -y : y;
  return x != x ? x : r;
}

}  // namespace ladon::kernels
