#include "norm.h"

#include <cmath>

#include "simd.h"

namespace ladon::kernels {
namespace {

using i64 = std::int64_t;

// The sum of term(i) over i < n, in 16 float lanes (so it vectorises without reassociation flags),
// the lanes combined in double.
template <typename Term>
LADON_INLINE double segment_sum(i64 n, Term term) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  i64 i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) lanes[k] += term(i + k);
  double total = 0;
  for (float l : lanes) total += l;
  for (; i < n; ++i) total += term(i);
  return total;
}

LADON_INLINE void channel_mean_var_body(const ChannelRange& r, const float* x, float* mean, float* var) {
  const i64 count = r.outer * r.inner;
  for (i64 c = r.begin; c < r.end; ++c) {
    double total = 0;
    for (i64 o = 0; o < r.outer; ++o) {
      const float* seg = x + (o * r.channels + c) * r.inner;
      total += segment_sum(r.inner, [seg](i64 i) { return seg[i]; });
    }
    const auto m = static_cast<float>(total / static_cast<double>(count));
    double squares = 0;
    for (i64 o = 0; o < r.outer; ++o) {
      const float* seg = x + (o * r.channels + c) * r.inner;
      squares += segment_sum(r.inner, [seg, m](i64 i) { return (seg[i] - m) * (seg[i] - m); });
    }
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
      const float *g = dy + at, *v = x + at, m = mean[c];
      s += segment_sum(r.inner, [g](i64 i) { return g[i]; });
      sx += segment_sum(r.inner, [g, v, m](i64 i) { return g[i] * (v[i] - m); });
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

LADON_INLINE void layer_norm_rows_body(i64 rows, i64 n, const float* x, const float* weight, const float* bias,
                                      float eps, float* y, float* mean, float* rstd) {
  for (i64 r = 0; r < rows; ++r) {
    const float* __restrict row = x + r * n;
    float* __restrict out = y + r * n;
    const auto m = static_cast<float>(segment_sum(n, [row](i64 i) { return row[i]; }) / static_cast<double>(n));
    const double squares = segment_sum(n, [row, m](i64 i) { return (row[i] - m) * (row[i] - m); });
    const float s = 1.0f / std::sqrt(static_cast<float>(squares / static_cast<double>(n)) + eps);
    mean[r] = m;
    rstd[r] = s;
    if (weight) {
      for (i64 i = 0; i < n; ++i) out[i] = (row[i] - m) * s * weight[i] + bias[i];
    } else {
      for (i64 i = 0; i < n; ++i) out[i] = (row[i] - m) * s;
    }
  }
}

LADON_INLINE void layer_norm_backward_rows_body(i64 rows, i64 n, const float* dy, const float* x, const float* mean,
                                               const float* rstd, const float* weight, float* dx, float* dweight,
                                               float* dbias) {
  for (i64 r = 0; r < rows; ++r) {
    const float* __restrict g = dy + r * n;
    const float* __restrict v = x + r * n;
    const float m = mean[r], s = rstd[r];
    if (dx) {
      // mean(g) and mean(g * xhat), g = dy * weight.
      double sg, sgx;
      if (weight) {
        sg = segment_sum(n, [g, weight](i64 i) { return g[i] * weight[i]; });
        sgx = segment_sum(n, [g, v, weight, m, s](i64 i) { return g[i] * weight[i] * ((v[i] - m) * s); });
      } else {
        sg = segment_sum(n, [g](i64 i) { return g[i]; });
        sgx = segment_sum(n, [g, v, m, s](i64 i) { return g[i] * ((v[i] - m) * s); });
      }
      const auto mg = static_cast<float>(sg / static_cast<double>(n));
      const auto mgx = static_cast<float>(sgx / static_cast<double>(n));
      float* __restrict out = dx + r * n;
      if (weight) {
        for (i64 i = 0; i < n; ++i) out[i] = s * (g[i] * weight[i] - mg - (v[i] - m) * s * mgx);
      } else {
        for (i64 i = 0; i < n; ++i) out[i] = s * (g[i] - mg - (v[i] - m) * s * mgx);
      }
    }
    if (dweight)
      for (i64 i = 0; i < n; ++i) dweight[i] += g[i] * ((v[i] - m) * s);
    if (dbias)
      for (i64 i = 0; i < n; ++i) dbias[i] += g[i];
  }
}

}  // namespace

void layer_norm_rows(std::int64_t rows, std::int64_t n, const float* x, const float* weight, const float* bias,
                     float eps, float* y, float* mean, float* rstd) {
  Multiversion<layer_norm_rows_body>::run(rows, n, x, weight, bias, eps, y, mean, rstd);
}

void layer_norm_backward_rows(std::int64_t rows, std::int64_t n, const float* dy, const float* x, const float* mean,
                              const float* rstd, const float* weight, float* dx, float* dweight, float* dbias) {
  Multiversion<layer_norm_backward_rows_body>::run(rows, n, dy, x, mean, rstd, weight, dx, dweight, dbias);
}

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
