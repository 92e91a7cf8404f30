#include "conv.h"

#include <algorithm>
#include <limits>
#include <type_traits>

#include "gemm_internal.h"  // LADON_TARGET_AVX512, intrinsics
#include "simd.h"

namespace ladon::kernels {

namespace {
// The range of output positions o for which o * stride - pad + offset lands inside [0, size).
inline void valid_range(std::int64_t size, std::int64_t out, std::int64_t stride, std::int64_t pad,
                        std::int64_t offset, std::int64_t& begin, std::int64_t& end) {
  const std::int64_t shift = offset - pad;  // input index = o * stride + shift
  begin = shift >= 0 ? 0 : (-shift + stride - 1) / stride;
  end = size - shift <= 0 ? 0 : (size - shift + stride - 1) / stride;
  begin = std::min(begin, out);
  end = std::clamp(end, begin, out);
}
// Kernel taps k in [begin, end) with start + k * dilation inside [0, size); only called at borders
// (the divisions cost more than the pooling itself).
inline void clip_taps(std::int64_t start, std::int64_t size, std::int64_t dilation, std::int64_t& begin,
                      std::int64_t& end) {
  begin = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
  end = std::min(end, (size - start + dilation - 1) / dilation);
}
}  // namespace

void im2col(const Window2d& w, const float* image, float* col, std::int64_t ld) {
  const std::int64_t plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  const bool same_width = w.stride_h == 1 && w.stride_w == 1 && w.out_w == w.width;
  for (std::int64_t c = 0; c < w.channels; ++c)
    for (std::int64_t i = 0; i < w.kernel_h; ++i)
      for (std::int64_t j = 0; j < w.kernel_w; ++j) {
        float* row = col + ((c * w.kernel_h + i) * w.kernel_w + j) * ld;
        const float* src = image + c * plane;
        std::int64_t y0, y1, x0, x1;
        valid_range(w.height, w.out_h, w.stride_h, w.pad_h, i * w.dilation_h, y0, y1);
        valid_range(w.width, w.out_w, w.stride_w, w.pad_w, j * w.dilation_w, x0, x1);
        std::fill(row, row + y0 * w.out_w, 0.0f);
        if (same_width && y0 < y1 && x0 < x1) {
          // Stride 1 and out_w == width: row oy of this tap is image row oy + dy shifted by dx, so
          // all valid rows are one flat copy (one memmove of the plane, not one per 14-float row);
          // the columns it wrapped in from the neighbouring rows are then zeroed.
          const std::int64_t shift = (i * w.dilation_h - w.pad_h) * w.width + j * w.dilation_w - w.pad_w;
          std::copy(src + y0 * w.width + x0 + shift, src + (y1 - 1) * w.width + x1 + shift, row + y0 * w.width + x0);
          for (std::int64_t oy = y0; oy < y1; ++oy) {
            float* dst = row + oy * w.width;
            for (std::int64_t ox = 0; ox < x0; ++ox) dst[ox] = 0.0f;
            for (std::int64_t ox = x1; ox < w.width; ++ox) dst[ox] = 0.0f;
          }
          std::fill(row + y1 * w.out_w, row + out_plane, 0.0f);
          continue;
        }
        for (std::int64_t oy = y0; oy < y1; ++oy) {
          float* dst = row + oy * w.out_w;
          const float* line = src + (oy * w.stride_h - w.pad_h + i * w.dilation_h) * w.width;
          const std::int64_t xoff = j * w.dilation_w - w.pad_w;
          std::fill(dst, dst + x0, 0.0f);
          if (w.stride_w == 1) {
            std::copy(line + x0 + xoff, line + x1 + xoff, dst + x0);
          } else {
            for (std::int64_t ox = x0; ox < x1; ++ox) dst[ox] = line[ox * w.stride_w + xoff];
          }
          std::fill(dst + x1, dst + w.out_w, 0.0f);
        }
        std::fill(row + y1 * w.out_w, row + out_plane, 0.0f);
      }
}

void col2im(const Window2d& w, const float* col, std::int64_t ld, float* image) {
  const std::int64_t plane = w.height * w.width;
  for (std::int64_t c = 0; c < w.channels; ++c)
    for (std::int64_t i = 0; i < w.kernel_h; ++i)
      for (std::int64_t j = 0; j < w.kernel_w; ++j) {
        const float* row = col + ((c * w.kernel_h + i) * w.kernel_w + j) * ld;
        float* dst = image + c * plane;
        std::int64_t y0, y1, x0, x1;
        valid_range(w.height, w.out_h, w.stride_h, w.pad_h, i * w.dilation_h, y0, y1);
        valid_range(w.width, w.out_w, w.stride_w, w.pad_w, j * w.dilation_w, x0, x1);
        const std::int64_t xoff = j * w.dilation_w - w.pad_w;
        for (std::int64_t oy = y0; oy < y1; ++oy) {
          const float* src = row + oy * w.out_w;
          float* line = dst + (oy * w.stride_h - w.pad_h + i * w.dilation_h) * w.width;
          for (std::int64_t ox = x0; ox < x1; ++ox) line[ox * w.stride_w + xoff] += src[ox];
        }
      }
}

namespace {

LADON_INLINE void conv_store_body(std::int64_t images, std::int64_t rows, std::int64_t plane, const float* c,
                                  std::int64_t ld, const float* bias, Activation activation, float* out) {
  for (std::int64_t i = 0; i < images; ++i)
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* __restrict src = c + r * ld + i * plane;
      float* __restrict dst = out + (i * rows + r) * plane;
      const float b = bias ? bias[r] : 0.0f;
      if (activation == Activation::relu) {
        for (std::int64_t p = 0; p < plane; ++p) dst[p] = std::max(src[p] + b, 0.0f);
      } else {
        for (std::int64_t p = 0; p < plane; ++p) dst[p] = src[p] + b;
      }
    }
}

LADON_INLINE void conv_gather_body(std::int64_t images, std::int64_t rows, std::int64_t plane, const float* grad,
                                   const float* y, float* c, std::int64_t ld) {
  for (std::int64_t i = 0; i < images; ++i)
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* __restrict src = grad + (i * rows + r) * plane;
      float* __restrict dst = c + r * ld + i * plane;
      if (y) {
        const float* __restrict mask = y + (i * rows + r) * plane;
        for (std::int64_t p = 0; p < plane; ++p) dst[p] = mask[p] > 0.0f ? src[p] : 0.0f;
      } else {
        std::copy(src, src + plane, dst);
      }
    }
}

}  // namespace

namespace {
LADON_INLINE void conv_pad_body(std::int64_t channels, std::int64_t height, std::int64_t width, std::int64_t pad_h,
                                std::int64_t pad_w, const float* src, const float* mask, float* dst) {
  const std::int64_t pw = width + 2 * pad_w, ph = height + 2 * pad_h;
  for (std::int64_t c = 0; c < channels; ++c) {
    float* plane = dst + c * ph * pw;
    std::fill(plane, plane + pad_h * pw, 0.0f);
    for (std::int64_t y = 0; y < height; ++y) {
      float* __restrict row = plane + (y + pad_h) * pw;
      const float* __restrict in = src + (c * height + y) * width;
      for (std::int64_t x = 0; x < pad_w; ++x) row[x] = 0.0f;
      if (mask) {
        const float* __restrict m = mask + (c * height + y) * width;
        for (std::int64_t x = 0; x < width; ++x) row[pad_w + x] = m[x] > 0.0f ? in[x] : 0.0f;
      } else {
        for (std::int64_t x = 0; x < width; ++x) row[pad_w + x] = in[x];
      }
      for (std::int64_t x = pad_w + width; x < pw; ++x) row[x] = 0.0f;
    }
    std::fill(plane + (pad_h + height) * pw, plane + ph * pw, 0.0f);
  }
}
}  // namespace

namespace {
#if LADON_X86
// n zeros from p in masked vector stores, for the border's few floats a row (std::fill there: bench_conv
// conv1 train on Zen 5, 5 interleaved pairs, 130.3 -> 134.9 GFLOP/s with these).
LADON_TARGET_AVX512 inline void zero_floats(float* p, std::int64_t n) {
  for (std::int64_t k = 0; k < n; k += 16)
    _mm512_mask_storeu_ps(p + k, detail::first_lanes16(n - k), _mm512_setzero_ps());
}

// conv_pad_body by hand for AVX-512, where the direct convolution (conv_direct.cpp) pads every image
// of a forward and both gradients. Its rows are short (14 and 28 floats in the CNN of bench/): the
// compiled body runs them through scalar remainder loops, at a third of the step's direct
// convolution time; here each row is whole vectors, the last one masked, stored at its offset.
LADON_TARGET_AVX512 void conv_pad_avx512(std::int64_t channels, std::int64_t height, std::int64_t width,
                                         std::int64_t pad_h, std::int64_t pad_w, const float* src, const float* mask,
                                         float* dst) {
  const std::int64_t pw = width + 2 * pad_w, ph = height + 2 * pad_h;
  const __m512 zero = _mm512_setzero_ps();
  for (std::int64_t c = 0; c < channels; ++c) {
    float* plane = dst + c * ph * pw;
    zero_floats(plane, pad_h * pw);
    for (std::int64_t y = 0; y < height; ++y) {
      float* row = plane + (y + pad_h) * pw;
      const float* in = src + (c * height + y) * width;
      const float* m = mask ? mask + (c * height + y) * width : nullptr;
      zero_floats(row, pad_w);
      for (std::int64_t x = 0; x < width; x += 16) {
        const __mmask16 lanes = detail::first_lanes16(width - x);
        __m512 v = _mm512_maskz_loadu_ps(lanes, in + x);
        if (m) v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(lanes, m + x), zero, _CMP_GT_OQ), v);
        _mm512_mask_storeu_ps(row + pad_w + x, lanes, v);
      }
      zero_floats(row + pad_w + width, pad_w);
    }
    zero_floats(plane + (pad_h + height) * pw, pad_h * pw);
  }
}
#endif
}  // namespace

void conv_pad(std::int64_t channels, std::int64_t height, std::int64_t width, std::int64_t pad_h, std::int64_t pad_w,
              const float* src, const float* mask, float* dst) {
#if LADON_X86
  if (active_isa() >= Isa::avx512) return conv_pad_avx512(channels, height, width, pad_h, pad_w, src, mask, dst);
#endif
  Multiversion<conv_pad_body>::run(channels, height, width, pad_h, pad_w, src, mask, dst);
}

void conv_store(std::int64_t images, std::int64_t rows, std::int64_t plane, const float* c, std::int64_t ld,
                const float* bias, Activation activation, float* out) {
  Multiversion<conv_store_body>::run(images, rows, plane, c, ld, bias, activation, out);
}

void conv_gather(std::int64_t images, std::int64_t rows, std::int64_t plane, const float* grad, const float* y,
                 float* c, std::int64_t ld) {
  Multiversion<conv_gather_body>::run(images, rows, plane, grad, y, c, ld);
}

namespace {

// The select of every max-pool window: v wins over the best so far if greater, or if NaN (a NaN
// then stays: nothing compares greater). Branch-free, as random data defeats the predictor.
LADON_INLINE void take_max(float v, std::int64_t at, float& best, std::int64_t& best_at) {
  const bool take = (v > best) | (v != v);
  best = take ? v : best;
  best_at = take ? at : best_at;
}

// The common 2x2 window with stride 2, no padding or dilation: no border clipping, and a fixed
// 16 outputs per tile that vectorise. The tile's two input rows are copied into local buffers
// padded to the full tile: rows of a small feature map (14 outputs) are shorter than one
// AVX-512 vector, and the scalar remainder loop the compiler would run instead branches on every
// compare (random data: about half mispredicted). Same results as the general loop.
// Index: std::int64_t, the winner's offset in its plane; std::uint8_t, its tap (max_pool2d_2x2_taps).
template <class Index>
LADON_INLINE void max_pool2d_2x2_impl(const Window2d& w, std::int64_t planes, const float* x, float* out,
                                      Index* argmax) {
  constexpr std::int64_t kTile = 16;
  const std::int64_t plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  alignas(64) float rows[2][2 * kTile];
  alignas(64) float best[kTile];
  alignas(64) std::int32_t tap[kTile];  // 0, 1: top row; 2, 3: bottom row
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t oy = 0; oy < w.out_h; ++oy) {
      const std::int64_t top = 2 * oy * w.width;
      const float* in = x + p * plane + top;
      float* o = out + p * out_plane + oy * w.out_w;
      Index* a = argmax + p * out_plane + oy * w.out_w;
      for (std::int64_t ox0 = 0; ox0 < w.out_w; ox0 += kTile) {
        const std::int64_t count = std::min(kTile, w.out_w - ox0);
        for (int r = 0; r < 2; ++r) {
          std::copy(in + r * w.width + 2 * ox0, in + r * w.width + 2 * (ox0 + count), rows[r]);
          std::fill(rows[r] + 2 * count, rows[r] + 2 * kTile, 0.0f);
        }
        for (std::int64_t j = 0; j < kTile; ++j) {
          float b = rows[0][2 * j];
          std::int32_t t = 0;
          const float cand[3] = {rows[0][2 * j + 1], rows[1][2 * j], rows[1][2 * j + 1]};
          for (std::int32_t c = 0; c < 3; ++c) {
            const bool take = (cand[c] > b) | (cand[c] != cand[c]);
            b = take ? cand[c] : b;
            t = take ? c + 1 : t;
          }
          best[j] = b;
          tap[j] = t;
        }
        for (std::int64_t j = 0; j < count; ++j) {
          o[ox0 + j] = best[j];
          if constexpr (std::is_same_v<Index, std::uint8_t>)
            a[ox0 + j] = static_cast<std::uint8_t>(tap[j]);
          else
            a[ox0 + j] = top + 2 * (ox0 + j) + (tap[j] & 1) + (tap[j] >> 1) * w.width;
        }
      }
    }
}

LADON_INLINE void max_pool2d_2x2_body(const Window2d& w, std::int64_t planes, const float* x, float* out,
                                      std::int64_t* argmax) {
  max_pool2d_2x2_impl(w, planes, x, out, argmax);
}
LADON_INLINE void max_pool2d_2x2_taps_body(const Window2d& w, std::int64_t planes, const float* x, float* out,
                                           std::uint8_t* taps) {
  max_pool2d_2x2_impl(w, planes, x, out, taps);
}

// The same values without the winners' offsets, for a forward that records no backward (no-grad:
// FAMO's after-step losses, evaluation): no int64 stores, and no tile of 16 for a row of 3 or 10
// outputs. Per window the same comparisons in the same order, so the same value (ties: the first;
// a NaN wins). perf on Zen 3 (no-grad LeNet forward, 1 thread): the argmax kernel took 13% of it.
LADON_INLINE void max_pool2d_2x2_values_body(const Window2d& w, std::int64_t planes, const float* x, float* out) {
  const std::int64_t plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t oy = 0; oy < w.out_h; ++oy) {
      const float* __restrict top = x + p * plane + 2 * oy * w.width;
      const float* __restrict bottom = top + w.width;
      float* __restrict o = out + p * out_plane + oy * w.out_w;
      for (std::int64_t ox = 0; ox < w.out_w; ++ox) {
        float b = top[2 * ox];
        const float cand[3] = {top[2 * ox + 1], bottom[2 * ox], bottom[2 * ox + 1]};
        for (int c = 0; c < 3; ++c) b = ((cand[c] > b) | (cand[c] != cand[c])) ? cand[c] : b;
        o[ox] = b;
      }
    }
}

// Its backward, writing every element of grad_x: the 2x2 windows do not overlap, so each input
// element is the winner of its window (the output gradient) or not (0), and the elements past the
// last window of an odd height or width are 0. No zeroed buffer, no scatter.
template <class Index>
LADON_INLINE void max_pool2d_2x2_backward_impl(const Window2d& w, std::int64_t planes, const float* grad_out,
                                               const Index* argmax, const float* mask, float* grad_x) {
  constexpr bool kTaps = std::is_same_v<Index, std::uint8_t>;
  const std::int64_t plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  for (std::int64_t p = 0; p < planes; ++p) {
    float* gx = grad_x + p * plane;
    for (std::int64_t oy = 0; oy < w.out_h; ++oy) {
      const float* __restrict g = grad_out + p * out_plane + oy * w.out_w;
      const Index* __restrict a = argmax + p * out_plane + oy * w.out_w;
      const float* __restrict m = mask ? mask + p * out_plane + oy * w.out_w : nullptr;
      for (std::int64_t r = 0; r < 2; ++r) {
        const std::int64_t row = (2 * oy + r) * w.width;
        float* __restrict dst = gx + row;
        for (std::int64_t ox = 0; ox < w.out_w; ++ox) {
          const float gv = m && !(m[ox] > 0.0f) ? 0.0f : g[ox];
          const std::int64_t left = kTaps ? 2 * r : row + 2 * ox;  // what a[ox] holds when the left one won
          dst[2 * ox] = a[ox] == left ? gv : 0.0f;
          dst[2 * ox + 1] = a[ox] == left + 1 ? gv : 0.0f;
        }
        std::fill(dst + 2 * w.out_w, dst + w.width, 0.0f);
      }
    }
    std::fill(gx + 2 * w.out_h * w.width, gx + plane, 0.0f);
  }
}

LADON_INLINE void max_pool2d_2x2_backward_body(const Window2d& w, std::int64_t planes, const float* grad_out,
                                               const std::int64_t* argmax, const float* mask, float* grad_x) {
  max_pool2d_2x2_backward_impl(w, planes, grad_out, argmax, mask, grad_x);
}
LADON_INLINE void max_pool2d_2x2_taps_backward_body(const Window2d& w, std::int64_t planes, const float* grad_out,
                                                    const std::uint8_t* taps, const float* mask, float* grad_x) {
  max_pool2d_2x2_backward_impl(w, planes, grad_out, taps, mask, grad_x);
}

#if LADON_X86
// GCC 12 flags the placeholder inside _mm512_undefined_* (used by the conversions, shifts and
// inserts) as uninitialized; a known false positive (as in gemm_internal.h).
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
// Both by hand for AVX-512 (the compiled bodies copy each tile through a local buffer, and the
// backward's stride-2 stores do not vectorise): 16 windows at a time, their two input rows as 32
// floats each, split into even and odd columns by a permute. Offsets are computed in int32
// lanes, so only for planes below 2^31 elements (max_pool2d_2x2_fits); taps fit any plane.
bool max_pool2d_2x2_fits(const Window2d& w) { return w.height * w.width < (std::int64_t{1} << 31); }

// Index for the values alone (argmax null: a forward that records nothing). The compiled
// max_pool2d_2x2_values_body is slow under AVX-512: perf on Zen 5 (bench_conv conv1 ours_pooled,
// no-grad) put 84% of the fused forward in it, 2.6 of 3.0 ms.
struct ValuesOnly {};

template <class Index>
LADON_TARGET_AVX512 void max_pool2d_2x2_avx512(const Window2d& w, std::int64_t planes, const float* x, float* out,
                                               Index* argmax) {
  constexpr bool kValues = std::is_same_v<Index, ValuesOnly>;
  const std::int64_t plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i width = _mm512_set1_epi32(static_cast<int>(w.width));
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t oy = 0; oy < w.out_h; ++oy) {
      const std::int64_t top = 2 * oy * w.width;
      const float* in = x + p * plane + top;
      float* o = out + p * out_plane + oy * w.out_w;
      Index* a = kValues ? nullptr : argmax + p * out_plane + oy * w.out_w;
      for (std::int64_t ox0 = 0; ox0 < w.out_w; ox0 += 16) {
        const std::int64_t count = std::min<std::int64_t>(16, w.out_w - ox0);
        const __mmask32 cols = detail::first_lanes32(2 * count);
        __m512 cand[4];  // taps 0, 1: top row even, odd; 2, 3: bottom row
        for (int r = 0; r < 2; ++r) {
          const float* src = in + r * w.width + 2 * ox0;
          const __m512 lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>(cols), src);
          const __m512 hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(cols >> 16), src + 16);
          cand[2 * r] = _mm512_permutex2var_ps(lo, even, hi);
          cand[2 * r + 1] = _mm512_permutex2var_ps(lo, odd, hi);
        }
        __m512 best = cand[0];
        __m512i tap = _mm512_setzero_si512();
        for (int t = 1; t < 4; ++t) {
          // As take_max: a greater value or a NaN wins, so the first maximum wins ties.
          const __mmask16 take =
              _mm512_cmp_ps_mask(cand[t], best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(cand[t], cand[t], _CMP_UNORD_Q);
          best = _mm512_mask_mov_ps(best, take, cand[t]);
          tap = _mm512_mask_mov_epi32(tap, take, _mm512_set1_epi32(t));
        }
        const __mmask16 outs = detail::first_lanes16(count);
        _mm512_mask_storeu_ps(o + ox0, outs, best);
        if constexpr (kValues) {
          (void)tap;
        } else if constexpr (std::is_same_v<Index, std::uint8_t>) {
          _mm512_mask_cvtepi32_storeu_epi8(a + ox0, outs, tap);
        } else {
          // top + 2 (ox0 + lane) + (tap & 1) + (tap >> 1) * width
          const __m512i dx = _mm512_and_si512(tap, _mm512_set1_epi32(1));
          const __m512i dy = _mm512_mullo_epi32(_mm512_srli_epi32(tap, 1), width);
          const __m512i at = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(top + 2 * ox0)),
                                              _mm512_add_epi32(even, _mm512_add_epi32(dx, dy)));  // even: 2 * lane
          _mm512_mask_storeu_epi64(a + ox0, static_cast<__mmask8>(outs),
                                   _mm512_cvtepi32_epi64(_mm512_castsi512_si256(at)));
          _mm512_mask_storeu_epi64(a + ox0 + 8, static_cast<__mmask8>(outs >> 8),
                                   _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(at, 1)));
        }
      }
    }
}

template <class Index>  // AVX512BW for the taps' byte loads (every x86-64-v4 CPU has it)
__attribute__((target("avx512f,avx512vl,avx512bw,fma"))) void max_pool2d_2x2_backward_avx512(const Window2d& w, std::int64_t planes, const float* grad_out,
                                                        const Index* argmax, const float* mask, float* grad_x) {
  constexpr bool kTaps = std::is_same_v<Index, std::uint8_t>;
  const std::int64_t plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  // Interleaves the even-column values e and the odd-column values o of 16 windows into 32 floats.
  const __m512i mix_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i mix_hi = _mm512_add_epi32(mix_lo, _mm512_set1_epi32(8));
  const __m512i lane2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512 zero = _mm512_setzero_ps();
  for (std::int64_t p = 0; p < planes; ++p) {
    float* gx = grad_x + p * plane;
    for (std::int64_t oy = 0; oy < w.out_h; ++oy) {
      const float* g = grad_out + p * out_plane + oy * w.out_w;
      const Index* a = argmax + p * out_plane + oy * w.out_w;
      for (std::int64_t ox0 = 0; ox0 < w.out_w; ox0 += 16) {
        const std::int64_t count = std::min<std::int64_t>(16, w.out_w - ox0);
        const __mmask16 outs = detail::first_lanes16(count);
        __m512 gv = _mm512_maskz_loadu_ps(outs, g + ox0);
        if (mask) {
          const float* m = mask + p * out_plane + oy * w.out_w + ox0;
          gv = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(outs, m), zero, _CMP_GT_OQ), gv);
        }
        __m512i at;  // per window what argmax holds (int32 lanes)
        if constexpr (kTaps) {
          at = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(outs, a + ox0));
        } else {
          const __m256i a_lo = _mm512_cvtepi64_epi32(_mm512_maskz_loadu_epi64(static_cast<__mmask8>(outs), a + ox0));
          const __m256i a_hi =
              _mm512_cvtepi64_epi32(_mm512_maskz_loadu_epi64(static_cast<__mmask8>(outs >> 8), a + ox0 + 8));
          at = _mm512_inserti64x4(_mm512_castsi256_si512(a_lo), a_hi, 1);
        }
        const __mmask32 cols = detail::first_lanes32(2 * count);
        for (std::int64_t r = 0; r < 2; ++r) {
          const std::int64_t row = (2 * oy + r) * w.width + 2 * ox0;
          // What at holds where the window's left element in this row won: its tap, or its offset.
          const __m512i left = kTaps ? _mm512_set1_epi32(static_cast<int>(2 * r))
                                     : _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(row)), lane2);
          const __m512 e = _mm512_mask_mov_ps(zero, _mm512_cmpeq_epi32_mask(at, left), gv);
          const __m512 o =
              _mm512_mask_mov_ps(zero, _mm512_cmpeq_epi32_mask(at, _mm512_add_epi32(left, _mm512_set1_epi32(1))), gv);
          _mm512_mask_storeu_ps(gx + row, static_cast<__mmask16>(cols), _mm512_permutex2var_ps(e, mix_lo, o));
          _mm512_mask_storeu_ps(gx + row + 16, static_cast<__mmask16>(cols >> 16),
                                _mm512_permutex2var_ps(e, mix_hi, o));
        }
      }
      for (std::int64_t r = 0; r < 2; ++r) {
        float* row = gx + (2 * oy + r) * w.width;
        std::fill(row + 2 * w.out_w, row + w.width, 0.0f);
      }
    }
    std::fill(gx + 2 * w.out_h * w.width, gx + plane, 0.0f);
  }
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // LADON_X86

}  // namespace

bool max_pool2d_is_2x2(const Window2d& w) {
  return w.kernel_h == 2 && w.kernel_w == 2 && w.stride_h == 2 && w.stride_w == 2 && w.pad_h == 0 && w.pad_w == 0 &&
         w.dilation_h == 1 && w.dilation_w == 1;
}

void max_pool2d_2x2_backward(const Window2d& w, std::int64_t planes, const float* grad_out, const std::int64_t* argmax,
                             const float* mask, float* grad_x) {
#if LADON_X86
  if (active_isa() >= Isa::avx512 && max_pool2d_2x2_fits(w))
    return max_pool2d_2x2_backward_avx512(w, planes, grad_out, argmax, mask, grad_x);
#endif
  Multiversion<max_pool2d_2x2_backward_body>::run(w, planes, grad_out, argmax, mask, grad_x);
}

void max_pool2d_2x2_taps(const Window2d& w, std::int64_t planes, const float* x, float* out, std::uint8_t* taps) {
#if LADON_X86
  if (active_isa() >= Isa::avx512) return max_pool2d_2x2_avx512(w, planes, x, out, taps);
#endif
  Multiversion<max_pool2d_2x2_taps_body>::run(w, planes, x, out, taps);
}

void max_pool2d_2x2_taps_backward(const Window2d& w, std::int64_t planes, const float* grad_out,
                                  const std::uint8_t* taps, const float* mask, float* grad_x) {
#if LADON_X86
  if (active_isa() >= Isa::avx512) return max_pool2d_2x2_backward_avx512(w, planes, grad_out, taps, mask, grad_x);
#endif
  Multiversion<max_pool2d_2x2_taps_backward_body>::run(w, planes, grad_out, taps, mask, grad_x);
}

void max_pool2d(const Window2d& w, std::int64_t planes, const float* x, float* out, std::int64_t* argmax) {
  if (max_pool2d_is_2x2(w)) {
    if (argmax == nullptr) {
#if LADON_X86
      if (active_isa() >= Isa::avx512) return max_pool2d_2x2_avx512<ValuesOnly>(w, planes, x, out, nullptr);
#endif
      return Multiversion<max_pool2d_2x2_values_body>::run(w, planes, x, out);
    }
#if LADON_X86
    if (active_isa() >= Isa::avx512 && max_pool2d_2x2_fits(w)) return max_pool2d_2x2_avx512(w, planes, x, out, argmax);
#endif
    Multiversion<max_pool2d_2x2_body>::run(w, planes, x, out, argmax);
    return;
  }
  const std::int64_t plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  for (std::int64_t p = 0; p < planes; ++p) {
    const float* in = x + p * plane;
    for (std::int64_t oy = 0; oy < w.out_h; ++oy) {
      // Kernel rows that land inside the image (padding rows are skipped, never compared).
      const std::int64_t ys = oy * w.stride_h - w.pad_h;
      std::int64_t i0 = 0, i1 = w.kernel_h;
      if (ys < 0 || ys + (w.kernel_h - 1) * w.dilation_h >= w.height) clip_taps(ys, w.height, w.dilation_h, i0, i1);
      for (std::int64_t ox = 0; ox < w.out_w; ++ox) {
        const std::int64_t xs = ox * w.stride_w - w.pad_w;
        std::int64_t j0 = 0, j1 = w.kernel_w;
        if (xs < 0 || xs + (w.kernel_w - 1) * w.dilation_w >= w.width) clip_taps(xs, w.width, w.dilation_w, j0, j1);
        float best = -std::numeric_limits<float>::infinity();
        std::int64_t best_at = -1;
        if (i0 < i1 && j0 < j1) {
          best_at = (ys + i0 * w.dilation_h) * w.width + xs + j0 * w.dilation_w;
          best = in[best_at];
        }
        for (std::int64_t i = i0; i < i1; ++i) {
          const std::int64_t row = (ys + i * w.dilation_h) * w.width;
          for (std::int64_t j = j0; j < j1; ++j) {
            const std::int64_t at = row + xs + j * w.dilation_w;
            take_max(in[at], at, best, best_at);
          }
        }
        out[p * out_plane + oy * w.out_w + ox] = best;
        if (argmax != nullptr) argmax[p * out_plane + oy * w.out_w + ox] = best_at;
      }
    }
  }
}

void max_pool2d_backward(std::int64_t planes, std::int64_t in_plane, std::int64_t out_plane, const float* grad_out,
                         const std::int64_t* argmax, float* grad_x) {
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t o = 0; o < out_plane; ++o) {
      const std::int64_t at = argmax[p * out_plane + o];
      if (at >= 0) grad_x[p * in_plane + at] += grad_out[p * out_plane + o];
    }
}

namespace {
// Calls f(y0, y1, x0, x1, divisor) for every output cell of an average pool window.
template <typename F>
void avg_windows(const Window2d& w, bool count_include_pad, F&& f) {
  for (std::int64_t oy = 0; oy < w.out_h; ++oy)
    for (std::int64_t ox = 0; ox < w.out_w; ++ox) {
      const std::int64_t ys = oy * w.stride_h - w.pad_h, xs = ox * w.stride_w - w.pad_w;
      // The window clipped to the padded input (matters only when it hangs past the padding).
      const std::int64_t ye_pad = std::min(ys + w.kernel_h, w.height + w.pad_h);
      const std::int64_t xe_pad = std::min(xs + w.kernel_w, w.width + w.pad_w);
      const std::int64_t y0 = std::max<std::int64_t>(ys, 0), x0 = std::max<std::int64_t>(xs, 0);
      const std::int64_t y1 = std::min(ys + w.kernel_h, w.height), x1 = std::min(xs + w.kernel_w, w.width);
      const std::int64_t count = count_include_pad ? (ye_pad - ys) * (xe_pad - xs) : (y1 - y0) * (x1 - x0);
      f(oy * w.out_w + ox, y0, y1, x0, x1, count);
    }
}
}  // namespace

void avg_pool2d(const Window2d& w, std::int64_t planes, bool count_include_pad, const float* x, float* out) {
  const std::int64_t plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  for (std::int64_t p = 0; p < planes; ++p) {
    const float* in = x + p * plane;
    float* o = out + p * out_plane;
    avg_windows(w, count_include_pad, [&](std::int64_t at, std::int64_t y0, std::int64_t y1, std::int64_t x0,
                                          std::int64_t x1, std::int64_t count) {
      float s = 0;
      for (std::int64_t y = y0; y < y1; ++y)
        for (std::int64_t xx = x0; xx < x1; ++xx) s += in[y * w.width + xx];
      o[at] = count > 0 ? s / static_cast<float>(count) : 0.0f;
    });
  }
}

void avg_pool2d_backward(const Window2d& w, std::int64_t planes, bool count_include_pad, const float* grad_out,
                         float* grad_x) {
  const std::int64_t plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  for (std::int64_t p = 0; p < planes; ++p) {
    float* gx = grad_x + p * plane;
    const float* g = grad_out + p * out_plane;
    avg_windows(w, count_include_pad, [&](std::int64_t at, std::int64_t y0, std::int64_t y1, std::int64_t x0,
                                          std::int64_t x1, std::int64_t count) {
      if (count == 0) return;
      const float share = g[at] / static_cast<float>(count);
      for (std::int64_t y = y0; y < y1; ++y)
        for (std::int64_t xx = x0; xx < x1; ++xx) gx[y * w.width + xx] += share;
    });
  }
}

namespace {
inline std::int64_t window_start(std::int64_t o, std::int64_t in, std::int64_t out) { return (o * in) / out; }
inline std::int64_t window_end(std::int64_t o, std::int64_t in, std::int64_t out) {
  return ((o + 1) * in + out - 1) / out;
}
}  // namespace

void adaptive_avg_pool2d(const Window2d& w, std::int64_t planes, const float* x, float* out) {
  const std::int64_t plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t oy = 0; oy < w.out_h; ++oy) {
      const std::int64_t y0 = window_start(oy, w.height, w.out_h), y1 = window_end(oy, w.height, w.out_h);
      for (std::int64_t ox = 0; ox < w.out_w; ++ox) {
        const std::int64_t x0 = window_start(ox, w.width, w.out_w), x1 = window_end(ox, w.width, w.out_w);
        float s = 0;
        for (std::int64_t y = y0; y < y1; ++y)
          for (std::int64_t xx = x0; xx < x1; ++xx) s += x[p * plane + y * w.width + xx];
        out[p * out_plane + oy * w.out_w + ox] = s / static_cast<float>((y1 - y0) * (x1 - x0));
      }
    }
}

void adaptive_avg_pool2d_backward(const Window2d& w, std::int64_t planes, const float* grad_out, float* grad_x) {
  const std::int64_t plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t oy = 0; oy < w.out_h; ++oy) {
      const std::int64_t y0 = window_start(oy, w.height, w.out_h), y1 = window_end(oy, w.height, w.out_h);
      for (std::int64_t ox = 0; ox < w.out_w; ++ox) {
        const std::int64_t x0 = window_start(ox, w.width, w.out_w), x1 = window_end(ox, w.width, w.out_w);
        const float share = grad_out[p * out_plane + oy * w.out_w + ox] / static_cast<float>((y1 - y0) * (x1 - x0));
        for (std::int64_t y = y0; y < y1; ++y)
          for (std::int64_t xx = x0; xx < x1; ++xx) grad_x[p * plane + y * w.width + xx] += share;
      }
    }
}

}  // namespace ladon::kernels
