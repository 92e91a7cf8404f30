// bf16 GEMM in the BLIS/GotoBLAS structure of gemm.cpp (same loop nest and cache blocking), with
// operands packed as bfloat16 k-pairs: one 32-bit word holds (X(p), X(p+1)) in its low and high
// halves, the layout vdpbf16ps multiplies. Packed A panels: word[q * MR + i] = (A(i,2q), A(i,2q+1));
// packed B panels: word[q * NR + j] = (B(2q,j), B(2q+1,j)); an odd k is padded with zeros on both
// sides (0 * 0, never 0 * inf). Packing converts float32 to bf16 on the way (float_to_bf16), so no
// bf16 copy of A or B ever exists in memory. The kernels of the AVX512_BF16 level pack with the
// CPU's vcvtne2ps2bf16, which rounds as float_to_bf16 does (one instruction for 32 floats); the
// emulation packs with float_to_bf16 itself.
//
// Native tile (AVX512_BF16): 14 x 32, 28 zmm accumulators (vdpbf16ps issues two per cycle at about
// 6 cycles latency on Zen 5: at least 12 independent chains keep it busy), two B vectors and one
// broadcast A pair per step. KC = 768 k values make the same bytes per panel as the FP32 GEMM's 384
// (a 14 x 768 A micro-panel is 21 KB, the 768 x 32 B micro-panel 48 KB, the 280 x 768 A block
// 420 KB in L2). Edge tiles run a kernel instantiated for the remaining rows, with masked stores.
//
// Emulated tile (every other level): the same words, unpacked to float32 and summed in exactly the
// order and with the flushing of vdpbf16ps, so the two variants agree to rounding (bit for bit on
// Zen 5). It is there so bf16 code runs everywhere, not to be fast.
#include "gemm_bf16.h"

#if LADON_X86
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <array>
#include <bit>
#include <cfloat>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "gemm_internal.h"

namespace ladon::kernels {

namespace {

using namespace detail;  // the pieces shared with the FP32 GEMM (gemm_internal.h)
using u32 = std::uint32_t;

constexpr int kMR = 14, kNR = 32;
constexpr i64 kMC = 280, kKC = 768, kNC = 4096;

// ---------------------------------------------------------------------------------------------
// Conversion. Scalar: branch-free integer rounding (add half an ulp of bf16, plus one when the kept
// lsb is odd, and truncate). Vector (AVX-512F): the same operations lane-wise.
// ---------------------------------------------------------------------------------------------

LADON_INLINE u32 bf16_bits(u32 u) {
  const u32 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const u32 quiet_nan = (u >> 16) | 0x40u;
  const u32 signed_zero = (u >> 16) & 0x8000u;
  const u32 r = (u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded;
  return (u & 0x7f800000u) == 0 ? signed_zero : r;
}

LADON_INLINE u32 bf16_of(float x) { return bf16_bits(std::bit_cast<u32>(x)); }
LADON_INLINE float low_half(u32 w) { return std::bit_cast<float>(w << 16); }
LADON_INLINE float high_half(u32 w) { return std::bit_cast<float>(w & 0xffff0000u); }

// GCC 12 flags the placeholder inside _mm512_undefined_* (used by shifts and shuffles) as
// maybe-uninitialized; a known false positive (as in gemm_internal.h). Until the micro-kernels.
#if LADON_X86 && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif


// ---------------------------------------------------------------------------------------------
// Packing. A panel of W words per k-pair, `valid` <= W of them real (the rest zero), from a source
// whose element (x, p) (x: the panel's row of A or column of B, p: k) is at
//   across: src[p * ld + x]   (A transposed, B untransposed: x runs along memory)
//   along:  src[x * ld + p]   (A untransposed, B transposed: p runs along memory)
// ---------------------------------------------------------------------------------------------

LADON_INLINE void pack_across_generic(const float* src, i64 ld, int valid, i64 kc, int w, u32* __restrict dst) {
  for (i64 q = 0; 2 * q < kc; ++q) {
    const float* r0 = src + 2 * q * ld;
    const float* r1 = src + (2 * q + 1) * ld;
    const bool has_high = 2 * q + 1 < kc;
    for (int x = 0; x < w; ++x) {
      const u32 lo = x < valid ? bf16_of(r0[x]) : 0u;
      const u32 hi = x < valid && has_high ? bf16_of(r1[x]) : 0u;
      dst[q * w + x] = lo | hi << 16;
    }
  }
}

// Writes words for x < count at dst[q * stride + x], from k-pair q_begin on.
LADON_INLINE void pack_along_generic(const float* src, i64 ld, int valid, i64 kc, int count, int stride, i64 q_begin,
                                     u32* __restrict dst) {
  for (i64 q = q_begin; 2 * q < kc; ++q)
    for (int x = 0; x < count; ++x) {
      const float* row = src + x * ld;
      const u32 lo = x < valid ? bf16_of(row[2 * q]) : 0u;
      const u32 hi = x < valid && 2 * q + 1 < kc ? bf16_of(row[2 * q + 1]) : 0u;
      dst[q * stride + x] = lo | hi << 16;
    }
}

#if LADON_X86
// A strip of panels side by side in the source (panel s's x' is x = s * w + x', valid of the
// strip's x real), packed panel after panel (panel s at dst + s * kq * w). The loop takes one
// k-pair of rows at a time across a group of panels, so each source row is read as one contiguous
// run of about 1 KB, and prefetches the rows kPrefetchAhead k-pairs down: the hardware prefetchers
// do not follow a walk down rows 2-8 KB apart, and these loads waited on L3 or memory. On Zen 5 this
// packing was 16% of an mmoe b1024 bf16 step (perf), one panel at a time or in strips alike; with
// the prefetches it is 5%.
constexpr i64 kPrefetchAhead = 4;  // k-pairs (across), blocks of 16 k-pairs (along)
// kq_stride >= ceil(kc / 2): the k-pairs between two panels' starts (the AMX kernel pads to whole tiles).
LADON_TARGET_AVX512_BF16 void pack_across_bf16(const float* src, i64 ld, i64 valid, i64 kc, int w, i64 panels,
                                               i64 kq_stride, u32* dst) {
  const i64 kq = ceil_div(kc, 2);
  const i64 group = std::max<i64>(1, 256 / w);  // panels per pass over a pair of rows
  for (i64 s0 = 0; s0 < panels; s0 += group) {
    const i64 s1 = std::min(panels, s0 + group);
    for (i64 q = 0; q < kq; ++q) {
      const float* r0 = src + 2 * q * ld;
      const float* r1 = src + (2 * q + 1) * ld;
      const bool has_high = 2 * q + 1 < kc;
      for (i64 s = s0; s < s1; ++s)
        for (int x0 = 0; x0 < w; x0 += 16) {
          const i64 x = s * w + x0;
          // The same columns kPrefetchAhead k-pairs down (past kc too: prefetches never fault).
          _mm_prefetch(reinterpret_cast<const char*>(r0 + 2 * kPrefetchAhead * ld + x), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(r1 + 2 * kPrefetchAhead * ld + x), _MM_HINT_T0);
          const __mmask16 load_mask = first_lanes16(std::clamp<i64>(valid - x, 0, 16));
          const __m512 lo = _mm512_maskz_loadu_ps(load_mask, r0 + x);
          const __m512 hi = has_high ? _mm512_maskz_loadu_ps(load_mask, r1 + x) : _mm512_setzero_ps();
          _mm512_mask_storeu_epi32(dst + (s * kq_stride + q) * w + x0, first_lanes16(w - x0), bf16_pair_words(lo, hi));
        }
    }
  }
}

// 16 k-pairs at a time: each of up to 16 rows converts 32 consecutive floats into 16 words (one
// vcvtne2ps2bf16: its 16-bit lanes are the floats in order, so 32-bit lane q is k-pair q), and a
// 16 x 16 transpose turns rows into the packed panel's k-pair-major order.
LADON_TARGET_AVX512_BF16 void pack_along_bf16(const float* src, i64 ld, int valid, i64 kc, int w, u32* dst) {
  const i64 full_q = kc / 32 * 16;  // k-pairs covered by whole 32-float loads
  for (int x0 = 0; x0 < w; x0 += 16) {
    const int lanes = std::min(16, w - x0), real = std::clamp(valid - x0, 0, 16);
    const auto store_mask = static_cast<__mmask16>((1u << lanes) - 1u);
    for (i64 q0 = 0; q0 < full_q; q0 += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        if (i < real) {
          const float* row = src + (x0 + i) * ld + 2 * q0;
          // This row kPrefetchAhead blocks on (past its end too: prefetches never fault). Zen 5, A/B
          // median of 3: the mlp b256 bf16 step 1.04x faster, mmoe b1024 unchanged.
          _mm_prefetch(reinterpret_cast<const char*>(row + 32 * kPrefetchAhead), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(row + 32 * kPrefetchAhead + 16), _MM_HINT_T0);
          r[i] = reinterpret_cast<__m512>(_mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + 16), _mm512_loadu_ps(row)));
        } else {
          r[i] = _mm512_setzero_ps();
        }
      }
      transpose16x16(r);
      for (int j = 0; j < 16; ++j)
        _mm512_mask_storeu_ps(reinterpret_cast<float*>(dst + (q0 + j) * w + x0), store_mask, r[j]);
    }
    // The last k values (fewer than 32) one word at a time, for this block of rows.
    pack_along_generic(src + x0 * ld, ld, real, kc, lanes, w, full_q, dst + x0);
  }
}
#endif  // LADON_X86
#if LADON_X86 && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// ---------------------------------------------------------------------------------------------
// Micro-kernels. Contract: c[i*ldc + j] (i < mr, j < nr) = alpha * sum_p A(i,p) B(p,j) + beta * c,
// beta == 0 never reads c; pa, pb are 64-byte aligned packed panels of kq k-pairs.
// ---------------------------------------------------------------------------------------------

#if LADON_X86
template <int MR_EFF, int NV, bool MASKED>
LADON_TARGET_AVX512_BF16 void ukernel_bf16(i64 kq, const u32* __restrict pa, const u32* __restrict pb, float* c,
                                           i64 ldc, float alpha, float beta, __mmask16 last_mask) {
  __m512 acc[MR_EFF][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR_EFF; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
#pragma GCC unroll 32
  for (int i = 0; i < MR_EFF; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 2
  for (i64 q = 0; q < kq; ++q) {
    __m512bh bv[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) bv[j] = reinterpret_cast<__m512bh>(_mm512_load_si512(pb + 16 * j));
#pragma GCC unroll 32
    for (int i = 0; i < MR_EFF; ++i) {
      const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(pa[i])));
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
    }
    pa += kMR;
    pb += kNR;
  }
  store_tile_avx512<MR_EFF, NV, MASKED>(acc, c, ldc, alpha, beta, last_mask);
}

using TileFn = void (*)(i64, const u32*, const u32*, float*, i64, float, float, __mmask16);

template <std::size_t... I>
constexpr auto bf16_edge_table(std::index_sequence<I...>) {
  return std::array<std::array<TileFn, 2>, sizeof...(I)>{
      {{&ukernel_bf16<static_cast<int>(I) + 1, 1, true>, &ukernel_bf16<static_cast<int>(I) + 1, 2, true>}...}};
}

// GCC 12's _mm512_undefined_* false positive again (the shifts below), as for the packing above.
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// The FMA tile: the emulation's sums at nearly the FP32 GEMM's speed. B stays packed as words and
// is split into its two halves in registers (4 shifts and ands per k-pair for 56 FMAs); A comes
// split (KernelFma::pack_a): per k-pair its 14 high halves (odd p), then its 14 low halves, as
// floats, broadcast straight from memory (splitting A in the loop would cost 28 operations per
// k-pair, as many as half the FMAs). Each accumulator takes the high product then the low one,
// each rounded once (a product of two bf16 values is exact in float32), and denormal sums flush to
// zero through MXCSR's flush-to-zero bit, set for the k loop only: the emulation's steps exactly,
// in the same cache blocks (KC = 768), so the two agree bit for bit. (Measured on the Intel Xeon:
// B split into floats at packing time too, or KC = 384, were no faster within the noise, and the
// smaller KC sums in other blocks.)
template <int MR_EFF, int NV, bool MASKED>
LADON_TARGET_AVX512 void ukernel_fma(i64 kq, const float* __restrict pa, const u32* __restrict pb, float* c, i64 ldc,
                                     float alpha, float beta, __mmask16 last_mask) {
  __m512 acc[MR_EFF][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR_EFF; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(csr | _MM_FLUSH_ZERO_ON);
  const __m512i high_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (i64 q = 0; q < kq; ++q) {
    __m512 b_hi[NV], b_lo[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      const __m512i w = _mm512_load_si512(pb + 16 * j);
      b_hi[j] = _mm512_castsi512_ps(_mm512_and_si512(w, high_mask));
      b_lo[j] = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
    }
#pragma GCC unroll 32
    for (int i = 0; i < MR_EFF; ++i) {
      const __m512 a_hi = _mm512_set1_ps(pa[i]), a_lo = _mm512_set1_ps(pa[kMR + i]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) {
        acc[i][j] = _mm512_fmadd_ps(a_hi, b_hi[j], acc[i][j]);
        acc[i][j] = _mm512_fmadd_ps(a_lo, b_lo[j], acc[i][j]);
      }
    }
    pa += 2 * kMR;
    pb += kNR;
  }
  _mm_setcsr(csr);
  store_tile_avx512<MR_EFF, NV, MASKED>(acc, c, ldc, alpha, beta, last_mask);
}

using FmaTileFn = void (*)(i64, const float*, const u32*, float*, i64, float, float, __mmask16);

template <std::size_t... I>
constexpr auto fma_edge_table(std::index_sequence<I...>) {
  return std::array<std::array<FmaTileFn, 2>, sizeof...(I)>{
      {{&ukernel_fma<static_cast<int>(I) + 1, 1, true>, &ukernel_fma<static_cast<int>(I) + 1, 2, true>}...}};
}

// One packed micro-panel of kq k-pairs of W words each (w[q * W + x]) split into the FMA tile's
// floats: f[q * 2W + x] = the high half (odd p), f[q * 2W + W + x] = the low half.
template <int W>
LADON_TARGET_AVX512 void split_panel(const u32* words, i64 kq, float* dst) {
  const __m512i high_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (i64 q = 0; q < kq; ++q)
    for (int x0 = 0; x0 < W; x0 += 16) {
      const __mmask16 lanes = first_lanes16(W - x0);
      const __m512i w = _mm512_maskz_loadu_epi32(lanes, words + q * W + x0);
      _mm512_mask_storeu_ps(dst + q * 2 * W + x0, lanes, _mm512_castsi512_ps(_mm512_and_si512(w, high_mask)));
      _mm512_mask_storeu_ps(dst + q * 2 * W + W + x0, lanes, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // LADON_X86

LADON_INLINE float flush_denormal(float x) { return std::fabs(x) < FLT_MIN ? 0.0f * x : x; }

// The emulation: float32 multiply-adds on the unpacked halves, high (odd p) first, flushing
// denormal sums as vdpbf16ps does. Products of two bf16 values are exact in float32, so fused or
// not, each step rounds once, like the instruction.
LADON_INLINE void tile_emulated(i64 kq, const u32* __restrict pa, const u32* __restrict pb, float* c, i64 ldc,
                                float alpha, float beta, i64 mr, i64 nr) {
  float acc[kMR][kNR] = {};
  for (i64 q = 0; q < kq; ++q) {
    for (int i = 0; i < kMR; ++i) {
      const float a_hi = high_half(pa[i]), a_lo = low_half(pa[i]);
      for (int j = 0; j < kNR; ++j) {
        const float t = flush_denormal(acc[i][j] + a_hi * high_half(pb[j]));
        acc[i][j] = flush_denormal(t + a_lo * low_half(pb[j]));
      }
    }
    pa += kMR;
    pb += kNR;
  }
  for (i64 i = 0; i < mr; ++i)
    for (i64 j = 0; j < nr; ++j) {
      float& out = c[i * ldc + j];
      out = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * out;
    }
}

// ---------------------------------------------------------------------------------------------
// One struct per variant: the tile and the packing (A: rows are x; B: columns are x).
// ---------------------------------------------------------------------------------------------

// NATIVE: the vector packing of the AVX512_BF16 level; otherwise float_to_bf16 element by element.
template <bool NATIVE>
struct Packing {
  // The register tile (rows of A x columns of B) and the cache blocks of m and k the driver uses.
  static constexpr i64 kTileRows = kMR, kTileCols = kNR, kBlockM = kMC, kBlockK = kKC;
  static constexpr i64 kAWords = 1;  // 32-bit values per row and k-pair in the packed A panel
  static constexpr i64 padded_kq(i64 kq) { return kq; }  // k-pairs a packed panel holds
  static void pack_a(bool trans, const float* a, i64 lda, i64 mc, i64 kc, u32* dst) {
    pack_strip(!trans, a, lda, mc, kc, kMR, dst);
  }
  static void pack_b(bool trans, const float* b, i64 ldb, i64 kc, i64 nc, u32* dst) {
    pack_strip(trans, b, ldb, nc, kc, kNR, dst);
  }
  // `extent` rows of A or columns of B as panels of w, panel s at dst + s * kq * w.
  static void pack_strip(bool along, const float* src, i64 ld, i64 extent, i64 kc, int w, u32* dst) {
    const i64 kq = ceil_div(kc, 2), panels = ceil_div(extent, w);
#if LADON_X86
    if constexpr (NATIVE) {
      if (!along) return pack_across_bf16(src, ld, extent, kc, w, panels, kq, dst);
    }
#endif
    for (i64 s = 0; s < panels; ++s) {
      const int valid = static_cast<int>(std::min<i64>(w, extent - s * w));
      pack_panel(along, along ? src + s * w * ld : src + s * w, ld, valid, kc, w, dst + s * kq * w);
    }
  }
  static void pack_panel(bool along, const float* src, i64 ld, int valid, i64 kc, int w, u32* dst) {
#if LADON_X86
    if constexpr (NATIVE) {
      return along ? pack_along_bf16(src, ld, valid, kc, w, dst)
                   : pack_across_bf16(src, ld, valid, kc, w, 1, ceil_div(kc, 2), dst);
    }
#endif
    along ? pack_along_generic(src, ld, valid, kc, w, w, 0, dst) : pack_across_generic(src, ld, valid, kc, w, dst);
  }
};

#if LADON_X86
// One mr x nr tile of C: the full 14 x 32 kernel, or the edge table's kernel for a partial tile
// (its last vector column masked). A is the packed A panel's element type (words, or the FMA
// kernel's split floats).
template <auto Full, class Table, class A>
void run_tile(const Table& edge, i64 kq, const A* pa, const u32* pb, float* c, i64 ldc, float alpha, float beta, i64 mr,
              i64 nr) {
  if (mr == kMR && nr == kNR) return Full(kq, pa, pb, c, ldc, alpha, beta, 0xffff);
  const i64 nv = ceil_div(nr, 16);
  edge[mr - 1][nv - 1](kq, pa, pb, c, ldc, alpha, beta, first_lanes16(nr - 16 * (nv - 1)));
}

struct KernelNative : Packing<true> {
  static constexpr auto edge = bf16_edge_table(std::make_index_sequence<kMR>{});
  static void tile(i64 kq, const u32* pa, const u32* pb, float* c, i64 ldc, float alpha, float beta, i64 mr, i64 nr) {
    run_tile<&ukernel_bf16<kMR, 2, false>>(edge, kq, pa, pb, c, ldc, alpha, beta, mr, nr);
  }
};

thread_local PackBuffer<u32> tl_split_scratch;  // one A micro-panel of words, before split_panel

// Packs as the dot kernel does; A one micro-panel at a time, each then split into its halves as
// floats (split_panel): A's panel is reused by every column tile, so the split is paid once per
// block, not in the k loop.
struct KernelFma : Packing<true> {
  static constexpr i64 kAWords = 2;  // 32-bit values per row and k-pair in the packed A panel
  static constexpr auto edge = fma_edge_table(std::make_index_sequence<kMR>{});
  static void pack_a(bool trans, const float* a, i64 lda, i64 mc, i64 kc, u32* dst) {
    const i64 kq = ceil_div(kc, 2);
    u32* words = tl_split_scratch.get(static_cast<std::size_t>(kq * kMR));
    for (i64 ir = 0; ir < mc; ir += kMR) {
      const int mr = static_cast<int>(std::min<i64>(kMR, mc - ir));
      pack_panel(!trans, trans ? a + ir : a + ir * lda, lda, mr, kc, kMR, words);
      split_panel<kMR>(words, kq, reinterpret_cast<float*>(dst + ir * kq * kAWords));
    }
  }
  static void tile(i64 kq, const u32* pa, const u32* pb, float* c, i64 ldc, float alpha, float beta, i64 mr, i64 nr) {
    run_tile<&ukernel_fma<kMR, 2, false>>(edge, kq, reinterpret_cast<const float*>(pa), pb, c, ldc, alpha, beta, mr,
                                          nr);
  }
};

// ---------------------------------------------------------------------------------------------
// AMX (Sapphire Rapids on). Eight tile registers of 16 rows x 64 bytes; tdpbf16ps multiplies a
// 16 x 32 bf16 tile of A by a 16 k-pair x 16 tile of B words into 16 x 16 floats, 16 k-pairs deep
// (16384 flops per instruction: 3.1 TFLOP/s on one core of the Intel Xeon, register-only loop,
// against 234 GFLOP/s of FMAs). A 32 x 32 block of C is four accumulator tiles (0-3), fed by two A
// tiles (4, 5: rows 0-15, 16-31) and two B tiles (6, 7: columns 0-15, 16-31), each loaded tile
// used twice. The B panel is the other kernels' (word[q * 32 + j]: a B tile is 16 of its rows,
// 128 bytes apart); the A panel is per block of 16 k-pairs, 32 rows of 16 words
// (word[(b * 32 + i) * 16 + q % 16]: an A tile is 16 of its rows, 64 bytes apart). Both are padded
// with zero words to a whole number of 16-k-pair blocks.
//
// Its sums are not the emulation's: tdpbf16ps adds its 32 products into the accumulator in an order
// and precision the SDM leaves to the implementation (on the Intel Xeon its results matched no
// sequential float32 order, and were closer to the exact sums than the emulation's). The bound is
// float32 summation's, k 2^-24 sum |A||B| (test_gemm_bf16.cpp). Denormal results flush to zero.
// ---------------------------------------------------------------------------------------------

#define LADON_TARGET_AMX __attribute__((target("avx512f,avx512vl,avx512bw,avx512bf16,fma,amx-tile,amx-bf16")))

constexpr i64 kAmxKq = 16;  // k-pairs of one tile

// The tile shapes, loaded before each product (a thread's tile configuration is its own, and other
// code on the thread, oneDNN say, may have loaded another).
struct alignas(64) TileConfig {
  std::uint8_t palette = 1, start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {};
  std::uint8_t rows[16] = {};
  TileConfig() {
    for (int t = 0; t < 8; ++t) bytes_per_row[t] = 64, rows[t] = 16;
  }
};

// GCC 12's _mm512_undefined_* false positive (the conversions' shuffles), as for the packing above.
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// 32 floats (x[0..n), zero past n) as 16 words (x[2q], x[2q+1]): vcvtne2ps2bf16 rounds as float_to_bf16.
LADON_INLINE LADON_TARGET_AMX __m512i bf16_words32(const float* x, i64 n) {
  const __m512 lo = _mm512_maskz_loadu_ps(first_lanes16(std::clamp<i64>(n, 0, 16)), x);
  const __m512 hi = _mm512_maskz_loadu_ps(first_lanes16(std::clamp<i64>(n - 16, 0, 16)), x + 16);
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}

// The A panel of `valid` rows (the rest zero) from A untransposed (row x at src + x * ld, k along it).
LADON_TARGET_AMX void pack_a_amx_along(const float* src, i64 ld, i64 valid, i64 kc, u32* dst) {
  const i64 blocks = ceil_div(kc, 2 * kAmxKq);
  for (i64 i = 0; i < 32; ++i)
    for (i64 b = 0; b < blocks; ++b) {
      const __m512i w = i < valid ? bf16_words32(src + i * ld + 32 * b, kc - 32 * b) : _mm512_setzero_si512();
      _mm512_store_si512(dst + (b * 32 + i) * kAmxKq, w);
    }
}

// The A panel from A transposed (k-row p at src + p * ld, the panel's rows along it): per 16 rows
// and block, 16 k-pairs of words made across the rows, then a 16 x 16 transpose into rows.
LADON_TARGET_AMX void pack_a_amx_across(const float* src, i64 ld, i64 valid, i64 kc, u32* dst) {
  const i64 blocks = ceil_div(kc, 2 * kAmxKq);
  for (i64 x0 = 0; x0 < 32; x0 += 16) {
    const __mmask16 lanes = first_lanes16(std::clamp<i64>(valid - x0, 0, 16));
    for (i64 b = 0; b < blocks; ++b) {
      __m512 r[16];
      for (i64 q = 0; q < kAmxKq; ++q) {
        const i64 p = 2 * (b * kAmxKq + q);
        const __m512 even = p < kc ? _mm512_maskz_loadu_ps(lanes, src + p * ld + x0) : _mm512_setzero_ps();
        const __m512 odd = p + 1 < kc ? _mm512_maskz_loadu_ps(lanes, src + (p + 1) * ld + x0) : _mm512_setzero_ps();
        r[q] = _mm512_castsi512_ps(bf16_pair_words(even, odd));  // (even row, odd row) pairs
      }
      transpose16x16(r);
      for (i64 x = 0; x < 16; ++x) _mm512_store_ps(reinterpret_cast<float*>(dst + (b * 32 + x0 + x) * kAmxKq), r[x]);
    }
  }
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// One 32 x 32 block of C (the top-left mr x nr of it real) over kq k-pairs (a multiple of 16).
// ROWS2 / COLS2: the second row / column of tiles is computed (mr > 16 / nr > 16).
template <bool ROWS2, bool COLS2>
LADON_TARGET_AMX void tile_amx(i64 kq, const u32* pa, const u32* pb, float* c, i64 ldc, float alpha, float beta,
                               i64 mr, i64 nr) {
  _tile_zero(0);
  if constexpr (COLS2) _tile_zero(1);
  if constexpr (ROWS2) _tile_zero(2);
  if constexpr (ROWS2 && COLS2) _tile_zero(3);
  for (i64 q = 0; q < kq; q += kAmxKq) {
    const u32* a_block = pa + q * 32;  // 32 rows x 16 words
    const u32* b_block = pb + q * 32;  // 16 k-pairs x 32 words
    _tile_loadd(4, a_block, 64);
    if constexpr (ROWS2) _tile_loadd(5, a_block + 16 * kAmxKq, 64);
    _tile_loadd(6, b_block, 128);
    if constexpr (COLS2) _tile_loadd(7, b_block + 16, 128);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (COLS2) _tile_dpbf16ps(1, 4, 7);
    if constexpr (ROWS2) _tile_dpbf16ps(2, 5, 6);
    if constexpr (ROWS2 && COLS2) _tile_dpbf16ps(3, 5, 7);
  }
  if (alpha == 1.0f && beta == 0.0f && mr == 32 && nr == 32) {  // straight into C
    const auto stride = static_cast<long>(ldc * sizeof(float));
    _tile_stored(0, c, stride);
    if constexpr (COLS2) _tile_stored(1, c + 16, stride);
    if constexpr (ROWS2) _tile_stored(2, c + 16 * ldc, stride);
    if constexpr (ROWS2 && COLS2) _tile_stored(3, c + 16 * ldc + 16, stride);
    return;
  }
  alignas(64) float acc[32][32];
  _tile_stored(0, &acc[0][0], 128);
  if constexpr (COLS2) _tile_stored(1, &acc[0][16], 128);
  if constexpr (ROWS2) _tile_stored(2, &acc[16][0], 128);
  if constexpr (ROWS2 && COLS2) _tile_stored(3, &acc[16][16], 128);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (i64 i = 0; i < mr; ++i)
    for (i64 j = 0; j < nr; j += 16) {
      const __mmask16 lanes = first_lanes16(nr - j);
      float* out = c + i * ldc + j;
      __m512 r = _mm512_mul_ps(va, _mm512_load_ps(&acc[i][j]));
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(lanes, out), r);
      _mm512_mask_storeu_ps(out, lanes, r);
    }
}

struct KernelAmx {
  static constexpr i64 kTileRows = 32, kTileCols = 32, kBlockM = 256, kBlockK = 512;
  static constexpr i64 kAWords = 1;
  static constexpr i64 padded_kq(i64 kq) { return round_up(kq, kAmxKq); }
  static void pack_a(bool trans, const float* a, i64 lda, i64 mc, i64 kc, u32* dst) {
    const i64 kq = padded_kq(ceil_div(kc, 2));
    for (i64 ir = 0; ir < mc; ir += 32) {
      const i64 valid = std::min<i64>(32, mc - ir);
      u32* panel = dst + ir * kq;
      trans ? pack_a_amx_across(a + ir, lda, valid, kc, panel) : pack_a_amx_along(a + ir * lda, lda, valid, kc, panel);
    }
  }
  static void pack_b(bool trans, const float* b, i64 ldb, i64 kc, i64 nc, u32* dst) {
    const i64 kq = ceil_div(kc, 2), kq_padded = padded_kq(kq), panels = ceil_div(nc, kNR);
    if (trans) {
      for (i64 s = 0; s < panels; ++s)
        pack_along_bf16(b + s * kNR * ldb, ldb, static_cast<int>(std::min<i64>(kNR, nc - s * kNR)), kc, kNR,
                        dst + s * kq_padded * kNR);
    } else {
      pack_across_bf16(b, ldb, nc, kc, kNR, panels, kq_padded, dst);
    }
    for (i64 s = 0; s < panels; ++s)  // the padding k-pairs: 0 * 0 products
      std::fill(dst + (s * kq_padded + kq) * kNR, dst + (s + 1) * kq_padded * kNR, 0u);
  }
  static void tile(i64 kq, const u32* pa, const u32* pb, float* c, i64 ldc, float alpha, float beta, i64 mr, i64 nr) {
    if (mr > 16)
      nr > 16 ? tile_amx<true, true>(kq, pa, pb, c, ldc, alpha, beta, mr, nr)
              : tile_amx<true, false>(kq, pa, pb, c, ldc, alpha, beta, mr, nr);
    else
      nr > 16 ? tile_amx<false, true>(kq, pa, pb, c, ldc, alpha, beta, mr, nr)
              : tile_amx<false, false>(kq, pa, pb, c, ldc, alpha, beta, mr, nr);
  }
};
#endif  // LADON_X86

struct KernelEmulated : Packing<false> {
  LADON_INLINE static void tile(i64 kq, const u32* pa, const u32* pb, float* c, i64 ldc, float alpha, float beta,
                                i64 mr, i64 nr) {
    tile_emulated(kq, pa, pb, c, ldc, alpha, beta, mr, nr);
  }
};

thread_local PackBuffer<u32> tl_pack_a;
thread_local PackBuffer<u32> tl_pack_b;

// Requires m, n, k > 0 and alpha != 0. The loop nest of gemm.cpp's gemm_driver, over k-pairs.
template <class K>
LADON_INLINE void gemm_driver(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda,
                              const float* b, i64 ldb, float beta, float* c, i64 ldc, const Epilogue& epilogue) {
  const i64 kc_max = balanced_block(k, K::kBlockK, 2);  // even: a k-pair never straddles two blocks
  const i64 mc_max = balanced_block(m, K::kBlockM, K::kTileRows);
  const i64 nc_max = balanced_block(n, kNC, K::kTileCols);
  const i64 kq_max = K::padded_kq(kc_max / 2);
  u32* pack_a_buf = tl_pack_a.get(static_cast<std::size_t>(round_up(mc_max, K::kTileRows) * kq_max * K::kAWords));
  u32* pack_b_buf = tl_pack_b.get(static_cast<std::size_t>(round_up(nc_max, K::kTileCols) * kq_max));

  for (i64 jc = 0; jc < n; jc += nc_max) {
    const i64 nc = std::min(nc_max, n - jc);
    for (i64 pc = 0; pc < k; pc += kc_max) {
      const i64 kc = std::min(kc_max, k - pc), kq = K::padded_kq(ceil_div(kc, 2));
      const float beta_block = pc == 0 ? beta : 1.0f;
      const bool last_k_block = pc + kc == k;
      K::pack_b(trans_b, trans_b ? b + jc * ldb + pc : b + pc * ldb + jc, ldb, kc, nc, pack_b_buf);
      for (i64 ic = 0; ic < m; ic += mc_max) {
        const i64 mc = std::min(mc_max, m - ic);
        K::pack_a(trans_a, trans_a ? a + pc * lda + ic : a + ic * lda + pc, lda, mc, kc, pack_a_buf);
        for (i64 jr = 0; jr < nc; jr += K::kTileCols) {
          const i64 nr = std::min(K::kTileCols, nc - jr);
          const u32* pb = pack_b_buf + jr * kq;
          for (i64 ir = 0; ir < mc; ir += K::kTileRows) {
            const i64 mr = std::min(K::kTileRows, mc - ir);
            float* tile_c = c + (ic + ir) * ldc + jc + jr;
            K::tile(kq, pack_a_buf + ir * kq * K::kAWords, pb, tile_c, ldc, alpha, beta_block, mr, nr);
            if (last_k_block) apply_epilogue(epilogue, tile_c, ldc, mr, nr, jc + jr);
          }
        }
      }
    }
  }
}

#define LADON_GEMM_ARGS                                                                                           \
  bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float *a, i64 lda, const float *b, i64 ldb, \
      float beta, float *c, i64 ldc, const Epilogue &epilogue
#define LADON_GEMM_PASS trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue

#if LADON_X86
LADON_TARGET_AVX512_BF16 void gemm_native(LADON_GEMM_ARGS) { gemm_driver<KernelNative>(LADON_GEMM_PASS); }
[[gnu::target("arch=x86-64-v4")]] void gemm_fma(LADON_GEMM_ARGS) { gemm_driver<KernelFma>(LADON_GEMM_PASS); }
LADON_TARGET_AMX void gemm_amx(LADON_GEMM_ARGS) {
  static const TileConfig config;
  _tile_loadconfig(&config);
  gemm_driver<KernelAmx>(LADON_GEMM_PASS);
  _tile_release();  // tile data back to its initial state: context switches need not save it
}
[[gnu::target("arch=x86-64-v4")]] void gemm_emulated_avx512(LADON_GEMM_ARGS) {
  gemm_driver<KernelEmulated>(LADON_GEMM_PASS);
}
[[gnu::target("arch=x86-64-v3")]] void gemm_emulated_avx2(LADON_GEMM_ARGS) {
  gemm_driver<KernelEmulated>(LADON_GEMM_PASS);
}
#endif  // LADON_X86
void gemm_emulated_baseline(LADON_GEMM_ARGS) { gemm_driver<KernelEmulated>(LADON_GEMM_PASS); }

// The kernel of a GEMM: what the ISA level picks, or at the AVX512_BF16 level one of its two.
void dispatch(Isa isa, Bf16Kernel top, LADON_GEMM_ARGS) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ldc);
    apply_epilogue(epilogue, c, ldc, m, n, 0);
    return;
  }
#if LADON_X86
  switch (isa) {
    case Isa::avx512_bf16:
      switch (top) {
        case Bf16Kernel::dot:
          return gemm_native(LADON_GEMM_PASS);
        case Bf16Kernel::fma:
          return gemm_fma(LADON_GEMM_PASS);
        case Bf16Kernel::amx:
          return gemm_amx(LADON_GEMM_PASS);
      }
      break;
    case Isa::avx512:
      return gemm_emulated_avx512(LADON_GEMM_PASS);
    case Isa::avx2:
      return gemm_emulated_avx2(LADON_GEMM_PASS);
    case Isa::baseline:
      break;
  }
#else
  (void)isa, (void)top;  // elsewhere only the baseline exists (isa_supported says so)
#endif
  gemm_emulated_baseline(LADON_GEMM_PASS);
}

// AMX needs the CPU's AMX-TILE and AMX-BF16 and the kernel's leave to use the tile data state
// (Linux 5.16 on: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), once per process).
bool amx_usable() {
#if LADON_X86 && defined(__linux__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool amx_bf16 = (edx >> 22 & 1u) != 0, amx_tile = (edx >> 24 & 1u) != 0;
  if (!amx_bf16 || !amx_tile || !isa_supported(Isa::avx512_bf16)) return false;
  constexpr long kReqXcompPerm = 0x1023, kXtiledata = 18;  // asm/prctl.h, the XSAVE feature number
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXtiledata) == 0;
#else
  return false;
#endif
}

bool amx_available() {
  static const bool available = amx_usable();
  return available;
}

Bf16Kernel pick_bf16_kernel() {
#if LADON_X86
  if (amx_available()) return Bf16Kernel::amx;
  return __builtin_cpu_is("intel") ? Bf16Kernel::fma : Bf16Kernel::dot;
#else
  return Bf16Kernel::dot;
#endif
}

}  // namespace

namespace {
// Vectorises as written: bf16_bits is integer operations and selects.
LADON_INLINE void round_to_bf16_body(std::int64_t n, float* x) {
  for (std::int64_t i = 0; i < n; ++i) x[i] = std::bit_cast<float>(bf16_of(x[i]) << 16);
}
}  // namespace

void round_to_bf16(std::int64_t n, float* x) { Multiversion<round_to_bf16_body>::run(n, x); }

std::uint16_t float_to_bf16(float x) { return static_cast<std::uint16_t>(bf16_of(x)); }

float bf16_to_float(std::uint16_t bits) { return low_half(bits); }

Bf16Kernel gemm_bf16_kernel() {
  static const Bf16Kernel kernel = pick_bf16_kernel();
  return kernel;
}

// gemm_bf16_kernel(), except for small products. AMX: under 4096 multiply-adds its fixed cost (the
// tile configuration, packing whole 32 x 32 tiles) loses to vdpbf16ps (Intel Xeon, one thread: amx
// 1.4-1.9x slower at 1 x 16 x 32, 32 x 16 x 1 and 8 x 8 x 8, level at 13 x 15 x 15, 2-3x faster from
// 32 x 8 x 64 up). fma: products too thin for its extra pass over A (fewer than 14 rows, 16
// columns or 16 k values) take vdpbf16ps (fma 0.89-0.96x of dot at 1 x 16 x 32, 32 x 16 x 1 and
// 32 x 8 x 64, 1.04-1.34x from 16 x 32 x 32 up), with the same bits (test_gemm_bf16.cpp). The
// parallel GEMMs (core/ops/linalg.cpp) give each thread at least 2^20 multiply-adds, so a thread
// count never moves a product across the AMX threshold and results do not depend on it.
Bf16Kernel gemm_bf16_kernel_for(i64 m, i64 n, i64 k) {
  const Bf16Kernel kernel = gemm_bf16_kernel();
  if (kernel == Bf16Kernel::amx && m * n * k < 4096) return Bf16Kernel::dot;
  if (kernel == Bf16Kernel::fma && (m < kMR || n < 16 || k < 16) && isa_supported(Isa::avx512_bf16))
    return Bf16Kernel::dot;
  return kernel;
}

void gemm_bf16(LADON_GEMM_ARGS) { dispatch(active_isa(), gemm_bf16_kernel_for(m, n, k), LADON_GEMM_PASS); }

void gemm_bf16_with_isa(Isa isa, LADON_GEMM_ARGS) { dispatch(isa, gemm_bf16_kernel_for(m, n, k), LADON_GEMM_PASS); }

bool bf16_kernel_supported(Bf16Kernel kernel) {
  switch (kernel) {
    case Bf16Kernel::dot:
      return isa_supported(Isa::avx512_bf16);
    case Bf16Kernel::fma:
      return isa_supported(Isa::avx512_bf16);  // its packing converts with vcvtne2ps2bf16
    case Bf16Kernel::amx:
      return amx_available();
  }
  return false;
}

const char* bf16_kernel_name(Bf16Kernel kernel) {
  switch (kernel) {
    case Bf16Kernel::dot:
      return "dot (vdpbf16ps)";
    case Bf16Kernel::fma:
      return "fma";
    case Bf16Kernel::amx:
      return "amx";
  }
  return "?";
}

void gemm_bf16_with_kernel(Bf16Kernel kernel, LADON_GEMM_ARGS) {
  if (!bf16_kernel_supported(kernel)) {
    constexpr const char* kNeeds[] = {"Bf16Kernel::dot needs AVX512_BF16", "Bf16Kernel::fma needs AVX512_BF16",
                                      "Bf16Kernel::amx needs AMX-BF16 and the kernel's leave to use it"};
    throw std::invalid_argument(std::string("gemm_bf16_with_kernel: ") + kNeeds[static_cast<int>(kernel)] +
                                ", which this machine lacks");
  }
  dispatch(Isa::avx512_bf16, kernel, LADON_GEMM_PASS);
}

#undef LADON_GEMM_ARGS
#undef LADON_GEMM_PASS

}  // namespace ladon::kernels
