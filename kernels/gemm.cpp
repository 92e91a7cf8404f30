// Packed, cache-blocked sgemm in the BLIS/GotoBLAS structure.
//
//   for jc in N by NC:            B block (KC x NC) lives in L2/L3
//     for pc in K by KC:          pack B block into NR-wide micro-panels (k-major)
//       for ic in M by MC:        pack A block (MC x KC) into MR-tall micro-panels (k-major)
//         for jr in NC by NR:     one B micro-panel (KC x NR) stays in L1
//           for ir in MC by MR:   micro-kernel: MR x NR register tile, KC rank-1 updates
//
// C is row-major, so the micro-kernel's vector dimension runs along a row of C (NR = a multiple of
// the vector width) and A's values are broadcast. AVX-512: 14 x 32 tile (28 zmm accumulators, two B
// vectors, one broadcast), MC = 280, KC = 384, NC = 4096; edge tiles run a kernel instantiated for
// the remaining rows, with masked loads/stores for the remaining columns, straight into C. AVX2 (6 x 16)
// and the portable kernel (4 x 8) compute edge tiles in full into a scratch tile and merge.
//
// Small products with B untransposed skip packing altogether on AVX-512 (ukernel_avx512_direct,
// prefer_direct): when A fits in L2, packing costs more than the strided loads it saves. On AVX2,
// products with a tiny operand (m * k or m * n <= 64, prefer_direct_avx2) skip it too, in either layout.
//
// Each instruction set gets its own micro-kernel and its own copy of the driver (and so of the
// packing loops), compiled with per-function target attributes; the one for active_isa() (isa.h) runs.
#include "gemm.h"

#include <cblas.h>
#if LADON_X86
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cstdlib>
#include <new>
#include <utility>

#include "gemm_internal.h"
#include "simd.h"

namespace ladon::kernels {

namespace {

using namespace detail;  // the pieces shared with the bf16 GEMM (gemm_internal.h)

#if LADON_X86  // the x86 micro-kernels; the portable one below builds anywhere

// ---------------------------------------------------------------------------------------------
// Micro-kernels. Contract: c[i*ldc + j] (i < MR, j < NR) = alpha * sum_p pa[p*MR+i] * pb[p*NR+j]
// + beta * c[...], where beta == 0 never reads c. pa and pb are 64-byte aligned packed panels.
// ---------------------------------------------------------------------------------------------

// Packed micro-kernel: MR_EFF <= MR rows of a tile whose packed A panel has row stride MR, B panel
// 32 wide. Edge tiles use MR_EFF < MR or MASKED and write straight to C: no scratch tile, no waste.
template <int MR_EFF, int MR, int NV, bool MASKED>
LADON_TARGET_AVX512 void ukernel_avx512(i64 kc, const float* __restrict pa, const float* __restrict pb, float* c,
                                        i64 ldc, float alpha, float beta, __mmask16 last_mask) {
  constexpr int NR = 32;  // packed B panel width, whatever NV is
  __m512 acc[MR_EFF][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR_EFF; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
#pragma GCC unroll 32
  for (int i = 0; i < MR_EFF; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 2
  for (i64 p = 0; p < kc; ++p) {
    __m512 bv[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_load_ps(pb + 16 * j);
#pragma GCC unroll 32
    for (int i = 0; i < MR_EFF; ++i) {
      const __m512 av = _mm512_set1_ps(pa[i]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
    pa += MR;
    pb += NR;
  }
  store_tile_avx512<MR_EFF, NV, MASKED>(acc, c, ldc, alpha, beta, last_mask);
}

// Unpacked micro-kernel for small problems with B untransposed: reads A (either layout) and B rows
// (stride ldb) in place, so a product that fits in cache pays no packing at all.
template <int MR_EFF, int NV, bool MASKED, bool TRANS_A>
LADON_TARGET_AVX512 void ukernel_avx512_direct(i64 k, const float* __restrict a, i64 lda, const float* __restrict b,
                                               i64 ldb, float* c, i64 ldc, float alpha, float beta,
                                               __mmask16 last_mask) {
  __m512 acc[MR_EFF][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR_EFF; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
  for (i64 p = 0; p < k; ++p) {
    __m512 bv[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j)
      bv[j] = MASKED && j == NV - 1 ? _mm512_maskz_loadu_ps(last_mask, b + 16 * j) : _mm512_loadu_ps(b + 16 * j);
#pragma GCC unroll 32
    for (int i = 0; i < MR_EFF; ++i) {
      const __m512 av = _mm512_set1_ps(TRANS_A ? a[i] : a[i * lda]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
    a += TRANS_A ? lda : 1;
    b += ldb;
  }
  store_tile_avx512<MR_EFF, NV, MASKED>(acc, c, ldc, alpha, beta, last_mask);
}

template <int MR, int NV>
LADON_TARGET_AVX2 void ukernel_avx2(i64 kc, const float* __restrict pa, const float* __restrict pb, float* c, i64 ldc,
                                    float alpha, float beta) {
  constexpr int NR = NV * 8;
  __m256 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (i64 p = 0; p < kc; ++p) {
    __m256 bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = _mm256_load_ps(pb + 8 * j);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(pa + i);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
    pa += MR;
    pb += NR;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      float* pc = c + i * ldc + 8 * j;
      __m256 r = _mm256_mul_ps(va, acc[i][j]);
      if (beta != 0.0f) r = _mm256_fmadd_ps(vb, _mm256_loadu_ps(pc), r);
      _mm256_storeu_ps(pc, r);
    }
}

// Unpacked AVX2 micro-kernel for small products: an MR x (8 * NV) tile of C in registers, A read in
// place (either layout), B rows (stride ldb) read in place; with MASKED the last vector covers only
// the lanes whose last_lanes[l] is -1 (vmaskmovps). Each output is one FMA chain over p from zero, stored as
// alpha * acc + beta * C, exactly as ukernel_avx2 does, so both paths give the same bits.
template <int MR, int NV, bool MASKED, bool TRANS_A>
LADON_TARGET_AVX2 void ukernel_avx2_direct(i64 kc, const float* __restrict a, i64 lda, const float* __restrict b,
                                           i64 ldb, float* c, i64 ldc, float alpha, float beta,
                                           const std::int32_t* last_lanes) {
  const __m256i last = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(last_lanes));
  __m256 acc[MR][NV];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm256_setzero_ps();
  for (i64 p = 0; p < kc; ++p) {
    __m256 bv[NV];
#pragma GCC unroll 2
    for (int j = 0; j < NV; ++j)
      bv[j] = MASKED && j == NV - 1 ? _mm256_maskload_ps(b + 8 * j, last) : _mm256_loadu_ps(b + 8 * j);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(TRANS_A ? a + i : a + i * lda);
#pragma GCC unroll 2
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
    a += TRANS_A ? lda : 1;
    b += ldb;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NV; ++j) {
      float* pc = c + i * ldc + 8 * j;
      const bool masked = MASKED && j == NV - 1;
      __m256 r = _mm256_mul_ps(va, acc[i][j]);
      if (beta != 0.0f) r = _mm256_fmadd_ps(vb, masked ? _mm256_maskload_ps(pc, last) : _mm256_loadu_ps(pc), r);
      if (masked)
        _mm256_maskstore_ps(pc, last, r);
      else
        _mm256_storeu_ps(pc, r);
    }
}

#endif  // LADON_X86

// Portable reference: plain loops, no intrinsics (the compiler may still use baseline SSE2).
template <int MR, int NR>
void ukernel_scalar(i64 kc, const float* __restrict pa, const float* __restrict pb, float* c, i64 ldc, float alpha,
                    float beta) {
  float acc[MR][NR] = {};
  for (i64 p = 0; p < kc; ++p) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += pa[i] * pb[j];
    pa += MR;
    pb += NR;
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      float& out = c[i * ldc + j];
      out = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * out;
    }
}

// ---------------------------------------------------------------------------------------------
// Packing. A(i, p) = trans_a ? a[p*lda + i] : a[i*lda + p]; B(p, j) = trans_b ? b[j*ldb + p] : b[p*ldb + j].
// ---------------------------------------------------------------------------------------------

// A block rows [0, mc) x k [0, kc) (a already offset) -> MR-row micro-panels, dst[ir*kc + p*MR + ii].
template <int MR>
LADON_INLINE void pack_a_generic(bool trans, const float* a, i64 lda, i64 mc, i64 kc, float* __restrict dst) {
  for (i64 ir = 0; ir < mc; ir += MR) {
    const i64 mr = std::min<i64>(MR, mc - ir);
    float* d = dst + ir * kc;
    if (trans) {
      const float* s = a + ir;
      if (mr == MR) {
        for (i64 p = 0; p < kc; ++p)
#pragma GCC unroll 16
          for (int ii = 0; ii < MR; ++ii) d[p * MR + ii] = s[p * lda + ii];
      } else {
        for (i64 p = 0; p < kc; ++p)
          for (int ii = 0; ii < MR; ++ii) d[p * MR + ii] = ii < mr ? s[p * lda + ii] : 0.0f;
      }
    } else {
      const float* s = a + ir * lda;
      if (mr == MR) {
        for (i64 p = 0; p < kc; ++p)
#pragma GCC unroll 16
          for (int ii = 0; ii < MR; ++ii) d[p * MR + ii] = s[ii * lda + p];
      } else {
        for (i64 p = 0; p < kc; ++p)
          for (int ii = 0; ii < MR; ++ii) d[p * MR + ii] = ii < mr ? s[ii * lda + p] : 0.0f;
      }
    }
  }
}

// B block k [0, kc) x cols [0, nc) (b already offset) -> NR-column micro-panels, dst[jr*kc + p*NR + jj].
template <int NR>
LADON_INLINE void pack_b_generic(bool trans, const float* b, i64 ldb, i64 kc, i64 nc, float* __restrict dst) {
  for (i64 jr = 0; jr < nc; jr += NR) {
    const i64 nr = std::min<i64>(NR, nc - jr);
    float* d = dst + jr * kc;
    if (!trans) {
      const float* s = b + jr;
      if (nr == NR) {
        for (i64 p = 0; p < kc; ++p)
#pragma GCC unroll 64
          for (int jj = 0; jj < NR; ++jj) d[p * NR + jj] = s[p * ldb + jj];
      } else {
        for (i64 p = 0; p < kc; ++p)
          for (int jj = 0; jj < NR; ++jj) d[p * NR + jj] = jj < nr ? s[p * ldb + jj] : 0.0f;
      }
    } else {
      const float* s = b + jr * ldb;
      for (int jj = 0; jj < NR; ++jj) {
        if (jj < nr) {
          for (i64 p = 0; p < kc; ++p) d[p * NR + jj] = s[jj * ldb + p];
        } else {
          for (i64 p = 0; p < kc; ++p) d[p * NR + jj] = 0.0f;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One struct per instruction set: register block MR x NR, cache blocks MC/KC/NC, the tile function
// (any mr <= MR, nr <= NR) and the packing routines. AVX-512 blocks are sized for Zen 5 (L1 48 KB,
// L2 1 MB): the 14 x 384 A micro-panel (21 KB) and the 384 x 32 B micro-panel (48 KB) stream from L1/L2,
// the 280 x 384 A block (420 KB) stays in L2, the 384 x 4096 B block in L3.
// ---------------------------------------------------------------------------------------------

// Computes a full MR x NR tile into a scratch tile and merges the valid mr x nr corner into C.
template <int MR, int NR, class Full>
LADON_INLINE void tile_via_scratch(Full full, i64 kc, const float* pa, const float* pb, float* c, i64 ldc, float alpha,
                                   float beta, i64 mr, i64 nr) {
  if (mr == MR && nr == NR) {
    full(kc, pa, pb, c, ldc, alpha, beta);
    return;
  }
  alignas(64) float edge[MR * NR];
  full(kc, pa, pb, edge, NR, 1.0f, 0.0f);
  for (i64 i = 0; i < mr; ++i)
    for (i64 j = 0; j < nr; ++j) {
      float& out = c[i * ldc + j];
      out = beta == 0.0f ? alpha * edge[i * NR + j] : alpha * edge[i * NR + j] + beta * out;
    }
}

#if LADON_X86
using TileFn = void (*)(i64, const float*, const float*, float*, i64, float, float, __mmask16);

using DirectFn = void (*)(i64, const float*, i64, const float*, i64, float*, i64, float, float, __mmask16);

template <bool TRANS_A, std::size_t... I>
constexpr auto avx512_direct_table(std::index_sequence<I...>) {
  return std::array<std::array<DirectFn, 2>, sizeof...(I)>{
      {{&ukernel_avx512_direct<static_cast<int>(I) + 1, 1, true, TRANS_A>,
        &ukernel_avx512_direct<static_cast<int>(I) + 1, 2, true, TRANS_A>}...}};
}

template <int MR, std::size_t... I>
constexpr auto avx512_edge_table(std::index_sequence<I...>) {
  return std::array<std::array<TileFn, 2>, MR>{{{&ukernel_avx512<static_cast<int>(I) + 1, MR, 1, true>,
                                                 &ukernel_avx512<static_cast<int>(I) + 1, MR, 2, true>}...}};
}

struct KernelAvx512 {
  static constexpr int MR = 14, NR = 32;
  static constexpr i64 MC = 280, KC = 384, NC = 4096;
  static constexpr auto edge = avx512_edge_table<MR>(std::make_index_sequence<MR>{});
  LADON_TARGET_AVX512 static void tile(i64 kc, const float* pa, const float* pb, float* c, i64 ldc, float alpha,
                                       float beta, i64 mr, i64 nr) {
    if (mr == MR && nr == NR) {
      ukernel_avx512<MR, MR, 2, false>(kc, pa, pb, c, ldc, alpha, beta, 0xffff);
    } else {
      const i64 nv = (nr + 15) / 16;
      const auto mask = static_cast<__mmask16>((1u << (nr - 16 * (nv - 1))) - 1u);
      edge[mr - 1][nv - 1](kc, pa, pb, c, ldc, alpha, beta, mask);
    }
  }
  // Small products with B untransposed skip packing: see ukernel_avx512_direct.
  static constexpr auto direct_edge = avx512_direct_table<false>(std::make_index_sequence<MR>{});
  static constexpr auto direct_edge_ta = avx512_direct_table<true>(std::make_index_sequence<MR>{});
  LADON_TARGET_AVX512 static void direct(bool trans_a, i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda,
                                         const float* b, i64 ldb, float beta, float* c, i64 ldc,
                                         const Epilogue& epilogue) {
    for (i64 jr = 0; jr < n; jr += NR) {
      const i64 nr = std::min<i64>(NR, n - jr);
      const i64 nv = (nr + 15) / 16;
      const auto mask = static_cast<__mmask16>((1u << (nr - 16 * (nv - 1))) - 1u);
      for (i64 ir = 0; ir < m; ir += MR) {
        const i64 mr = std::min<i64>(MR, m - ir);
        const float* pa = trans_a ? a + ir : a + ir * lda;
        float* pc = c + ir * ldc + jr;
        if (mr == MR && nr == NR) {
          if (trans_a)
            ukernel_avx512_direct<MR, 2, false, true>(k, pa, lda, b + jr, ldb, pc, ldc, alpha, beta, 0xffff);
          else
            ukernel_avx512_direct<MR, 2, false, false>(k, pa, lda, b + jr, ldb, pc, ldc, alpha, beta, 0xffff);
        } else {
          (trans_a ? direct_edge_ta : direct_edge)[mr - 1][nv - 1](k, pa, lda, b + jr, ldb, pc, ldc, alpha, beta, mask);
        }
        apply_epilogue(epilogue, pc, ldc, mr, nr, jr);
      }
    }
  }
  LADON_TARGET_AVX512 static void pack_a(bool trans, const float* a, i64 lda, i64 mc, i64 kc, float* dst);
  LADON_TARGET_AVX512 static void pack_b(bool trans, const float* b, i64 ldb, i64 kc, i64 nc, float* dst);
};

using DirectAvx2Fn = void (*)(i64, const float*, i64, const float*, i64, float*, i64, float, float,
                              const std::int32_t*);

// [masked][rows - 1][vectors - 1] for one layout of A.
template <bool TRANS_A>
constexpr auto avx2_direct_table() {
  return std::array<std::array<std::array<DirectAvx2Fn, 2>, 4>, 2>{{
      {{{&ukernel_avx2_direct<1, 1, false, TRANS_A>, &ukernel_avx2_direct<1, 2, false, TRANS_A>},
        {&ukernel_avx2_direct<2, 1, false, TRANS_A>, &ukernel_avx2_direct<2, 2, false, TRANS_A>},
        {&ukernel_avx2_direct<3, 1, false, TRANS_A>, &ukernel_avx2_direct<3, 2, false, TRANS_A>},
        {&ukernel_avx2_direct<4, 1, false, TRANS_A>, &ukernel_avx2_direct<4, 2, false, TRANS_A>}}},
      {{{&ukernel_avx2_direct<1, 1, true, TRANS_A>, &ukernel_avx2_direct<1, 2, true, TRANS_A>},
        {&ukernel_avx2_direct<2, 1, true, TRANS_A>, &ukernel_avx2_direct<2, 2, true, TRANS_A>},
        {&ukernel_avx2_direct<3, 1, true, TRANS_A>, &ukernel_avx2_direct<3, 2, true, TRANS_A>},
        {&ukernel_avx2_direct<4, 1, true, TRANS_A>, &ukernel_avx2_direct<4, 2, true, TRANS_A>}}},
  }};
}

struct KernelAvx2 {
  static constexpr int MR = 6, NR = 16;
  static constexpr i64 MC = 144, KC = 256, NC = 4096;
  // Small products skip packing (prefer_direct_avx2): tiles of up to 4 x 16 read A and B in place,
  // a transposed B is first copied k-major into the B packing buffer (k x n, tiny here). k is cut
  // into the packed driver's blocks (balanced_block(k, KC)) with beta applied to the first only,
  // so every output has the same FMA order and rounding as the packed path.
  static constexpr int DIRECT_MR = 4, DIRECT_NR = 16;
  static constexpr auto direct_table = avx2_direct_table<false>();
  static constexpr auto direct_table_ta = avx2_direct_table<true>();
  LADON_TARGET_AVX2 static void direct(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float* a,
                                       i64 lda, const float* b, i64 ldb, float beta, float* c, i64 ldc,
                                       const Epilogue& epilogue);
  LADON_TARGET_AVX2 static void tile(i64 kc, const float* pa, const float* pb, float* c, i64 ldc, float alpha,
                                     float beta, i64 mr, i64 nr) {
    tile_via_scratch<MR, NR>(&ukernel_avx2<MR, NR / 8>, kc, pa, pb, c, ldc, alpha, beta, mr, nr);
  }
  LADON_TARGET_AVX2 static void pack_a(bool trans, const float* a, i64 lda, i64 mc, i64 kc, float* dst) {
    pack_a_generic<MR>(trans, a, lda, mc, kc, dst);
  }
  LADON_TARGET_AVX2 static void pack_b(bool trans, const float* b, i64 ldb, i64 kc, i64 nc, float* dst) {
    pack_b_generic<NR>(trans, b, ldb, kc, nc, dst);
  }
};

#endif  // LADON_X86

struct KernelScalar {
  static constexpr int MR = 4, NR = 8;
  static constexpr i64 MC = 128, KC = 256, NC = 2048;
  LADON_INLINE static void tile(i64 kc, const float* pa, const float* pb, float* c, i64 ldc, float alpha, float beta,
                                i64 mr, i64 nr) {
    tile_via_scratch<MR, NR>(&ukernel_scalar<MR, NR>, kc, pa, pb, c, ldc, alpha, beta, mr, nr);
  }
  LADON_INLINE static void pack_a(bool trans, const float* a, i64 lda, i64 mc, i64 kc, float* dst) {
    pack_a_generic<MR>(trans, a, lda, mc, kc, dst);
  }
  LADON_INLINE static void pack_b(bool trans, const float* b, i64 ldb, i64 kc, i64 nc, float* dst) {
    pack_b_generic<NR>(trans, b, ldb, kc, nc, dst);
  }
};

#if LADON_X86
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// Gathers `rows` (<= 16) rows of src (row stride ld), 16 consecutive columns each, and writes column j
// as `rows` floats at dst + j * dst_stride: the packing transpose, 16 k-steps at a time.
LADON_INLINE LADON_TARGET_AVX512 void pack_transposed_16(const float* src, i64 ld, int rows, float* dst,
                                                         i64 dst_stride) {
  __m512 r[16];
  for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_loadu_ps(src + i * ld) : _mm512_setzero_ps();
  transpose16x16(r);
  const auto mask = static_cast<__mmask16>((1u << rows) - 1u);
  for (int j = 0; j < 16; ++j) _mm512_mask_storeu_ps(dst + j * dst_stride, mask, r[j]);
}

#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif

void KernelAvx512::pack_a(bool trans, const float* a, i64 lda, i64 mc, i64 kc, float* dst) {
  if (trans) {
    pack_a_generic<MR>(trans, a, lda, mc, kc, dst);
    return;
  }
  for (i64 ir = 0; ir < mc; ir += MR) {
    const int mr = static_cast<int>(std::min<i64>(MR, mc - ir));
    const float* s = a + ir * lda;
    float* d = dst + ir * kc;
    i64 p = 0;
    if (mr == MR)
      for (; p + 16 <= kc; p += 16) pack_transposed_16(s + p, lda, MR, d + p * MR, MR);
    for (; p < kc; ++p)
      for (int ii = 0; ii < MR; ++ii) d[p * MR + ii] = ii < mr ? s[ii * lda + p] : 0.0f;
  }
}

void KernelAvx512::pack_b(bool trans, const float* b, i64 ldb, i64 kc, i64 nc, float* dst) {
  if (!trans) {
    pack_b_generic<NR>(trans, b, ldb, kc, nc, dst);
    return;
  }
  for (i64 jr = 0; jr < nc; jr += NR) {
    const int nr = static_cast<int>(std::min<i64>(NR, nc - jr));
    const float* s = b + jr * ldb;
    float* d = dst + jr * kc;
    i64 p = 0;
    // A narrow last panel (small Linear layers: n = 24, 16, 1) is transposed in registers too, with
    // its padding columns zeroed, instead of falling to the strided scalar loop.
    const int low = std::min(nr, 16), high = nr - low;
    for (; p + 16 <= kc; p += 16) {
      pack_transposed_16(s + p, ldb, low, d + p * NR, NR);
      if (high > 0) pack_transposed_16(s + 16 * ldb + p, ldb, high, d + p * NR + 16, NR);
      if (nr < NR)
        for (i64 q = p; q < p + 16; ++q) std::fill(d + q * NR + nr, d + (q + 1) * NR, 0.0f);
    }
    for (; p < kc; ++p)
      for (int jj = 0; jj < NR; ++jj) d[p * NR + jj] = jj < nr ? s[jj * ldb + p] : 0.0f;
  }
}

#endif  // LADON_X86

// Packed panels, one per thread and operand (PackBuffer: gemm_internal.h).
thread_local PackBuffer<float> tl_pack_a;
thread_local PackBuffer<float> tl_pack_b;

#if LADON_X86
// bt[p * n + j] = b[j * ldb + p] for p < kc, j < n: a transposed B operand made k-major for the
// unpacked path. Four rows of b at a time, eight k steps each, transposed in registers (a scalar
// copy was half the time of an MMoE's [2, 64] x [64, 4]^T gate gradient).
LADON_TARGET_AVX2 void transpose_b_avx2(const float* b, i64 ldb, i64 kc, i64 n, float* bt) {
  i64 j = 0;
  for (; j + 4 <= n; j += 4) {
    const float* r = b + j * ldb;
    i64 p = 0;
    for (; p + 8 <= kc; p += 8) {
      const __m256 r0 = _mm256_loadu_ps(r + p), r1 = _mm256_loadu_ps(r + ldb + p);
      const __m256 r2 = _mm256_loadu_ps(r + 2 * ldb + p), r3 = _mm256_loadu_ps(r + 3 * ldb + p);
      const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
      const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
      // u[q] holds step p + q in its low half and step p + q + 4 in its high half, rows j .. j + 3.
      const __m256 u[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xee),
                           _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xee)};
      for (int q = 0; q < 4; ++q) {
        _mm_storeu_ps(bt + (p + q) * n + j, _mm256_castps256_ps128(u[q]));
        _mm_storeu_ps(bt + (p + q + 4) * n + j, _mm256_extractf128_ps(u[q], 1));
      }
    }
    for (; p < kc; ++p)
      for (i64 jj = j; jj < j + 4; ++jj) bt[p * n + jj] = b[jj * ldb + p];
  }
  for (; j < n; ++j)
    for (i64 p = 0; p < kc; ++p) bt[p * n + j] = b[j * ldb + p];
}

void KernelAvx2::direct(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda,
                        const float* b, i64 ldb, float beta, float* c, i64 ldc, const Epilogue& epilogue) {
  const i64 kc_max = balanced_block(k, KC, 1);
  float* bt = trans_b ? tl_pack_b.get(static_cast<std::size_t>(kc_max * n)) : nullptr;
  const auto& table = trans_a ? direct_table_ta : direct_table;
  for (i64 pc = 0; pc < k; pc += kc_max) {
    const i64 kc = std::min(kc_max, k - pc);
    const float beta_block = pc == 0 ? beta : 1.0f;
    const bool last_k_block = pc + kc == k;
    const float* pb = b + pc * ldb;
    i64 ld_pb = ldb;
    if (trans_b) {  // B(p, j) = b[j * ldb + p]: copy this k block as kc rows of n
      transpose_b_avx2(b + pc, ldb, kc, n, bt);
      pb = bt;
      ld_pb = n;
    }
    const float* pa = trans_a ? a + pc * lda : a + pc;
    for (i64 jr = 0; jr < n; jr += DIRECT_NR) {
      const i64 nr = std::min<i64>(DIRECT_NR, n - jr);
      const i64 nv = (nr + 7) / 8;
      const bool masked = nr % 8 != 0;
      alignas(32) std::int32_t lanes[8];
      for (int l = 0; l < 8; ++l) lanes[l] = l < nr - 8 * (nv - 1) ? -1 : 0;
      for (i64 ir = 0; ir < m; ir += DIRECT_MR) {
        const i64 mr = std::min<i64>(DIRECT_MR, m - ir);
        float* tile_c = c + ir * ldc + jr;
        table[masked][mr - 1][nv - 1](kc, trans_a ? pa + ir : pa + ir * lda, lda, pb + jr, ld_pb, tile_c, ldc, alpha,
                                      beta_block, lanes);
        if (last_k_block) apply_epilogue(epilogue, tile_c, ldc, mr, nr, jr);
      }
    }
  }
}
#endif  // LADON_X86

// Requires m, n, k > 0 and alpha != 0.
template <class K>
LADON_INLINE void gemm_driver(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda,
                              const float* b, i64 ldb, float beta, float* c, i64 ldc, const Epilogue& epilogue) {
  constexpr int MR = K::MR, NR = K::NR;
  const i64 kc_max = balanced_block(k, K::KC, 1);
  const i64 mc_max = balanced_block(m, K::MC, MR);
  const i64 nc_max = balanced_block(n, K::NC, NR);
  float* pack_a_buf = tl_pack_a.get(static_cast<std::size_t>(round_up(mc_max, MR) * kc_max));
  float* pack_b_buf = tl_pack_b.get(static_cast<std::size_t>(round_up(nc_max, NR) * kc_max));

  for (i64 jc = 0; jc < n; jc += nc_max) {
    const i64 nc = std::min(nc_max, n - jc);
    for (i64 pc = 0; pc < k; pc += kc_max) {
      const i64 kc = std::min(kc_max, k - pc);
      const float beta_block = pc == 0 ? beta : 1.0f;
      const bool last_k_block = pc + kc == k;
      K::pack_b(trans_b, trans_b ? b + jc * ldb + pc : b + pc * ldb + jc, ldb, kc, nc, pack_b_buf);
      for (i64 ic = 0; ic < m; ic += mc_max) {
        const i64 mc = std::min(mc_max, m - ic);
        K::pack_a(trans_a, trans_a ? a + pc * lda + ic : a + ic * lda + pc, lda, mc, kc, pack_a_buf);
        for (i64 jr = 0; jr < nc; jr += NR) {
          const i64 nr = std::min<i64>(NR, nc - jr);
          const float* pb = pack_b_buf + jr * kc;
          for (i64 ir = 0; ir < mc; ir += MR) {
            const i64 mr = std::min<i64>(MR, mc - ir);
            float* tile_c = c + (ic + ir) * ldc + jc + jr;
            K::tile(kc, pack_a_buf + ir * kc, pb, tile_c, ldc, alpha, beta_block, mr, nr);
            if (last_k_block) apply_epilogue(epilogue, tile_c, ldc, mr, nr, jc + jr);
          }
        }
      }
    }
  }
}

#if LADON_X86
// Whether the unpacked path is faster than packing, measured on Zen 5 (see bench/README.md): it wins
// while the part of A one column of tiles walks stays in L2 and the 32-wide B panel is reused from
// L1/L2; packing wins once A spills from L2 (1024^3) or transposed A rows are long.
bool prefer_direct(bool trans_a, bool trans_b, i64 m, i64 n, i64 k) {
  // With k > 512 the 32-wide B panel (k x 128 bytes) no longer stays near L1 and the unpacked path
  // becomes erratic (183-213 GFLOP/s at 256x512x784 against a steady 198 packed). Transposed A
  // (one strided row of A per k step) loses to packing already at 512^3 (191 vs 203).
  if (trans_b || k > 512 || m * k > (trans_a ? i64{1} << 17 : i64{1} << 18)) return false;
  // On Intel the unpacked path also needs B's rows close enough: the panel walks k rows 4n bytes
  // apart, and at n = 2048 (8 KB) they fall into so few L1 sets that it waits on L2. Intel Xeon
  // (AVX-512), one thread, unpacked / packed: 0.47-0.56x at n = 2048 with k = 512 (the MMoE's
  // 512 x 2048 x 512 experts, 75 against 159 GFLOP/s), 0.68-0.81x at n = 2048 with k <= 256;
  // 0.86-1.10x at n = 512, where on two threads (each packing all of B for its rows) unpacked wins:
  // the mlp b256 step 1.25x slower packed. Zen 5 keeps it at 512 x 2048 x 512 (227 against 210).
  static const bool intel = [] {
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") != 0;
  }();
  return !intel || n <= 512;
}

template <bool ALLOW_DIRECT>
LADON_TARGET_AVX512 void gemm_avx512(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float* a,
                                     i64 lda, const float* b, i64 ldb, float beta, float* c, i64 ldc,
                                     const Epilogue& epilogue) {
  if (ALLOW_DIRECT && prefer_direct(trans_a, trans_b, m, n, k)) {
    KernelAvx512::direct(trans_a, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
    return;
  }
  gemm_driver<KernelAvx512>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
}

// Whether the AVX2 unpacked path beats packing, measured on Zen 3 (bench/README.md): when one operand
// is a handful of values (m * k or m * n at most kDirectAvx2Small), packing and the 6 x 16 tile's
// waste cost more than the product (an MMoE's [2, 4] x [4, 64] expert mixture: 7x faster).
constexpr i64 kDirectAvx2Small = 64;
bool prefer_direct_avx2(i64 m, i64 n, i64 k) { return m * k <= kDirectAvx2Small || m * n <= kDirectAvx2Small; }

template <bool ALLOW_DIRECT>
LADON_TARGET_AVX2 void gemm_avx2(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda,
                                 const float* b, i64 ldb, float beta, float* c, i64 ldc, const Epilogue& epilogue) {
  if (ALLOW_DIRECT && prefer_direct_avx2(m, n, k)) {
    KernelAvx2::direct(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
    return;
  }
  gemm_driver<KernelAvx2>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
}
#endif  // LADON_X86

void gemm_scalar(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda, const float* b,
                 i64 ldb, float beta, float* c, i64 ldc, const Epilogue& epilogue) {
  gemm_driver<KernelScalar>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
}

using GemmFn = void (*)(bool, bool, i64, i64, i64, float, const float*, i64, const float*, i64, float, float*, i64,
                        const Epilogue&);

GemmFn gemm_fn(Isa isa, bool allow_unpacked = true) {
#if LADON_X86
  switch (isa) {
    case Isa::avx512_bf16:  // an FP32 product: the AVX-512 kernel
    case Isa::avx512:
      return allow_unpacked ? &gemm_avx512<true> : &gemm_avx512<false>;
    case Isa::avx2:
      return allow_unpacked ? &gemm_avx2<true> : &gemm_avx2<false>;
    case Isa::baseline:
      break;
  }
#else
  (void)isa;  // elsewhere only the baseline exists (isa_supported says so)
  (void)allow_unpacked;
#endif
  return &gemm_scalar;
}

void dispatch(GemmFn fn, bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda,
              const float* b, i64 ldb, float beta, float* c, i64 ldc, const Epilogue& epilogue) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ldc);
    apply_epilogue(epilogue, c, ldc, m, n, 0);
    return;
  }
  fn(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
           std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc,
           const Epilogue& epilogue) {
  dispatch(gemm_fn(active_isa()), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
}

void sgemm_scalar(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                  const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                  std::int64_t ldc, const Epilogue& epilogue) {
  dispatch(&gemm_scalar, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
}

void sgemm_with_isa(Isa isa, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                    const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                    std::int64_t ldc, bool allow_unpacked, const Epilogue& epilogue) {
  dispatch(gemm_fn(isa, allow_unpacked), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
}

void sgemm_reference(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                     const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                     std::int64_t ldc, const Epilogue& epilogue) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    // BLAS leaves C untouched only for beta == 1; make k == 0 mean an empty sum everywhere.
    scale_c(m, n, beta, c, ldc);
    apply_epilogue(epilogue, c, ldc, m, n, 0);
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
  apply_epilogue(epilogue, c, ldc, m, n, 0);  // a separate pass: OpenBLAS has no epilogue
}

}  // namespace ladon::kernels
