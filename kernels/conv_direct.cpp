// Direct convolution (conv.h: conv2d_direct): the implicit GEMM of a stride-1 convolution with the
// output positions as rows and the output channels as the vector dimension, read straight from a
// zero-padded image, so no im2col column block exists.
//
// One register tile is 14 consecutive positions of one output row x 32 output channels: 28 zmm
// accumulators (the FP32 GEMM's 14 x 32 tile, gemm.cpp), two weight vectors and one broadcast input
// value per step of the sum over (channel, tap). For a fixed (c, i, j) the tile's 14 inputs are 14
// consecutive floats of padded row y + i, starting at column x0 + j, so the broadcasts need no index
// arithmetic. Each 32-channel weight panel (K = C kh kw steps of 32 floats: 36 KB for 32 -> 64, 3 x 3)
// is reused by every tile of the image, and the padded image (32 KB for 32 x 16 x 16) by both panels.
//
// Why not the im2col GEMM: for the CNN's 32 -> 64 layer on 14 x 14 (bench/bench_conv) that GEMM is
// 64 x 196 x 288 per image with channels as rows: 64 rows fill 14-row tiles to 91%, 196 columns fill
// 32-column tiles to 88%, and im2col writes (and the GEMM reads back) a 225 KB column block per image.
// Here 14 positions fit a 14-wide output row exactly and 64 channels two panels, and the image is
// read in place.
//
// The store transposes each 14 x 16 block in registers (16 x 16 with two empty rows) into 16 channel
// rows of 14 positions, adding the bias and applying ReLU first, so the output is written once, in
// [channels, height, width] order.
//
// AVX2 + FMA (Zen 1-3, Haswell on; direct_tile_avx2, single_channel_tile_avx2): the same scheme in
// 16 ymm registers, 6 positions x 16 channels (one half of a 32-channel panel, the same packing),
// positions counted over the whole output plane rather than one row, and 8 x 8 transposes in the
// store. Only the forward (and so the input gradient, a forward of the flipped weights) has AVX2
// kernels: the weight gradient runs im2col + GEMM there. Zen 3, one thread, interleaved with the
// im2col path: conv 32 -> 64 forward about 1.3x, 1 -> 32 about 1.15-1.3x (bench/README.md).
#include <algorithm>
#include <array>
#include <stdexcept>
#include <utility>
#include <vector>

#include "conv.h"
#include "gemm_bf16.h"      // float_to_bf16, gemm_bf16_kernel
#include "gemm_internal.h"  // transpose16x16, bf16_pair_words, LADON_TARGET_AVX512(_BF16)
#include "isa.h"

namespace ladon::kernels {

namespace {

using detail::i64;
constexpr int kRows = 14, kPanel = 32;

// The forward has AVX-512 and AVX2 kernels, the weight gradient AVX-512 ones only; callers check
// conv2d_direct_available() and conv2d_direct_weight_grad_available() first.
[[noreturn]] void needs_avx2() { throw std::logic_error("conv2d_direct: needs AVX2 (conv2d_direct_available)"); }
[[noreturn]] void needs_avx512() {
  throw std::logic_error("conv2d_direct_weight_grad: needs AVX-512 (conv2d_direct_weight_grad_available)");
}
[[noreturn]] void needs_avx512_bf16() {
  throw std::logic_error("conv2d_direct_bf16: needs AVX512_BF16 (conv2d_direct_bf16_available)");
}

#if LADON_X86
// GCC 12 flags the placeholder inside _mm512_undefined_ps (used by max and the shuffles) as
// uninitialized; a known false positive (as in gemm_internal.h).
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// Writes a tile's MR x (16 NV) sums (positions x channels o0 ...) to out[channel * ldo + position]:
// each 14 x 16 block transposed in registers (16 x 16 with the missing rows zero) into 16 channel
// rows, the bias added and ReLU applied first, so the output is written once.
template <int MR, int NV>
LADON_INLINE LADON_TARGET_AVX512 void store_direct_tile(const DirectConv& g, const __m512 (&acc)[MR][NV],
                                                        const float* bias, Activation activation, i64 o0, float* out,
                                                        i64 ldo) {
  const auto position_mask = static_cast<__mmask16>((1u << MR) - 1u);
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
    const i64 first = o0 + 16 * v, count = std::min<i64>(16, g.out_channels - first);
    const auto channel_mask = static_cast<__mmask16>((1u << count) - 1u);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(channel_mask, bias + first) : zero;
    __m512 r[16];
#pragma GCC unroll 16
    for (int m = 0; m < 16; ++m) {
      if (m < MR) {
        r[m] = _mm512_add_ps(acc[m][v], b);
        // max(0, x) returns x when x is NaN (the second operand wins): NaN stays NaN, as in conv_store.
        if (activation == Activation::relu) r[m] = _mm512_max_ps(zero, r[m]);
      } else {
        r[m] = zero;
      }
    }
    detail::transpose16x16(r);
    for (i64 l = 0; l < count; ++l) _mm512_mask_storeu_ps(out + (16 * v + l) * ldo, position_mask, r[l]);
  }
}

// offsets[t]: where step t = (c, i, j) of the sum reads, relative to the tile's first position
// (c * plane + i * padded_w + j). A table rather than three nested loops: with the j loop visible,
// GCC keeps the values row[j + m] it will reuse at j + 1 in stack slots and spills accumulators.
template <int MR, int NV>
LADON_TARGET_AVX512 void direct_tile(const DirectConv& g, i64 k, const i64* __restrict offsets,
                                     const float* __restrict in, const float* __restrict panel, const float* bias,
                                     Activation activation, i64 o0, float* out, i64 ldo) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_ps();
  const float* pb = panel;
  for (i64 t = 0; t < k; ++t) {
    const float* a = in + offsets[t];
    __m512 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(pb + 16 * v);
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m512 av = _mm512_set1_ps(a[m]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_fmadd_ps(av, bv[v], acc[m][v]);
    }
    pb += kPanel;
  }
  store_direct_tile<MR, NV>(g, acc, bias, activation, o0, out, ldo);
}

// direct_tile in bf16 (AVX512_BF16): step t is (channel pair q, i, j), its word a[m] the pair's two
// bf16 inputs at position m, the panel's words the pairs' weights for 32 channels; one vdpbf16ps
// adds both products, so the sum has half the steps. Zen 4 and 5 issue vdpbf16ps at the FMA's rate.
template <int MR, int NV>
LADON_TARGET_AVX512_BF16 void direct_tile_bf16(const DirectConv& g, i64 kq, const i64* __restrict offsets,
                                               const std::uint32_t* __restrict in,
                                               const std::uint32_t* __restrict panel, const float* bias,
                                               Activation activation, i64 o0, float* out, i64 ldo) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_ps();
  const std::uint32_t* pb = panel;
  for (i64 t = 0; t < kq; ++t) {
    const std::uint32_t* a = in + offsets[t];
    __m512bh bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(pb + 16 * v));
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[m])));
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_dpbf16_ps(acc[m][v], av, bv[v]);
    }
    pb += kPanel;
  }
  store_direct_tile<MR, NV>(g, acc, bias, activation, o0, out, ldo);
}

using TileBf16Fn = void (*)(const DirectConv&, i64, const i64*, const std::uint32_t*, const std::uint32_t*,
                            const float*, Activation, i64, float*, i64);

template <std::size_t... I>
constexpr auto tile_bf16_table(std::index_sequence<I...>) {
  return std::array<std::array<TileBf16Fn, 2>, sizeof...(I)>{
      {{&direct_tile_bf16<static_cast<int>(I) + 1, 1>, &direct_tile_bf16<static_cast<int>(I) + 1, 2>}...}};
}
constexpr auto kTilesBf16 = tile_bf16_table(std::make_index_sequence<kRows>{});

using TileFn = void (*)(const DirectConv&, i64, const i64*, const float*, const float*, const float*, Activation, i64,
                       float*, i64);

template <std::size_t... I>
constexpr auto tile_table(std::index_sequence<I...>) {
  return std::array<std::array<TileFn, 2>, sizeof...(I)>{
      {{&direct_tile<static_cast<int>(I) + 1, 1>, &direct_tile<static_cast<int>(I) + 1, 2>}...}};
}
constexpr auto kTiles = tile_table(std::make_index_sequence<kRows>{});

// One input channel (conv2d_direct with g.channels == 1, conv1 of the CNN, LeNet's first layer):
// the sum has only kh * kw steps, so direct_tile's transposed 16 x 16 store costs more than its
// FMAs. This tile runs the other way round: a vector is 16 consecutive output positions of one row
// (two vectors per row), NO <= 12 output channels are the accumulators, and step t = (i, j) is two
// unaligned loads of padded row y + i from column x0 + j, each times NO broadcast weights. The
// result is already in [channels, height, width] order, so each accumulator is stored as it is. The
// sum runs over the same steps in the same order from zero, then adds the bias, as direct_tile
// does: the results are identical.
template <int NO>
LADON_TARGET_AVX512 void single_channel_tile(i64 kernel_h, i64 kernel_w, i64 padded_w, i64 out_h, i64 out_w,
                                             const float* __restrict in, const float* __restrict panel,
                                             const float* bias, Activation activation, float* out, i64 ldo) {
  const __m512 zero = _mm512_setzero_ps();
  // Bands of 32 columns (two vectors, so each broadcast weight feeds two FMAs: one broadcast per
  // FMA would make the loads the limit), each down all rows, as the weight gradient's band_rows: the
  // long loop is the one down the band.
  for (i64 x0 = 0; x0 < out_w; x0 += 32) {
    const i64 n = std::min<i64>(32, out_w - x0);
    const __mmask16 mask0 = detail::first_lanes16(std::min<i64>(16, n)),
                    mask1 = detail::first_lanes16(std::max<i64>(0, n - 16));
    for (i64 y = 0; y < out_h; ++y) {
      const float* image = in + y * padded_w + x0;
      __m512 acc[2][NO];
#pragma GCC unroll 16
      for (int o = 0; o < NO; ++o) acc[0][o] = acc[1][o] = zero;
      const float* pw = panel;
      for (i64 i = 0; i < kernel_h; ++i) {
        const float* row = image + i * padded_w;
        for (i64 j = 0; j < kernel_w; ++j) {
          const __m512 a0 = _mm512_maskz_loadu_ps(mask0, row + j), a1 = _mm512_maskz_loadu_ps(mask1, row + j + 16);
#pragma GCC unroll 16
          for (int o = 0; o < NO; ++o) {
            const __m512 wv = _mm512_set1_ps(pw[o]);
            acc[0][o] = _mm512_fmadd_ps(a0, wv, acc[0][o]);
            acc[1][o] = _mm512_fmadd_ps(a1, wv, acc[1][o]);
          }
          pw += kPanel;
        }
      }
      float* o_row = out + y * out_w + x0;
#pragma GCC unroll 16
      for (int o = 0; o < NO; ++o) {
        const __m512 b = bias ? _mm512_set1_ps(bias[o]) : zero;
        __m512 r0 = _mm512_add_ps(acc[0][o], b), r1 = _mm512_add_ps(acc[1][o], b);
        // max(0, x) returns x when x is NaN (the second operand wins): NaN stays NaN, as in direct_tile.
        if (activation == Activation::relu) r0 = _mm512_max_ps(zero, r0), r1 = _mm512_max_ps(zero, r1);
        _mm512_mask_storeu_ps(o_row + o * ldo, mask0, r0);
        _mm512_mask_storeu_ps(o_row + o * ldo + 16, mask1, r1);
      }
    }
  }
}

using SingleChannelFn = void (*)(i64, i64, i64, i64, i64, const float*, const float*, const float*, Activation, float*,
                                 i64);
constexpr i64 kSingleChannels = 12;  // output channels per single_channel_tile: 24 accumulators

template <std::size_t... I>
constexpr auto single_channel_table(std::index_sequence<I...>) {
  return std::array<SingleChannelFn, sizeof...(I)>{{&single_channel_tile<static_cast<int>(I) + 1>...}};
}
constexpr auto kSingleChannelTiles = single_channel_table(std::make_index_sequence<kSingleChannels>{});

LADON_TARGET_AVX512 void single_channel_conv(const DirectConv& g, const float* padded, const float* packed,
                                             const float* bias, Activation activation, float* out) {
  const i64 out_h = g.padded_h - g.kernel_h + 1, out_w = g.padded_w - g.kernel_w + 1, out_plane = out_h * out_w;
  const i64 k = g.kernel_h * g.kernel_w;
  for (i64 o0 = 0, no = 0; o0 < g.out_channels; o0 += no) {
    // A block stays within its 32-channel panel: 12, 12, 8 channels per panel.
    no = std::min({kSingleChannels, g.out_channels - o0, i64{kPanel} - o0 % kPanel});
    // Channel o's weight for step t is packed[((o / 32) * k + t) * 32 + o % 32] (conv2d_direct_pack).
    const float* panel = packed + (o0 / kPanel) * k * kPanel + o0 % kPanel;
    kSingleChannelTiles[no - 1](g.kernel_h, g.kernel_w, g.padded_w, out_h, out_w, padded, panel,
                                bias ? bias + o0 : nullptr, activation, out + o0 * out_plane, out_plane);
  }
}

// The AVX2 + FMA forward (Zen 1-3, Haswell on: 16 ymm registers, two 8-wide FMAs per cycle).
// direct_tile's scheme at a quarter of its size: MR <= 6 output positions x 8 NV <= 16 channels,
// 12 ymm accumulators, two weight vectors (one 16-channel half of a 32-channel panel, so the packing
// is conv2d_direct_pack's) and one broadcast per step. The positions are consecutive in the output
// plane but may cross an output row: each has its own offset into the padded image (positions[m]),
// so a 14 x 14 plane is 32 full tiles and one of 4, not rows of 6 + 6 + 2.
constexpr int kRows2 = 6;

// In-register transpose of 8 rows of 8 floats: on return r[j] holds column j.
LADON_INLINE LADON_TARGET_AVX2 void transpose8x8(__m256 r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      // a0 b0 a1 b1 | a4 b4 a5 b5
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // a2 b2 a3 b3 | a6 b6 a7 b7
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);  // a0 b0 c0 d0 | a4 b4 c4 d4
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
  }
}

// The mask of the first n (0 <= n <= 8) lanes, for maskload and maskstore.
LADON_INLINE LADON_TARGET_AVX2 __m256i first_lanes8(i64 n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Stores the first n lanes of v at dst. full: all 8, where the lanes past n land on floats that a
// later store overwrites (the caller's promise); a masked store otherwise, which is slow on AMD.
LADON_INLINE LADON_TARGET_AVX2 void store_lanes(float* dst, __m256 v, i64 n, bool full) {
  if (full)
    _mm256_storeu_ps(dst, v);
  else
    _mm256_maskstore_ps(dst, first_lanes8(n), v);
}

// One tile: positions [p0, p0 + MR) of the output plane (ldo floats per channel) x channels
// [first, first + count) (count <= 8 NV), panel = the half's first weights, bias = bias + first (or
// null), out = the output at (first, p0). full_store: p0 + 8 <= ldo, so each channel row is written
// as 8 floats, the ones past MR overwritten by the next tile (the caller runs them in order).
template <int MR, int NV>
LADON_TARGET_AVX2 void direct_tile_avx2(i64 k, const i64* __restrict offsets, const i64* __restrict positions,
                                        const float* __restrict in, const float* __restrict panel, const float* bias,
                                        i64 count, Activation activation, bool full_store, float* out, i64 ldo) {
  __m256 acc[MR][NV];
  i64 at[MR];  // in registers: each broadcast is one base + index * 4 address, no arithmetic
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    at[m] = positions[m];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm256_setzero_ps();
  }
  const float* pb = panel;
  for (i64 t = 0; t < k; ++t) {
    const float* a = in + offsets[t];
    // Without this GCC adds offsets[t] to every at[m] (one lea per broadcast, the front end's limit).
    asm("" : "+r"(a));
    __m256 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(pb + 8 * v);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const __m256 av = _mm256_broadcast_ss(a + at[m]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm256_fmadd_ps(av, bv[v], acc[m][v]);
    }
    pb += kPanel;
  }
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
    const i64 lanes = std::min<i64>(8, count - 8 * v);
    const __m256 b = !bias        ? zero
                     : lanes == 8 ? _mm256_loadu_ps(bias + 8 * v)
                                  : _mm256_maskload_ps(bias + 8 * v, first_lanes8(lanes));
    __m256 r[8];
#pragma GCC unroll 8
    for (int m = 0; m < 8; ++m) {
      if (m < MR) {
        r[m] = _mm256_add_ps(acc[m][v], b);
        // max(0, x) returns x when x is NaN (the second operand wins): NaN stays NaN, as in conv_store.
        if (activation == Activation::relu) r[m] = _mm256_max_ps(zero, r[m]);
      } else {
        r[m] = zero;
      }
    }
    transpose8x8(r);
    for (i64 l = 0; l < lanes; ++l) store_lanes(out + (8 * v + l) * ldo, r[l], MR, full_store);
  }
}

using Tile2Fn = void (*)(i64, const i64*, const i64*, const float*, const float*, const float*, i64, Activation, bool,
                         float*, i64);

template <std::size_t... I>
constexpr auto tile2_table(std::index_sequence<I...>) {
  return std::array<std::array<Tile2Fn, 2>, sizeof...(I)>{
      {{&direct_tile_avx2<static_cast<int>(I) + 1, 1>, &direct_tile_avx2<static_cast<int>(I) + 1, 2>}...}};
}
constexpr auto kTiles2 = tile2_table(std::make_index_sequence<kRows2>{});

// One input channel under AVX2, as single_channel_tile: two vectors of 8 consecutive positions of
// one output row (n <= 16 of them; PARTIAL: n < 16, the rest masked on load) x NO <= 6 channels, 12
// accumulators. full_store as in direct_tile_avx2: the row's 16 floats may be written whole, the
// lanes past n landing on later rows of the same plane, which later tiles overwrite.
template <int NO, bool PARTIAL>
LADON_TARGET_AVX2 void single_channel_tile_avx2(i64 kernel_h, i64 kernel_w, i64 padded_w, const float* __restrict in,
                                                i64 n, const float* __restrict panel, const float* bias,
                                                Activation activation, bool full_store, float* out, i64 ldo) {
  const __m256i mask0 = first_lanes8(std::min<i64>(8, n)), mask1 = first_lanes8(std::max<i64>(0, n - 8));
  __m256 acc[2][NO];
#pragma GCC unroll 8
  for (int o = 0; o < NO; ++o) acc[0][o] = acc[1][o] = _mm256_setzero_ps();
  const float* pw = panel;
  for (i64 i = 0; i < kernel_h; ++i) {
    const float* row = in + i * padded_w;
    for (i64 j = 0; j < kernel_w; ++j) {
      const __m256 a0 = PARTIAL ? _mm256_maskload_ps(row + j, mask0) : _mm256_loadu_ps(row + j);
      const __m256 a1 = PARTIAL ? _mm256_maskload_ps(row + j + 8, mask1) : _mm256_loadu_ps(row + j + 8);
#pragma GCC unroll 8
      for (int o = 0; o < NO; ++o) {
        const __m256 wv = _mm256_broadcast_ss(pw + o);
        acc[0][o] = _mm256_fmadd_ps(a0, wv, acc[0][o]);
        acc[1][o] = _mm256_fmadd_ps(a1, wv, acc[1][o]);
      }
      pw += kPanel;
    }
  }
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int o = 0; o < NO; ++o) {
    const __m256 b = bias ? _mm256_broadcast_ss(bias + o) : zero;
    __m256 r0 = _mm256_add_ps(acc[0][o], b), r1 = _mm256_add_ps(acc[1][o], b);
    // max(0, x) returns x when x is NaN (the second operand wins): NaN stays NaN, as in direct_tile.
    if (activation == Activation::relu) r0 = _mm256_max_ps(zero, r0), r1 = _mm256_max_ps(zero, r1);
    if (full_store || n >= 16) {
      _mm256_storeu_ps(out + o * ldo, r0);
      _mm256_storeu_ps(out + o * ldo + 8, r1);
    } else {
      _mm256_maskstore_ps(out + o * ldo, mask0, r0);
      if (n > 8) _mm256_maskstore_ps(out + o * ldo + 8, mask1, r1);
    }
  }
}

using SingleChannel2Fn = void (*)(i64, i64, i64, const float*, i64, const float*, const float*, Activation, bool,
                                  float*, i64);
constexpr i64 kSingleChannels2 = 6;

template <std::size_t... I>
constexpr auto single_channel2_table(std::index_sequence<I...>) {
  return std::array<std::array<SingleChannel2Fn, 2>, sizeof...(I)>{
      {{&single_channel_tile_avx2<static_cast<int>(I) + 1, false>,
        &single_channel_tile_avx2<static_cast<int>(I) + 1, true>}...}};
}
constexpr auto kSingleChannelTiles2 = single_channel2_table(std::make_index_sequence<kSingleChannels2>{});

void single_channel_conv_avx2(const DirectConv& g, const float* padded, const float* packed, const float* bias,
                              Activation activation, float* out) {
  const i64 out_h = g.padded_h - g.kernel_h + 1, out_w = g.padded_w - g.kernel_w + 1, out_plane = out_h * out_w;
  const i64 k = g.kernel_h * g.kernel_w;
  for (i64 o0 = 0, no = 0; o0 < g.out_channels; o0 += no) {
    // A block stays within its 32-channel panel: 6, 6, 6, 6, 6, 2 channels per panel.
    no = std::min({kSingleChannels2, g.out_channels - o0, i64{kPanel} - o0 % kPanel});
    const float* panel = packed + (o0 / kPanel) * k * kPanel + o0 % kPanel;
    for (i64 y = 0; y < out_h; ++y)
      for (i64 x0 = 0; x0 < out_w; x0 += 16) {
        const i64 n = std::min<i64>(16, out_w - x0), at = y * out_w + x0;
        kSingleChannelTiles2[no - 1][n < 16](g.kernel_h, g.kernel_w, g.padded_w, padded + y * g.padded_w + x0, n, panel,
                                             bias ? bias + o0 : nullptr, activation, at + 16 <= out_plane,
                                             out + o0 * out_plane + at, out_plane);
      }
  }
}

std::vector<i64> step_offsets(const DirectConv& g);

void conv_avx2(const DirectConv& g, const float* padded, const float* packed, const float* bias, Activation activation,
               float* out) {
  if (g.channels == 1) return single_channel_conv_avx2(g, padded, packed, bias, activation, out);
  const i64 out_h = g.padded_h - g.kernel_h + 1, out_w = g.padded_w - g.kernel_w + 1;
  const i64 k = g.channels * g.kernel_h * g.kernel_w, out_plane = out_h * out_w;
  const std::vector<i64> offsets = step_offsets(g);
  std::vector<i64> positions(static_cast<std::size_t>(out_plane));
  for (i64 p = 0; p < out_plane; ++p) positions[static_cast<std::size_t>(p)] = (p / out_w) * g.padded_w + p % out_w;
  for (i64 first = 0; first < g.out_channels; first += 16) {
    const float* half = packed + (first / kPanel) * k * kPanel + first % kPanel;
    const i64 count = std::min<i64>(16, g.out_channels - first);
    for (i64 p0 = 0; p0 < out_plane; p0 += kRows2) {
      const i64 mr = std::min<i64>(kRows2, out_plane - p0);
      kTiles2[mr - 1][count > 8](k, offsets.data(), positions.data() + p0, padded, half, bias ? bias + first : nullptr,
                                 count, activation, p0 + 8 <= out_plane, out + first * out_plane + p0, out_plane);
    }
  }
}

#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// The weight gradient's tile: MR consecutive steps t = (c, i, j) of the forward's sum x 16 NV output
// channels, summed over every output position (y, x) of one image:
//   dw[t][o] += sum_{y, x} padded[offsets[t] + y * padded_w + x] * grad_t[(y * out_w + x) * ldg + o].
// The forward's tile with the roles of positions and steps exchanged: per position, NV gradient
// vectors (the output gradient transposed to position-major by conv2d_direct_grad_transpose) and MR
// broadcasts of the input. The accumulators live across the image's whole position loop, and are
// added into the packed weight gradient (the layout of conv2d_direct_pack) once per image.
template <int MR, int NV>
LADON_TARGET_AVX512 void weight_grad_tile(i64 out_h, i64 out_w, i64 padded_w, const i64* __restrict offsets,
                                          const float* __restrict in, const float* __restrict grad_t, i64 ldg,
                                          float* __restrict dw) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_ps();
  i64 off[MR];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) off[m] = offsets[m];
  for (i64 y = 0; y < out_h; ++y) {
    const float* row = in + y * padded_w;
    const float* g = grad_t + y * out_w * ldg;
    for (i64 x = 0; x < out_w; ++x) {
      __m512 gv[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) gv[v] = _mm512_loadu_ps(g + x * ldg + 16 * v);
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) {
        const __m512 av = _mm512_set1_ps(row[off[m] + x]);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_fmadd_ps(av, gv[v], acc[m][v]);
      }
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      float* d = dw + m * kPanel + 16 * v;
      _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), acc[m][v]));
    }
}

using GradTileFn = void (*)(i64, i64, i64, const i64*, const float*, const float*, i64, float*);

// weight_grad_tile in bf16 (AVX512_BF16): the sum over positions two at a time, x and x + 1 of a
// row. Step t's inputs at (y, x) and (y, x + 1) are the floats at offsets[t] + y padded_w + x and
// the one after, so their word is word offsets[t] + y padded_w + x of the shifted pairs (word q:
// floats q and q + 1); the output gradient comes as words of positions (x, x + 1), the second zero
// past an odd row's end.
template <int MR, int NV>
LADON_TARGET_AVX512_BF16 void weight_grad_tile_bf16(i64 out_h, i64 out_w, i64 padded_w, const i64* __restrict offsets,
                                                    const std::uint32_t* __restrict shifted,
                                                    const std::uint32_t* __restrict grad_pairs, i64 ldg,
                                                    float* __restrict dw) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_ps();
  i64 off[MR];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) off[m] = offsets[m];
  const i64 half_w = detail::ceil_div(out_w, 2);
  for (i64 y = 0; y < out_h; ++y) {
    const std::uint32_t* row = shifted + y * padded_w;
    const std::uint32_t* g = grad_pairs + y * half_w * ldg;
    for (i64 h = 0; h < half_w; ++h) {
      __m512bh gv[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) gv[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(g + h * ldg + 16 * v));
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) {
        const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(row[off[m] + 2 * h])));
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_dpbf16_ps(acc[m][v], av, gv[v]);
      }
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      float* d = dw + m * kPanel + 16 * v;
      _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), acc[m][v]));
    }
}

using GradTileBf16Fn = void (*)(i64, i64, i64, const i64*, const std::uint32_t*, const std::uint32_t*, i64, float*);

template <std::size_t... I>
constexpr auto grad_tile_bf16_table(std::index_sequence<I...>) {
  return std::array<std::array<GradTileBf16Fn, 2>, sizeof...(I)>{
      {{&weight_grad_tile_bf16<static_cast<int>(I) + 1, 1>, &weight_grad_tile_bf16<static_cast<int>(I) + 1, 2>}...}};
}
constexpr auto kGradTilesBf16 = grad_tile_bf16_table(std::make_index_sequence<kRows>{});

// Word q of the n floats of src: (src[q], src[q + 1]), the second zero for the last.
LADON_TARGET_AVX512_BF16 void shift_pair_bf16(i64 n, const float* src, std::uint32_t* dst) {
  for (i64 q = 0; q < n; q += 16) {
    const __mmask16 mask = detail::first_lanes16(n - q), next = detail::first_lanes16(n - q - 1);
    const __m512 lo = _mm512_maskz_loadu_ps(mask, src + q), hi = _mm512_maskz_loadu_ps(next, src + q + 1);
    _mm512_mask_storeu_epi32(dst + q, mask, detail::bf16_pair_words(lo, hi));
  }
}

// The position-major output gradient (grad_t, rows of ldg floats) as words of positions (x, x + 1)
// of each output row, the second zero past an odd row's end: row y, pair h at (y half_w + h) ldg.
LADON_TARGET_AVX512_BF16 void grad_pair_bf16(i64 out_h, i64 out_w, i64 ldg, const float* grad_t, std::uint32_t* dst) {
  const i64 half_w = detail::ceil_div(out_w, 2);
  for (i64 y = 0; y < out_h; ++y)
    for (i64 h = 0; h < half_w; ++h) {
      const float* lo = grad_t + (y * out_w + 2 * h) * ldg;
      const bool has_high = 2 * h + 1 < out_w;
      std::uint32_t* out = dst + (y * half_w + h) * ldg;
      for (i64 o = 0; o < ldg; o += 16) {
        const __m512 l = _mm512_loadu_ps(lo + o), r = has_high ? _mm512_loadu_ps(lo + ldg + o) : _mm512_setzero_ps();
        _mm512_storeu_si512(out + o, detail::bf16_pair_words(l, r));
      }
    }
}

template <std::size_t... I>
constexpr auto grad_tile_table(std::index_sequence<I...>) {
  return std::array<std::array<GradTileFn, 2>, sizeof...(I)>{
      {{&weight_grad_tile<static_cast<int>(I) + 1, 1>, &weight_grad_tile<static_cast<int>(I) + 1, 2>}...}};
}
constexpr auto kGradTiles = grad_tile_table(std::make_index_sequence<kRows>{});

// grad_t[p * ldg + o] = grad[o * plane + p], zeroed where mask[o * plane + p] <= 0 (as conv_gather)
// and for the padding channels o >= channels; sums[o] += the row's masked sum. 16 x 16 blocks,
// transposed in registers.
LADON_TARGET_AVX512 void grad_transpose_avx512(i64 channels, i64 plane, const float* grad, const float* mask, i64 ldg,
                                               float* grad_t, float* sums) {
  const __m512 zero = _mm512_setzero_ps();
  for (i64 o0 = 0; o0 < ldg; o0 += 16) {
    __m512 total = zero;  // lane l: channel o0 + l
    for (i64 p0 = 0; p0 < plane; p0 += 16) {
      const i64 count = std::min<i64>(16, plane - p0);
      const __mmask16 position_mask = detail::first_lanes16(count);
      __m512 r[16];
#pragma GCC unroll 16
      for (int l = 0; l < 16; ++l) {
        const i64 o = o0 + l;
        if (o < channels) {
          r[l] = _mm512_maskz_loadu_ps(position_mask, grad + o * plane + p0);
          if (mask) {
            const __mmask16 live =
                _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(position_mask, mask + o * plane + p0), zero, _CMP_GT_OQ);
            r[l] = _mm512_maskz_mov_ps(live, r[l]);
          }
        } else {
          r[l] = zero;
        }
      }
      detail::transpose16x16(r);
      for (i64 q = 0; q < count; ++q) {
        _mm512_storeu_ps(grad_t + (p0 + q) * ldg + o0, r[q]);
        total = _mm512_add_ps(total, r[q]);
      }
    }
    const i64 count = std::min<i64>(16, channels - o0);
    if (sums && count > 0) {
      const __mmask16 channel_mask = detail::first_lanes16(count);
      _mm512_mask_storeu_ps(sums + o0, channel_mask,
                            _mm512_add_ps(_mm512_maskz_loadu_ps(channel_mask, sums + o0), total));
    }
  }
}

// One input channel (conv1 of the CNN, LeNet's first layer): the weight gradient straight from the
// channel-major output gradient, without grad_transpose_avx512. With kh * kw taps of one channel the
// transposed path's FMAs are few next to its transpose, and the transpose reads the output gradient
// and the ReLU's mask with 32 rows in flight at once: perf on Zen 5 (bench_conv conv1 train, batch
// 128) put half the backward in it, against 12% in weight_grad_tile. Here a vector is 16
// consecutive output positions of one row, as in single_channel_tile; for NO <= 2 output channels
// and a chunk of the taps, NR rows i by KW columns j (NR * KW <= 12), the accumulators are
//   acc[o][i][j] += grad[o, y, x0 ..] * padded[y + i, x0 + j ..]   (bsum[o] += grad[o, y, x0 ..]),
// lanes kept apart until conv2d_single_channel_grad_add. The KW taps of a row are one load of
// its 16 + KW - 1 inputs (two vectors) and KW - 1 lane shifts (valignd), not KW unaligned loads,
// each across a cache line. Lanes past the row's end are 0 on both sides. The output is walked in
// bands of 32 columns down all rows (band_rows), both vectors of a band's row in one pass.
// Measured on Zen 5, conv1 of one image held in L2: rows of two vectors in a 2-trip inner loop 4.7
// us; column strips of one vector, each down all rows, 4.1 us; with the lane shifts 3.4-3.7 us;
// bands (the middle input vector serving both strips, strip a unmasked) 2.8 us. Tried and not
// kept: a tap-interleaved im2col copy so that every load is aligned (5.7 us: read once per channel
// pair, the 28 KB copy does not stay in L1).

// Tap (i, J): acc[o][i][J] += (the inputs lo, hi shifted left by J lanes, zero past m) * gv[o].
template <int J, int NO, int KW, int NR>
[[gnu::always_inline]] LADON_TARGET_AVX512 inline void tap_fma(__m512 (&acc)[NO][NR][KW], int i, __mmask16 m,
                                                               __m512i lo, __m512i hi, const __m512 (&gv)[NO]) {
  __m512 a;
  if constexpr (J == 0)
    a = _mm512_maskz_mov_ps(m, _mm512_castsi512_ps(lo));
  else
    a = _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m, hi, lo, J));  // valignd: lo[J ..], hi[.. J - 1]
#pragma GCC unroll 2
  for (int o = 0; o < NO; ++o) acc[o][i][J] = _mm512_fmadd_ps(a, gv[o], acc[o][i][J]);
}
template <int NO, int KW, int NR, int... J>
[[gnu::always_inline]] LADON_TARGET_AVX512 inline void row_taps(__m512 (&acc)[NO][NR][KW], int i, __mmask16 m,
                                                                __m512i lo, __m512i hi, const __m512 (&gv)[NO],
                                                                std::integer_sequence<int, J...>) {
  (tap_fma<J>(acc, i, m, lo, hi, gv), ...);
}

// One band of n <= 32 columns of the output (in, grad and mask start at its first column), down
// all out_h rows. Two (n > 16): a row is two vectors of positions, strips a (full) and b (the rest),
// in one pass over the row, the middle of its three input vectors serving both strips; otherwise
// one strip of n. prefetch: both cache lines of each gradient and mask row NO channels ahead (past
// the last channels: the next image's).
// x rounded to bf16 (to nearest even) and back, lane-wise: kernels::round_to_bf16's bits (NaN made
// quiet, values below float32's normal range flushed to a signed zero, as vdpbf16ps reads them).
[[gnu::always_inline]] LADON_TARGET_AVX512 inline __m512 round_bf16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x), high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  // Half an ulp of bf16, plus one where the kept lsb is odd (ties to even).
  const __mmask16 odd = _mm512_test_epi32_mask(u, _mm512_set1_epi32(0x10000));
  const __m512i half = _mm512_mask_blend_epi32(odd, _mm512_set1_epi32(0x7fff), _mm512_set1_epi32(0x8000));
  const __m512i rounded = _mm512_and_si512(_mm512_add_epi32(u, half), high);
  const __m512i magnitude = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7f800000));
  const __mmask16 tiny = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
  __m512i r =
      _mm512_mask_mov_epi32(rounded, nan, _mm512_and_si512(_mm512_or_si512(u, _mm512_set1_epi32(0x400000)), high));
  r = _mm512_mask_mov_epi32(r, tiny, _mm512_and_si512(u, _mm512_set1_epi32(static_cast<int>(0x80000000u))));
  return _mm512_castsi512_ps(r);
}

template <int NO, int KW, int NR, bool Two>
[[gnu::always_inline]] LADON_TARGET_AVX512 inline void band_rows(__m512 (&acc)[NO][NR][KW], __m512 (&bsum)[NO],
                                                                 i64 out_h, i64 out_w, i64 n, i64 padded_w, i64 plane,
                                                                 const float* row, const float* g, const float* k,
                                                                 bool prefetch, bool bf16) {
  const __m512 zero = _mm512_setzero_ps();
  const i64 inputs = n + KW - 1;  // the row's inputs, never past the padded row
  // Strip a: all 16 lanes when Two; strip b: the rest.
  const __mmask16 ma = detail::first_lanes16(Two ? 16 : n), mb = detail::first_lanes16(Two ? n - 16 : 0);
  const __mmask16 m0 = detail::first_lanes16(std::min<i64>(16, inputs));
  const __mmask16 m1 = detail::first_lanes16(std::clamp<i64>(inputs - 16, 0, 16));
  const __mmask16 m2 = detail::first_lanes16(std::max<i64>(0, inputs - 32));
  for (i64 y = 0; y < out_h; ++y, row += padded_w, g += out_w) {
    __m512 ga[NO], gb[NO];
#pragma GCC unroll 2
    for (int o = 0; o < NO; ++o) {
      if (prefetch)
        for (int h = 0; h < 2; ++h) {
          _mm_prefetch(reinterpret_cast<const char*>(g + (o + NO) * plane + 16 * h), _MM_HINT_T0);
          if (k) _mm_prefetch(reinterpret_cast<const char*>(k + (o + NO) * plane + 16 * h), _MM_HINT_T0);
        }
      ga[o] = Two ? _mm512_loadu_ps(g + o * plane) : _mm512_maskz_loadu_ps(ma, g + o * plane);
      if (Two) gb[o] = _mm512_maskz_loadu_ps(mb, g + o * plane + 16);
      if (k) {
        // As grad_transpose_avx512: zero where the mask is <= 0 or NaN.
        const __m512 ka = Two ? _mm512_loadu_ps(k + o * plane) : _mm512_maskz_loadu_ps(ma, k + o * plane);
        ga[o] = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(ka, zero, _CMP_GT_OQ), ga[o]);
        if (Two) {
          const __m512 kb = _mm512_maskz_loadu_ps(mb, k + o * plane + 16);
          gb[o] = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(kb, zero, _CMP_GT_OQ), gb[o]);
        }
      }
      bsum[o] = _mm512_add_ps(bsum[o], Two ? _mm512_add_ps(ga[o], gb[o]) : ga[o]);  // float32, as in bf16
      if (bf16) {                                                                   // the products' operand only
        ga[o] = round_bf16(ga[o]);
        if (Two) gb[o] = round_bf16(gb[o]);
      }
    }
    if (k) k += out_w;
#pragma GCC unroll 12
    for (int i = 0; i < NR; ++i) {
      const float* r = row + i * padded_w;
      const __m512i v0 = _mm512_castps_si512(Two ? _mm512_loadu_ps(r) : _mm512_maskz_loadu_ps(m0, r));
      const __m512i v1 = _mm512_castps_si512(_mm512_maskz_loadu_ps(m1, r + 16));
      row_taps(acc, i, ma, v0, v1, ga, std::make_integer_sequence<int, KW>{});
      if (Two) {
        const __m512i v2 = _mm512_castps_si512(_mm512_maskz_loadu_ps(m2, r + 32));
        row_taps(acc, i, mb, v1, v2, gb, std::make_integer_sequence<int, KW>{});
      }
    }
  }
}

template <int NO, int KW, int NR>
LADON_TARGET_AVX512 void single_channel_grad_tile(i64 out_h, i64 out_w, i64 padded_w, i64 kernel_w,
                                                  const float* __restrict in, const float* __restrict grad,
                                                  const float* __restrict mask, i64 plane, bool with_bias, bool bf16,
                                                  float* __restrict lanes, i64 lane_stride) {
  __m512 acc[NO][NR][KW], bsum[NO];
#pragma GCC unroll 2
  for (int o = 0; o < NO; ++o) {
    bsum[o] = _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < NR; ++i)
#pragma GCC unroll 12
      for (int j = 0; j < KW; ++j) acc[o][i][j] = _mm512_setzero_ps();
  }
  // Bands of up to 32 columns, each down all rows (band_rows): the band's loop is the long one,
  // with the same lanes all the way down. The first band prefetches.
  for (i64 x0 = 0; x0 < out_w; x0 += 32) {
    const i64 n = std::min<i64>(32, out_w - x0);
    const float* k = mask ? mask + x0 : nullptr;
    if (n > 16)
      band_rows<NO, KW, NR, true>(acc, bsum, out_h, out_w, n, padded_w, plane, in + x0, grad + x0, k, x0 == 0, bf16);
    else
      band_rows<NO, KW, NR, false>(acc, bsum, out_h, out_w, n, padded_w, plane, in + x0, grad + x0, k, x0 == 0, bf16);
  }
#pragma GCC unroll 2
  for (int o = 0; o < NO; ++o) {
    float* l = lanes + o * lane_stride;
#pragma GCC unroll 12
    for (int i = 0; i < NR; ++i)
#pragma GCC unroll 12
      for (int j = 0; j < KW; ++j) {
        float* lane = l + (i * kernel_w + j) * 16;
        _mm512_storeu_ps(lane, _mm512_add_ps(_mm512_loadu_ps(lane), acc[o][i][j]));
      }
    if (with_bias) {
      float* b = lanes + o * lane_stride + (lane_stride - 16);
      _mm512_storeu_ps(b, _mm512_add_ps(_mm512_loadu_ps(b), bsum[o]));
    }
  }
}

using SingleChannelGradFn = void (*)(i64, i64, i64, i64, const float*, const float*, const float*, i64, bool, bool,
                                     float*, i64);
constexpr int kGradTaps = 12;  // taps per single_channel_grad_tile: 24 accumulators for two channels

// kSingleChannelGradTiles[KW - 1][NR - 1][NO - 1], null where NR * KW > kGradTaps.
template <int NO, int KW, int NR>
constexpr SingleChannelGradFn single_channel_grad_entry() {
  if constexpr (NR * KW <= kGradTaps)
    return &single_channel_grad_tile<NO, KW, NR>;
  else
    return nullptr;
}
template <std::size_t... I>
constexpr auto single_channel_grad_table(std::index_sequence<I...>) {
  constexpr int n = kGradTaps;
  std::array<std::array<std::array<SingleChannelGradFn, 2>, n>, n> table{};
  ((table[I / n][I % n] = {single_channel_grad_entry<1, I / n + 1, I % n + 1>(),
                           single_channel_grad_entry<2, I / n + 1, I % n + 1>()}),
   ...);
  return table;
}
constexpr auto kSingleChannelGradTiles = single_channel_grad_table(std::make_index_sequence<kGradTaps * kGradTaps>{});

// Channel planes 2q and 2q + 1 (zero past the last) into plane q of words, 16 positions at a time:
// one vcvtne2ps2bf16 (round to nearest even) and the interleave of its halves.
LADON_TARGET_AVX512_BF16 void pair_planes_bf16(i64 channels, i64 plane, const float* src, std::uint32_t* dst) {
  for (i64 q = 0; 2 * q < channels; ++q) {
    const float* lo = src + 2 * q * plane;
    const float* hi = lo + plane;
    const bool has_high = 2 * q + 1 < channels;
    for (i64 x = 0; x < plane; x += 16) {
      const __mmask16 mask = detail::first_lanes16(plane - x);
      const __m512 l = _mm512_maskz_loadu_ps(mask, lo + x);
      const __m512 h = has_high ? _mm512_maskz_loadu_ps(mask, hi + x) : _mm512_setzero_ps();
      _mm512_mask_storeu_epi32(dst + q * plane + x, mask, detail::bf16_pair_words(l, h));
    }
  }
}

// offsets[t]: where step t = (c, i, j) of the sum over (channel, tap) reads in the padded image,
// relative to the output position: c * plane + i * padded_w + j.
std::vector<i64> step_offsets(const DirectConv& g) {
  std::vector<i64> offsets;
  offsets.reserve(static_cast<std::size_t>(g.channels * g.kernel_h * g.kernel_w));
  for (i64 c = 0; c < g.channels; ++c)
    for (i64 i = 0; i < g.kernel_h; ++i)
      for (i64 j = 0; j < g.kernel_w; ++j) offsets.push_back((c * g.padded_h + i) * g.padded_w + j);
  return offsets;
}

// The forward's tile walk, for the float32 tiles (T = float, k steps (c, i, j)) and the bf16 ones
// (T = words, k steps (channel pair, i, j)): panels of 32 output channels, tiles of up to 14
// positions of one output row.
template <class Tiles, class T>
void direct_tiles(const Tiles& tiles, const DirectConv& g, i64 k, const std::vector<i64>& offsets, const T* in,
                  const T* packed, const float* bias, Activation activation, float* out) {
  const i64 out_h = g.padded_h - g.kernel_h + 1, out_w = g.padded_w - g.kernel_w + 1, out_plane = out_h * out_w;
  for (i64 o0 = 0; o0 < g.out_channels; o0 += kPanel) {
    const i64 nv = std::min<i64>(2, detail::ceil_div(g.out_channels - o0, 16));
    for (i64 y = 0; y < out_h; ++y)
      for (i64 x0 = 0; x0 < out_w; x0 += kRows) {
        const i64 mr = std::min<i64>(kRows, out_w - x0);
        tiles[mr - 1][nv - 1](g, k, offsets.data(), in + y * g.padded_w + x0, packed + o0 * k, bias, activation, o0,
                              out + o0 * out_plane + y * out_w + x0, out_plane);
      }
  }
}

// The weight gradient's tile walk, float32 or bf16 as direct_tiles: panels of 32 output channels,
// chunks of up to 14 steps (c, i, j).
template <class Tiles, class T>
void weight_grad_tiles(const Tiles& tiles, const DirectConv& g, i64 ldg, const T* in, const T* grad,
                       float* packed_grad) {
  const i64 out_h = g.padded_h - g.kernel_h + 1, out_w = g.padded_w - g.kernel_w + 1;
  const i64 k = g.channels * g.kernel_h * g.kernel_w;
  const std::vector<i64> offsets = step_offsets(g);
  for (i64 o0 = 0; o0 < g.out_channels; o0 += kPanel) {
    const i64 nv = std::min<i64>(2, detail::ceil_div(g.out_channels - o0, 16));
    for (i64 t0 = 0; t0 < k; t0 += kRows) {
      const i64 mr = std::min<i64>(kRows, k - t0);
      tiles[mr - 1][nv - 1](out_h, out_w, g.padded_w, offsets.data() + t0, in, grad + o0, ldg,
                            packed_grad + (o0 * k + t0 * kPanel));
    }
  }
}

#endif  // LADON_X86

}  // namespace

bool conv2d_direct_available() {
#if LADON_X86
  return active_isa() >= Isa::avx2;
#else
  return false;
#endif
}

bool conv2d_direct_weight_grad_available() {
#if LADON_X86
  return active_isa() >= Isa::avx512;
#else
  return false;
#endif
}

std::int64_t conv2d_direct_packed_size(const DirectConv& g) {
  return detail::round_up(g.out_channels, kPanel) * g.channels * g.kernel_h * g.kernel_w;
}

void conv2d_direct_pack(const DirectConv& g, const float* weight, bool transpose_flip, float* packed) {
  const i64 taps = g.kernel_h * g.kernel_w, k = g.channels * taps;
  const i64 panels = detail::ceil_div(g.out_channels, kPanel);
  for (i64 p = 0; p < panels; ++p)
    for (i64 c = 0; c < g.channels; ++c)
      for (i64 t = 0; t < taps; ++t) {
        float* dst = packed + (p * k + c * taps + t) * kPanel;
        for (i64 l = 0; l < kPanel; ++l) {
          const i64 o = p * kPanel + l;
          float value = 0.0f;
          if (o < g.out_channels) {
            // Forward: weight [out_channels, channels, kh, kw]. Input gradient: weight is the
            // forward's [channels, out_channels, kh, kw] (its roles swapped), taps reversed.
            value = transpose_flip ? weight[(c * g.out_channels + o) * taps + (taps - 1 - t)]
                                   : weight[(o * g.channels + c) * taps + t];
          }
          dst[l] = value;
        }
      }
}

void conv2d_direct(const DirectConv& g, const float* padded, const float* packed, const float* bias,
                   Activation activation, float* out) {
#if LADON_X86
  if (!conv2d_direct_available()) needs_avx2();
  if (active_isa() < Isa::avx512) return conv_avx2(g, padded, packed, bias, activation, out);
  if (g.channels == 1) {
    single_channel_conv(g, padded, packed, bias, activation, out);
    return;
  }
  direct_tiles(kTiles, g, g.channels * g.kernel_h * g.kernel_w, step_offsets(g), padded, packed, bias, activation, out);
#else
  (void)g, (void)padded, (void)packed, (void)bias, (void)activation, (void)out;
  needs_avx2();
#endif
}

bool conv2d_direct_bf16_available() {
#if LADON_X86
  return active_isa() >= Isa::avx512_bf16;
#else
  return false;
#endif
}

bool conv2d_direct_bf16_preferred() { return conv2d_direct_bf16_available() && gemm_bf16_kernel() == Bf16Kernel::dot; }

std::int64_t conv2d_direct_bf16_image_size(const DirectConv& g) {
  return detail::ceil_div(g.channels, 2) * g.padded_h * g.padded_w;
}

std::int64_t conv2d_direct_bf16_packed_size(const DirectConv& g) {
  return detail::round_up(g.out_channels, kPanel) * detail::ceil_div(g.channels, 2) * g.kernel_h * g.kernel_w;
}

void conv2d_direct_bf16_pack(const DirectConv& g, const float* packed, std::uint32_t* words) {
  const i64 taps = g.kernel_h * g.kernel_w, k = g.channels * taps, pairs = detail::ceil_div(g.channels, 2);
  const i64 panels = detail::ceil_div(g.out_channels, kPanel);
  for (i64 p = 0; p < panels; ++p)
    for (i64 q = 0; q < pairs; ++q)
      for (i64 t = 0; t < taps; ++t) {
        const float* lo = packed + (p * k + 2 * q * taps + t) * kPanel;
        const float* hi = 2 * q + 1 < g.channels ? lo + taps * kPanel : nullptr;
        std::uint32_t* dst = words + (p * pairs * taps + q * taps + t) * kPanel;
        for (i64 l = 0; l < kPanel; ++l)
          dst[l] = std::uint32_t{float_to_bf16(lo[l])} | std::uint32_t{hi ? float_to_bf16(hi[l]) : std::uint16_t{0}}
                                                             << 16;
      }
}

void conv2d_direct_bf16_pair(const DirectConv& g, const float* padded, std::uint32_t* pairs) {
#if LADON_X86
  if (!conv2d_direct_bf16_available()) needs_avx512_bf16();
  pair_planes_bf16(g.channels, g.padded_h * g.padded_w, padded, pairs);
#else
  (void)g, (void)padded, (void)pairs;
  needs_avx512_bf16();
#endif
}

void conv2d_direct_bf16(const DirectConv& g, const std::uint32_t* pairs, const std::uint32_t* packed, const float* bias,
                        Activation activation, float* out) {
#if LADON_X86
  if (!conv2d_direct_bf16_available()) needs_avx512_bf16();
  DirectConv paired = g;  // the sum's steps: (channel pair, i, j)
  paired.channels = detail::ceil_div(g.channels, 2);
  direct_tiles(kTilesBf16, g, paired.channels * g.kernel_h * g.kernel_w, step_offsets(paired), pairs, packed, bias,
               activation, out);
#else
  (void)g, (void)pairs, (void)packed, (void)bias, (void)activation, (void)out;
  needs_avx512_bf16();
#endif
}

std::int64_t conv2d_direct_bf16_grad_size(const DirectConv& g) {
  const i64 out_h = g.padded_h - g.kernel_h + 1, out_w = g.padded_w - g.kernel_w + 1;
  return out_h * detail::ceil_div(out_w, 2) * conv2d_direct_grad_ld(g);
}

void conv2d_direct_bf16_weight_operands(const DirectConv& g, const float* padded, const float* grad_t,
                                        std::uint32_t* shifted, std::uint32_t* grad_pairs) {
#if LADON_X86
  if (!conv2d_direct_bf16_available()) needs_avx512_bf16();
  shift_pair_bf16(g.channels * g.padded_h * g.padded_w, padded, shifted);
  grad_pair_bf16(g.padded_h - g.kernel_h + 1, g.padded_w - g.kernel_w + 1, conv2d_direct_grad_ld(g), grad_t,
                 grad_pairs);
#else
  (void)g, (void)padded, (void)grad_t, (void)shifted, (void)grad_pairs;
  needs_avx512_bf16();
#endif
}

void conv2d_direct_bf16_weight_grad(const DirectConv& g, const std::uint32_t* shifted, const std::uint32_t* grad_pairs,
                                    float* packed_grad) {
#if LADON_X86
  if (!conv2d_direct_bf16_available()) needs_avx512_bf16();
  weight_grad_tiles(kGradTilesBf16, g, conv2d_direct_grad_ld(g), shifted, grad_pairs, packed_grad);
#else
  (void)g, (void)shifted, (void)grad_pairs, (void)packed_grad;
  needs_avx512_bf16();
#endif
}

std::int64_t conv2d_direct_grad_ld(const DirectConv& g) { return detail::round_up(g.out_channels, kPanel); }

void conv2d_direct_grad_transpose(const DirectConv& g, const float* grad, const float* mask, float* grad_t,
                                  float* bias_sum) {
#if LADON_X86
  if (!conv2d_direct_weight_grad_available()) needs_avx512();
  const i64 plane = (g.padded_h - g.kernel_h + 1) * (g.padded_w - g.kernel_w + 1);
  grad_transpose_avx512(g.out_channels, plane, grad, mask, conv2d_direct_grad_ld(g), grad_t, bias_sum);
#else
  (void)g, (void)grad, (void)mask, (void)grad_t, (void)bias_sum;
  needs_avx512();
#endif
}

void conv2d_direct_weight_grad(const DirectConv& g, const float* padded, const float* grad_t, float* packed_grad) {
#if LADON_X86
  if (!conv2d_direct_weight_grad_available()) needs_avx512();
  weight_grad_tiles(kGradTiles, g, conv2d_direct_grad_ld(g), padded, grad_t, packed_grad);
#else
  (void)g, (void)padded, (void)grad_t, (void)packed_grad;
  needs_avx512();
#endif
}

std::int64_t conv2d_single_channel_grad_size(const DirectConv& g) {
  return g.out_channels * (g.kernel_h * g.kernel_w + 1) * 16;
}

void conv2d_single_channel_weight_grad(const DirectConv& g, const float* padded, const float* grad, const float* mask,
                                       bool bf16, float* lanes) {
#if LADON_X86
  if (!conv2d_direct_weight_grad_available()) needs_avx512();
  if (g.channels != 1) throw std::logic_error("conv2d_single_channel_weight_grad: needs one input channel");
  const i64 out_h = g.padded_h - g.kernel_h + 1, out_w = g.padded_w - g.kernel_w + 1, plane = out_h * out_w;
  const i64 taps = g.kernel_h * g.kernel_w, lane_stride = (taps + 1) * 16;
  // The taps in chunks of whole rows of at most kGradTaps columns, NR x KW with NR * KW <= kGradTaps,
  // near-equal (5 x 5: rows 2, 2, 1; 13 wide: columns 7, 6): every chunk re-reads the gradient, so
  // fewer and fuller chunks are better.
  const i64 col_chunks = detail::ceil_div(g.kernel_w, kGradTaps), cols = detail::ceil_div(g.kernel_w, col_chunks);
  const i64 row_chunks = detail::ceil_div(g.kernel_h, kGradTaps / cols),
            rows = detail::ceil_div(g.kernel_h, row_chunks);
  for (i64 o0 = 0; o0 < g.out_channels; o0 += 2) {
    const i64 no = std::min<i64>(2, g.out_channels - o0);
    for (i64 i0 = 0; i0 < g.kernel_h; i0 += rows)
      for (i64 j0 = 0; j0 < g.kernel_w; j0 += cols) {
        const i64 nr = std::min(rows, g.kernel_h - i0), nc = std::min(cols, g.kernel_w - j0);
        kSingleChannelGradTiles[nc - 1][nr - 1][no - 1](
            out_h, out_w, g.padded_w, g.kernel_w, padded + i0 * g.padded_w + j0, grad + o0 * plane,
            mask ? mask + o0 * plane : nullptr, plane, i0 == 0 && j0 == 0, bf16,
            lanes + o0 * lane_stride + (i0 * g.kernel_w + j0) * 16, lane_stride);
      }
  }
#else
  (void)g, (void)padded, (void)grad, (void)mask, (void)bf16, (void)lanes;
  needs_avx512();
#endif
}

void conv2d_single_channel_grad_add(const DirectConv& g, const float* lanes, float* weight_grad, float* bias_grad) {
  const i64 taps = g.kernel_h * g.kernel_w;
  auto lane_sum = [](const float* l) {
    float sum = 0;
    for (int v = 0; v < 16; ++v) sum += l[v];
    return sum;
  };
  for (i64 o = 0; o < g.out_channels; ++o) {
    const float* l = lanes + o * (taps + 1) * 16;  // the taps' lanes, then the bias's
    if (weight_grad)
      for (i64 t = 0; t < taps; ++t) weight_grad[o * taps + t] += lane_sum(l + 16 * t);
    if (bias_grad) bias_grad[o] += lane_sum(l + 16 * taps);
  }
}

void conv2d_direct_unpack_add(const DirectConv& g, const float* packed, float* weight) {
  const i64 taps = g.kernel_h * g.kernel_w, k = g.channels * taps;
  for (i64 o = 0; o < g.out_channels; ++o) {
    const float* src = packed + (o / kPanel) * k * kPanel + o % kPanel;
    for (i64 t = 0; t < k; ++t) weight[o * k + t] += src[t * kPanel];
  }
}

}  // namespace ladon::kernels
