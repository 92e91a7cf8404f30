// Pieces the FP32 GEMM (gemm.cpp) and the bf16 GEMM (gemm_bf16.cpp) share: the cache-block
// arithmetic, per-thread packing buffers, the AVX-512 tile store, the 16 x 16 transpose used by
// packing, and the epilogue. Internal to kernels/: not installed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "gemm.h"
#include "simd.h"

#if LADON_X86  // intrinsics and target attributes: x86-64 only (isa.h)
#include <immintrin.h>

#define LADON_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,fma")))
#define LADON_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define LADON_TARGET_AVX512_BF16 __attribute__((target("avx512f,avx512vl,avx512bw,avx512bf16,fma")))
#endif

namespace ladon::kernels::detail {

using i64 = std::int64_t;

#if LADON_X86

// vcvtne2ps2bf16 (hi, lo) puts lo's 16 values in 16-bit lanes 0-15 and hi's in 16-31; this
// permutation (vpermw) interleaves them, so 32-bit lane x holds (lo[x], hi[x]).
alignas(64) inline constexpr std::uint16_t kInterleaveHalves[32] = {0,  16, 1,  17, 2,  18, 3,  19, 4,  20, 5,
                                                                    21, 6,  22, 7,  23, 8,  24, 9,  25, 10, 26,
                                                                    11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

// 16 words of bf16 pairs, word x = (lo[x], hi[x]) rounded to nearest even, low half first: the pair
// vdpbf16ps multiplies together (the bf16 GEMM's k-pairs, the bf16 direct convolution's channel and
// position pairs).
LADON_INLINE LADON_TARGET_AVX512_BF16 __m512i bf16_pair_words(__m512 lo, __m512 hi) {
  const __m512i halves = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
  return _mm512_permutexvar_epi16(_mm512_load_si512(kInterleaveHalves), halves);
}

// The mask of the first min(n, 16) (or 32) lanes, for a row's last, partial vector. Plain integer
// operations: no target attribute needed.
inline __mmask16 first_lanes16(i64 n) {
  return n >= 16 ? static_cast<__mmask16>(0xffffu) : static_cast<__mmask16>((1u << n) - 1u);
}
inline __mmask32 first_lanes32(i64 n) {
  return n >= 32 ? static_cast<__mmask32>(0xffffffffu) : static_cast<__mmask32>((std::uint32_t{1} << n) - 1u);
}

// Writes C = alpha * acc + beta * C for an MR_EFF x (16 * NV) tile; with MASKED only the lanes in
// last_mask of the last vector column are touched. beta == 0 never reads C.
template <int MR_EFF, int NV, bool MASKED>
LADON_INLINE LADON_TARGET_AVX512 void store_tile_avx512(const __m512 (&acc)[MR_EFF][NV], float* c, i64 ldc, float alpha,
                                                        float beta, __mmask16 last_mask) {
  const __m512 va = _mm512_set1_ps(alpha);
  const __m512 vb = _mm512_set1_ps(beta);
  const int mode = beta == 0.0f ? 0 : beta == 1.0f ? 1 : 2;
#pragma GCC unroll 32
  for (int i = 0; i < MR_EFF; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      float* pc = c + i * ldc + 16 * j;
      const bool masked = MASKED && j == NV - 1;
      __m512 r = _mm512_mul_ps(va, acc[i][j]);
      if (mode != 0) {
        const __m512 old = masked ? _mm512_maskz_loadu_ps(last_mask, pc) : _mm512_loadu_ps(pc);
        r = mode == 1 ? _mm512_add_ps(r, old) : _mm512_fmadd_ps(vb, old, r);
      }
      if (masked)
        _mm512_mask_storeu_ps(pc, last_mask, r);
      else
        _mm512_storeu_ps(pc, r);
    }
}
#endif  // LADON_X86

// The epilogue on one stored tile of C (rows x cols at c), whose first column is column col0 of C.
LADON_INLINE void apply_epilogue(const Epilogue& epilogue, float* c, i64 ldc, i64 rows, i64 cols, i64 col0) {
  const bool relu = epilogue.activation == Activation::relu;
  if (epilogue.bias == nullptr && !relu) return;
  for (i64 i = 0; i < rows; ++i) {
    float* row = c + i * ldc;
    if (epilogue.bias != nullptr)
      for (i64 j = 0; j < cols; ++j) row[j] += epilogue.bias[col0 + j];
    if (relu)
      for (i64 j = 0; j < cols; ++j) row[j] = row[j] < 0.0f ? 0.0f : row[j];  // NaN stays NaN
  }
}

#if LADON_X86
// GCC 12 flags the self-initialised placeholder inside _mm512_undefined_ps (used by these shuffle
// intrinsics) as maybe-uninitialized; it is a known false positive.
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// In-register transpose of 16 rows of 16 floats: on return r[j] holds column j.
LADON_INLINE LADON_TARGET_AVX512 void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}

#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // LADON_X86

// C = beta * C, for the cases where the product contributes nothing (k == 0 or alpha == 0).
inline void scale_c(i64 m, i64 n, float beta, float* c, i64 ldc) {
  for (i64 i = 0; i < m; ++i)
    for (i64 j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

// Buffers: one per thread and operand, grown on demand and then reused, so steady state never allocates.
template <class T>
struct PackBuffer {
  T* data = nullptr;
  std::size_t capacity = 0;  // elements
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { std::free(data); }
  T* get(std::size_t n) {
    if (n > capacity) {
      std::free(data);
      data = nullptr;
      capacity = 0;
      const std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
      data = static_cast<T*>(std::aligned_alloc(64, bytes));
      if (data == nullptr) throw std::bad_alloc();
      capacity = n;
    }
    return data;
  }
};

constexpr i64 ceil_div(i64 x, i64 y) { return (x + y - 1) / y; }
constexpr i64 round_up(i64 x, i64 y) { return ceil_div(x, y) * y; }

// Splits extent into equal blocks of at most max_block, each a multiple of unit: avoids a thin
// last block (k = 400 with KC = 384 becomes 2 x 200, not 384 + 16).
constexpr i64 balanced_block(i64 extent, i64 max_block, i64 unit) {
  const i64 blocks = ceil_div(extent, max_block);
  return std::min(max_block, round_up(ceil_div(extent, blocks), unit));
}

}  // namespace ladon::kernels::detail
