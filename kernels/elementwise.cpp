#include "elementwise.h"

#include <cmath>

#include "simd.h"
#include "vmath.h"

namespace ladon::kernels {
namespace {

// The contiguous branch is the one that vectorises; the others keep broadcasting correct.
template <typename In, typename F>
LADON_INLINE void map1(std::int64_t n, const In* x, std::int64_t sx, float* out, std::int64_t so, F f) {
  if (sx == 1 && so == 1) {
    for (std::int64_t i = 0; i < n; ++i) out[i] = f(x[i]);
  } else {
    for (std::int64_t i = 0; i < n; ++i) out[i * so] = f(x[i * sx]);
  }
}

template <typename In, typename F>
LADON_INLINE void map2(std::int64_t n, const In* a, std::int64_t sa, const In* b, std::int64_t sb, float* out,
                       std::int64_t so, F f) {
  if (so == 1 && sa == 1 && sb == 1) {
    for (std::int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
  } else if (so == 1 && sa == 1 && sb == 0) {
    const In bv = b[0];
    for (std::int64_t i = 0; i < n; ++i) out[i] = f(a[i], bv);
  } else if (so == 1 && sa == 0 && sb == 1) {
    const In av = a[0];
    for (std::int64_t i = 0; i < n; ++i) out[i] = f(av, b[i]);
  } else {
    for (std::int64_t i = 0; i < n; ++i) out[i * so] = f(a[i * sa], b[i * sb]);
  }
}

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;
constexpr float kSqrtHalf = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

template <typename In>
LADON_INLINE void compare_impl(CompareOp op, std::int64_t n, const In* a, std::int64_t sa, const In* b,
                               std::int64_t sb, float* out, std::int64_t so) {
  switch (op) {
    case CompareOp::eq: return map2(n, a, sa, b, sb, out, so, [](In x, In y) { return x == y ? 1.0f : 0.0f; });
    case CompareOp::ne: return map2(n, a, sa, b, sb, out, so, [](In x, In y) { return x != y ? 1.0f : 0.0f; });
    case CompareOp::lt: return map2(n, a, sa, b, sb, out, so, [](In x, In y) { return x < y ? 1.0f : 0.0f; });
    case CompareOp::le: return map2(n, a, sa, b, sb, out, so, [](In x, In y) { return x <= y ? 1.0f : 0.0f; });
    case CompareOp::gt: return map2(n, a, sa, b, sb, out, so, [](In x, In y) { return x > y ? 1.0f : 0.0f; });
    case CompareOp::ge: return map2(n, a, sa, b, sb, out, so, [](In x, In y) { return x >= y ? 1.0f : 0.0f; });
  }
}

}  // namespace

LADON_INLINE void unary_body(UnaryOp op, std::int64_t n, const float* x, std::int64_t sx, float* out, std::int64_t so) {
  switch (op) {
    case UnaryOp::copy: return map1(n, x, sx, out, so, [](float v) { return v; });
    case UnaryOp::neg: return map1(n, x, sx, out, so, [](float v) { return -v; });
    case UnaryOp::exp: return map1(n, x, sx, out, so, [](float v) { return vexp(v); });
    case UnaryOp::log: return map1(n, x, sx, out, so, [](float v) { return vlog(v); });
    case UnaryOp::sqrt: return map1(n, x, sx, out, so, [](float v) { return std::sqrt(v); });
    case UnaryOp::abs: return map1(n, x, sx, out, so, [](float v) { return std::fabs(v); });
    // v < 0 selects 0, so NaN (every comparison false) stays NaN.
    case UnaryOp::relu: return map1(n, x, sx, out, so, [](float v) { return v < 0.0f ? 0.0f : v; });
    case UnaryOp::sigmoid:
      return map1(n, x, sx, out, so, [](float v) { return vsigmoid(v); });
    case UnaryOp::tanh: return map1(n, x, sx, out, so, [](float v) { return vtanh(v); });
    case UnaryOp::gelu:
      return map1(n, x, sx, out, so, [](float v) { return 0.5f * v * (1.0f + verf(v * kSqrtHalf)); });
    case UnaryOp::gelu_grad:
      // Phi(x) + x phi(x), phi the standard normal density.
      return map1(n, x, sx, out, so, [](float v) {
        return 0.5f * (1.0f + verf(v * kSqrtHalf)) + v * kInvSqrt2Pi * vexp(-0.5f * v * v);
      });
    case UnaryOp::gelu_tanh:
      return map1(n, x, sx, out, so, [](float v) {
        return 0.5f * v * (1.0f + vtanh(kSqrt2OverPi * (v + kGeluCubic * v * v * v)));
      });
    case UnaryOp::gelu_tanh_grad:
      return map1(n, x, sx, out, so, [](float v) {
        const float t = vtanh(kSqrt2OverPi * (v + kGeluCubic * v * v * v));
        return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * v * v);
      });
    case UnaryOp::sign:
      return map1(n, x, sx, out, so, [](float v) { return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f); });
  }
}

void unary(UnaryOp op, std::int64_t n, const float* x, std::int64_t sx, float* out, std::int64_t so) {
  Multiversion<unary_body>::run(op, n, x, sx, out, so);
}

LADON_INLINE void binary_body(BinaryOp op, std::int64_t n, const float* a, std::int64_t sa, const float* b,
                              std::int64_t sb, float* out, std::int64_t so) {
  switch (op) {
    case BinaryOp::add: return map2(n, a, sa, b, sb, out, so, [](float x, float y) { return x + y; });
    case BinaryOp::sub: return map2(n, a, sa, b, sb, out, so, [](float x, float y) { return x - y; });
    case BinaryOp::mul: return map2(n, a, sa, b, sb, out, so, [](float x, float y) { return x * y; });
    case BinaryOp::div: return map2(n, a, sa, b, sb, out, so, [](float x, float y) { return x / y; });
    case BinaryOp::pow: return map2(n, a, sa, b, sb, out, so, [](float x, float y) { return std::pow(x, y); });
    case BinaryOp::maximum:
      return map2(n, a, sa, b, sb, out, so, [](float x, float y) { return x > y ? x : y; });
    case BinaryOp::minimum:
      return map2(n, a, sa, b, sb, out, so, [](float x, float y) { return x < y ? x : y; });
  }
}

void binary(BinaryOp op, std::int64_t n, const float* a, std::int64_t sa, const float* b, std::int64_t sb, float* out,
            std::int64_t so) {
  Multiversion<binary_body>::run(op, n, a, sa, b, sb, out, so);
}

LADON_INLINE void compare_body(CompareOp op, std::int64_t n, const float* a, std::int64_t sa, const float* b,
                               std::int64_t sb, float* out, std::int64_t so) {
  compare_impl(op, n, a, sa, b, sb, out, so);
}

void compare(CompareOp op, std::int64_t n, const float* a, std::int64_t sa, const float* b, std::int64_t sb, float* out,
             std::int64_t so) {
  Multiversion<compare_body>::run(op, n, a, sa, b, sb, out, so);
}

void compare(CompareOp op, std::int64_t n, const std::int64_t* a, std::int64_t sa, const std::int64_t* b,
             std::int64_t sb, float* out, std::int64_t so) {
  compare_impl(op, n, a, sa, b, sb, out, so);
}

LADON_INLINE void clamp_body(std::int64_t n, const float* x, std::int64_t sx, float low, float high, float* out,
                             std::int64_t so) {
  map1(n, x, sx, out, so, [low, high](float v) { return v < low ? low : (v > high ? high : v); });
}

void clamp(std::int64_t n, const float* x, std::int64_t sx, float low, float high, float* out, std::int64_t so) {
  Multiversion<clamp_body>::run(n, x, sx, low, high, out, so);
}

void where(std::int64_t n, const float* cond, std::int64_t sc, const float* a, std::int64_t sa, const float* b,
           std::int64_t sb, float* out, std::int64_t so) {
  for (std::int64_t i = 0; i < n; ++i) out[i * so] = cond[i * sc] != 0.0f ? a[i * sa] : b[i * sb];
}

LADON_INLINE void relu_grad_body(std::int64_t n, const float* __restrict y, const float* __restrict g,
                                 float* __restrict out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = y[i] <= 0.0f ? 0.0f : g[i];
}

void relu_grad(std::int64_t n, const float* __restrict y, const float* __restrict g, float* __restrict out) {
  Multiversion<relu_grad_body>::run(n, y, g, out);
}

void copy_i64(std::int64_t n, const std::int64_t* x, std::int64_t sx, std::int64_t* out, std::int64_t so) {
  for (std::int64_t i = 0; i < n; ++i) out[i * so] = x[i * sx];
}

}  // namespace ladon::kernels
