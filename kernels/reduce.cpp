#include "reduce.h"

#include <cmath>
#include <limits>
#include <vector>

#include "simd.h"
#include "vmath.h"

namespace ladon::kernels {

namespace {
constexpr int kLanes = 16;  // independent partial results per reduction: one AVX-512 register
}  // namespace

LADON_INLINE void sum_reduce_body(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* out) {
  for (std::int64_t o = 0; o < outer; ++o) {
    const float* block = x + o * n * inner;
    float* dst = out + o * inner;
    if (inner == 1) {
      // Blocks of 4096 summed in 64 float lanes (four independent vector chains, so the adds
      // pipeline), block totals combined in double: long rows stay accurate.
      constexpr std::int64_t kBlock = 4096, kSumLanes = 64;
      double total = 0;
      std::int64_t r = 0;
      for (; r + kBlock <= n; r += kBlock) {
        float lanes[kSumLanes] = {};
        for (std::int64_t b = 0; b < kBlock; b += kSumLanes)
          for (std::int64_t k = 0; k < kSumLanes; ++k) lanes[k] += block[r + b + k];
        float block_total = 0;
        for (float l : lanes) block_total += l;
        total += block_total;
      }
      float lanes[kLanes] = {};
      for (; r + kLanes <= n; r += kLanes)
        for (int k = 0; k < kLanes; ++k) lanes[k] += block[r + k];
      for (float l : lanes) total += l;
      for (; r < n; ++r) total += block[r];
      dst[0] = static_cast<float>(total);
    } else {
      // Column sums: blocks of kRows rows summed in float, block totals combined in double, so the
      // rounding error grows with kRows instead of n. Over 524k rows a plain float running sum was
      // off by 2e-4 (120x worse than libtorch); this is 4e-8, the final rounding to float. Columns
      // go in chunks whose partial sums stay in L1.
      constexpr std::int64_t kRows = 32, kCols = 512;
      for (std::int64_t c0 = 0; c0 < inner; c0 += kCols) {
        const std::int64_t w = inner - c0 < kCols ? inner - c0 : kCols;
        float part[kCols];
        double total[kCols];
        for (std::int64_t i = 0; i < w; ++i) total[i] = 0.0;
        for (std::int64_t r0 = 0; r0 < n; r0 += kRows) {
          const std::int64_t r1 = n - r0 < kRows ? n : r0 + kRows;
          for (std::int64_t i = 0; i < w; ++i) part[i] = 0.0f;
          for (std::int64_t r = r0; r < r1; ++r) {
            const float* row = block + r * inner + c0;
            for (std::int64_t i = 0; i < w; ++i) part[i] += row[i];
          }
          for (std::int64_t i = 0; i < w; ++i) total[i] += part[i];
        }
        for (std::int64_t i = 0; i < w; ++i) dst[c0 + i] = static_cast<float>(total[i]);
      }
    }
  }
}

void sum_reduce(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* out) {
  Multiversion<sum_reduce_body>::run(outer, n, inner, x, out);
}

LADON_INLINE void gram_body(std::int64_t rows, std::int64_t n, std::int64_t stride, const float* x, double* out) {
  constexpr std::int64_t kBlock = 4096, kSumLanes = 64;
  for (std::int64_t i = 0; i < rows * rows; ++i) out[i] = 0.0;
  // Column blocks outermost, so every row's block is read from cache for each of its pairs.
  for (std::int64_t c0 = 0; c0 < n; c0 += kBlock) {
    const std::int64_t w = n - c0 < kBlock ? n - c0 : kBlock;
    for (std::int64_t i = 0; i < rows; ++i) {
      const float* a = x + i * stride + c0;
      for (std::int64_t j = 0; j <= i; ++j) {
        const float* b = x + j * stride + c0;
        float lanes[kSumLanes] = {};
        std::int64_t k = 0;
        for (; k + kSumLanes <= w; k += kSumLanes)
          for (std::int64_t l = 0; l < kSumLanes; ++l) lanes[l] += a[k + l] * b[k + l];
        double total = 0;
        for (float v : lanes) total += v;
        for (; k < w; ++k) total += static_cast<double>(a[k]) * b[k];
        out[i * rows + j] += total;
      }
    }
  }
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < i; ++j) out[j * rows + i] = out[i * rows + j];
}

void gram(std::int64_t rows, std::int64_t n, std::int64_t stride, const float* x, double* out) {
  Multiversion<gram_body>::run(rows, n, stride, x, out);
}

// sum_i a[i] b[i] in kLanes float lanes, the lanes summed as a tree (8 + 8, 4 + 4, ...), then the
// tail: a few vector steps, where a running sum was n dependent scalar adds (most of mix_backward at
// MMoE's widths of 32-64).
LADON_INLINE float lane_dot(std::int64_t n, const float* __restrict a, const float* __restrict b) {
  float lanes[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) lanes[k] += a[i + k] * b[i + k];
  for (int half = kLanes / 2; half > 0; half /= 2)
    for (int k = 0; k < half; ++k) lanes[k] += lanes[k + half];
  float total = lanes[0];
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

LADON_INLINE void mix_body(std::int64_t rows, std::int64_t n, std::int64_t width, const float* __restrict w,
                           std::int64_t w_stride, const float* __restrict x, float* __restrict out) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* wr = w + r * w_stride;
    const float* xr = x + r * n * width;
    float* o = out + r * width;
    for (std::int64_t j = 0; j < width; ++j) o[j] = 0.0f;
    for (std::int64_t e = 0; e < n; ++e) {
      const float we = wr[e];
      const float* xe = xr + e * width;
      for (std::int64_t j = 0; j < width; ++j) o[j] += we * xe[j];
    }
  }
}

void mix(std::int64_t rows, std::int64_t n, std::int64_t width, const float* w, std::int64_t w_stride, const float* x,
         float* out) {
  Multiversion<mix_body>::run(rows, n, width, w, w_stride, x, out);
}

LADON_INLINE void mix_backward_body(std::int64_t rows, std::int64_t n, std::int64_t width, const float* __restrict w,
                                    std::int64_t w_stride, const float* __restrict x, const float* __restrict g,
                                    float* __restrict dw, float* __restrict dx) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* gr = g + r * width;
    for (std::int64_t e = 0; e < n; ++e) {
      const float we = w[r * w_stride + e];
      float* dxe = dx + (r * n + e) * width;
      dw[r * n + e] = lane_dot(width, gr, x + (r * n + e) * width);
      for (std::int64_t j = 0; j < width; ++j) dxe[j] = we * gr[j];
    }
  }
}

void mix_backward(std::int64_t rows, std::int64_t n, std::int64_t width, const float* w, std::int64_t w_stride,
                  const float* x, const float* g, float* dw, float* dx) {
  Multiversion<mix_backward_body>::run(rows, n, width, w, w_stride, x, g, dw, dx);
}

void max_reduce(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* values,
                std::int64_t* indices) {
  for (std::int64_t o = 0; o < outer; ++o) {
    const float* block = x + o * n * inner;
    for (std::int64_t i = 0; i < inner; ++i) {
      float best = -std::numeric_limits<float>::infinity();
      std::int64_t best_index = 0;
      for (std::int64_t r = 0; r < n; ++r) {
        const float v = block[r * inner + i];
        if (v > best || std::isnan(v)) {
          best = v;
          best_index = r;
          if (std::isnan(v)) break;  // NaN propagates, as in NumPy
        }
      }
      values[o * inner + i] = best;
      if (indices) indices[o * inner + i] = best_index;
    }
  }
}

namespace {

// Softmax of one contiguous row; returns the row's logsumexp. Reductions keep kLanes partial maxima
// and sums, which vectorise without reassociation flags; a NaN anywhere in the row makes the whole
// row NaN.
LADON_INLINE float softmax_row(std::int64_t n, const float* src, float* dst, bool log) {
  float top_lanes[kLanes];
  for (float& t : top_lanes) t = -std::numeric_limits<float>::infinity();
  std::int64_t r = 0;
  for (; r + kLanes <= n; r += kLanes)
    for (int k = 0; k < kLanes; ++k) top_lanes[k] = src[r + k] > top_lanes[k] ? src[r + k] : top_lanes[k];
  float top = -std::numeric_limits<float>::infinity();
  for (float t : top_lanes) top = t > top ? t : top;
  for (; r < n; ++r) top = src[r] > top ? src[r] : top;

  float sum_lanes[kLanes] = {};
  for (r = 0; r + kLanes <= n; r += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const float e = vexp(src[r + k] - top);
      sum_lanes[k] += e;
      if (!log) dst[r + k] = e;
    }
  float total = 0.0f;
  for (float s : sum_lanes) total += s;
  for (; r < n; ++r) {
    const float e = vexp(src[r] - top);
    total += e;
    if (!log) dst[r] = e;
  }
  if (log) {
    const float shift = top + vlog(total);
    for (r = 0; r < n; ++r) dst[r] = src[r] - shift;
  } else {
    const float scale = 1.0f / total;
    for (r = 0; r < n; ++r) dst[r] *= scale;
  }
  return top + vlog(total);
}

}  // namespace

LADON_INLINE void softmax_body(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* out,
                               bool log) {
  if (inner == 1 && n < kLanes) {
    // Rows shorter than a vector (MMoE's gates over 4 experts) ran only softmax_row's scalar tail
    // loops, one scalar exp per value. In blocks of rows instead: each row's max spread over its
    // values, then one contiguous exp pass that vectorises; the sums keep softmax_row's order.
    constexpr std::int64_t kBlockRows = 64;
    float shift[kBlockRows * kLanes];
    for (std::int64_t o0 = 0; o0 < outer; o0 += kBlockRows) {
      const std::int64_t rows = outer - o0 < kBlockRows ? outer - o0 : kBlockRows, m = rows * n;
      const float* src = x + o0 * n;
      float* dst = out + o0 * n;
      for (std::int64_t r = 0; r < rows; ++r) {
        float top = -std::numeric_limits<float>::infinity();
        for (std::int64_t i = 0; i < n; ++i) top = src[r * n + i] > top ? src[r * n + i] : top;
        for (std::int64_t i = 0; i < n; ++i) shift[r * n + i] = top;
      }
      for (std::int64_t k = 0; k < m; ++k) dst[k] = vexp(src[k] - shift[k]);
      for (std::int64_t r = 0; r < rows; ++r) {
        float total = 0.0f;
        for (std::int64_t i = 0; i < n; ++i) total += dst[r * n + i];
        if (log) {
          const float row_shift = shift[r * n] + vlog(total);
          for (std::int64_t i = 0; i < n; ++i) dst[r * n + i] = src[r * n + i] - row_shift;
        } else {
          const float scale = 1.0f / total;
          for (std::int64_t i = 0; i < n; ++i) dst[r * n + i] *= scale;
        }
      }
    }
    return;
  }
  if (inner == 1) {
    for (std::int64_t o = 0; o < outer; ++o) softmax_row(n, x + o * n, out + o * n, log);
    return;
  }
  // Along a strided axis: the loops run over the contiguous inner positions, which vectorise.
  std::vector<float> top(static_cast<std::size_t>(inner)), total(static_cast<std::size_t>(inner));
  for (std::int64_t o = 0; o < outer; ++o) {
    const float* src = x + o * n * inner;
    float* dst = out + o * n * inner;
    for (std::int64_t i = 0; i < inner; ++i) top[i] = -std::numeric_limits<float>::infinity();
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t i = 0; i < inner; ++i) top[i] = std::max(top[i], src[r * inner + i]);
    for (std::int64_t i = 0; i < inner; ++i) total[i] = 0.0f;
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t i = 0; i < inner; ++i) {
        const float e = vexp(src[r * inner + i] - top[i]);
        total[i] += e;
        if (!log) dst[r * inner + i] = e;
      }
    for (std::int64_t i = 0; i < inner; ++i) {
      if (log)
        total[i] = top[i] + vlog(total[i]);
      else
        total[i] = 1.0f / total[i];
    }
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t i = 0; i < inner; ++i) {
        if (log)
          dst[r * inner + i] = src[r * inner + i] - total[i];
        else
          dst[r * inner + i] *= total[i];
      }
  }
}

void softmax(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* out, bool log) {
  Multiversion<softmax_body>::run(outer, n, inner, x, out, log);
}

LADON_INLINE void softmax_backward_body(std::int64_t rows, std::int64_t n, const float* __restrict y,
                                        const float* __restrict g, float* __restrict out) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * n;
    const float* gr = g + r * n;
    const float dot = lane_dot(n, gr, yr);
    for (std::int64_t i = 0; i < n; ++i) out[r * n + i] = yr[i] * (gr[i] - dot);
  }
}

void softmax_backward(std::int64_t rows, std::int64_t n, const float* y, const float* g, float* out) {
  Multiversion<softmax_backward_body>::run(rows, n, y, g, out);
}

LADON_INLINE void softmax_cross_entropy_body(std::int64_t rows, std::int64_t classes, const float* logits,
                                             const std::int64_t* target, float* probs, float* loss) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * classes;
    const float logsumexp = softmax_row(classes, x, probs + r * classes, false);
    loss[r] = logsumexp - x[target[r]];
  }
}

void softmax_cross_entropy(std::int64_t rows, std::int64_t classes, const float* logits, const std::int64_t* target,
                           float* probs, float* loss) {
  Multiversion<softmax_cross_entropy_body>::run(rows, classes, logits, target, probs, loss);
}

}  // namespace ladon::kernels
