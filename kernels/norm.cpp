#include "norm.h"

#include "simd.h"

namespace ladon::kernels {
namespace {

using i64 = std::int64_t;

// Sum of one contiguous segment in 16 float lanes (vectorises without reassociation flags).
LADON_INLINE double segment_sum(i64 n, const float* x, float shift) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  i64 i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) lanes[k] += x[i + k] - shift;
  double total = 0;
  for (float l : lanes) total += l;
  for (; i < n; ++i) total += x[i] - shift;
  return total;
}

LADON_INLINE double segment_sum_sq(i64 n, const float* x, float mean) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  i64 i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const float d = x[i + k] - mean;
      lanes[k] += d * d;
    }
  double total = 0;
  for (float l : lanes) total += l;
  for (; i < n; ++i) total += static_cast<double>(x[i] - mean) * (x[i] - mean);
  return total;
}

LADON_INLINE double segment_dot(i64 n, const float* dy, const float* x, float mean) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  i64 i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) lanes[k] += dy[i + k] * (x[i + k] - mean);
  double total = 0;
  for (float l : lanes) total += l;
  for (; i < n; ++i) total += static_cast<double>(dy[i]) * (x[i] - mean);
  return total;
}

LADON_INLINE void channel_mean_var_body(const ChannelRange& r, const float* x, float* mean, float* var) {
  const i64 count = r.outer * r.inner;
  for (i64 c = r.begin; c < r.end; ++c) {
    double total = 0;
    for (i64 o = 0; o < r.outer; ++o) total += segment_sum(r.inner, x + (o * r.channels + c) * r.inner, 0.0f);
    const auto m = static_cast<float>(total / static_cast<double>(count));
    double squares = 0;
    for (i64 o = 0; o < r.outer; ++o) squares += segment_sum_sq(r.inner, x + (o * r.channels + c) * r.inner, m);
    mean[c] = m;
    var[c] = static_cast<float>(squares / static_cast<double>(count));
  }
}

LADON_INLINE void channel_scale_shift_body(const ChannelRange& r, const float* x, const float* scale,
                                           const float* shift, float* y) {
  for (i64 o = 0; o < r.outer; ++o)
    for (i64 c = r.begin; c < r.end; ++c) {
      const i64 at = (o * r.channels + c) * r.inner;
      const float s = scale[c], t = shift[c];
      for (i64 i = 0; i < r.inner; ++i) y[at + i] = x[at + i] * s + t;
    }
}

LADON_INLINE void channel_grad_sums_body(const ChannelRange& r, const float* dy, const float* x, const float* mean,
                                         float* sum_dy, float* sum_dy_xc) {
  for (i64 c = r.begin; c < r.end; ++c) {
    double s = 0, sx = 0;
    for (i64 o = 0; o < r.outer; ++o) {
      const i64 at = (o * r.channels + c) * r.inner;
      s += segment_sum(r.inner, dy + at, 0.0f);
      sx += segment_dot(r.inner, dy + at, x + at, mean[c]);
    }
    sum_dy[c] = static_cast<float>(s);
    sum_dy_xc[c] = static_cast<float>(sx);
  }
}

LADON_INLINE void channel_combine_body(const ChannelRange& r, const float* dy, const float* a, const float* x,
                                       const float* b, const float* k, float* dx) {
  for (i64 o = 0; o < r.outer; ++o)
    for (i64 c = r.begin; c < r.end; ++c) {
      const i64 at = (o * r.channels + c) * r.inner;
      const float ac = a[c], bc = b[c], kc = k[c];
      for (i64 i = 0; i < r.inner; ++i) dx[at + i] = dy[at + i] * ac + x[at + i] * bc + kc;
    }
}

}  // namespace

void channel_mean_var(const ChannelRange& r, const float* x, float* mean, float* var) {
  Multiversion<channel_mean_var_body>::run(r, x, mean, var);
}

void channel_scale_shift(const ChannelRange& r, const float* x, const float* scale, const float* shift, float* y) {
  Multiversion<channel_scale_shift_body>::run(r, x, scale, shift, y);
}

void channel_grad_sums(const ChannelRange& r, const float* dy, const float* x, const float* mean, float* sum_dy,
                       float* sum_dy_xc) {
  Multiversion<channel_grad_sums_body>::run(r, dy, x, mean, sum_dy, sum_dy_xc);
}

void channel_combine(const ChannelRange& r, const float* dy, const float* a, const float* x, const float* b,
                     const float* k, float* dx) {
  Multiversion<channel_combine_body>::run(r, dy, a, x, b, k, dx);
}

}  // namespace ladon::kernels
