// kernels::conv2d_direct (conv_direct.cpp) against a plain loop over the same padded image: every
// register tile shape (output rows of 1 to 30 positions: 14-position tiles and every remainder),
// 1 to 70 output channels (one or two vectors per 32-channel panel, partial last vectors), kernels
// of 1 x 1 to 5 x 3, bias or none, ReLU or none, NaN passing through; and the packed weights of the
// input gradient (transpose_flip) against the adjoint written out by hand; the weight gradient
// (conv2d_direct_weight_grad, with its transposed and masked output gradient) at the same shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/conv.h"
#include "kernels/gemm_bf16.h"  // round_to_bf16
#include "kernels/isa.h"

namespace {

using ladon::kernels::Activation;
using ladon::kernels::DirectConv;
using i64 = std::int64_t;

std::vector<float> random_values(i64 n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

// out[o, y, x] = act(bias[o] + sum w[o, c, i, j] in[c, y + i, x + j]), in double.
std::vector<float> reference(const DirectConv& g, const std::vector<float>& in, const std::vector<float>& w,
                             const float* bias, Activation act) {
  const i64 oh = g.padded_h - g.kernel_h + 1, ow = g.padded_w - g.kernel_w + 1;
  std::vector<float> out(static_cast<std::size_t>(g.out_channels * oh * ow));
  for (i64 o = 0; o < g.out_channels; ++o)
    for (i64 y = 0; y < oh; ++y)
      for (i64 x = 0; x < ow; ++x) {
        double s = bias ? bias[o] : 0.0;
        for (i64 c = 0; c < g.channels; ++c)
          for (i64 i = 0; i < g.kernel_h; ++i)
            for (i64 j = 0; j < g.kernel_w; ++j)
              s += static_cast<double>(w[static_cast<std::size_t>(((o * g.channels + c) * g.kernel_h + i) * g.kernel_w + j)]) *
                   in[static_cast<std::size_t>((c * g.padded_h + y + i) * g.padded_w + x + j)];
        const float v = static_cast<float>(s);
        out[static_cast<std::size_t>((o * oh + y) * ow + x)] = act == Activation::relu && !(v >= 0.0f) && !std::isnan(v) ? 0.0f : v;
      }
  return out;
}

std::vector<float> direct(const DirectConv& g, const std::vector<float>& in, const std::vector<float>& w,
                          bool transpose_flip, const float* bias, Activation act) {
  std::vector<float> packed(static_cast<std::size_t>(ladon::kernels::conv2d_direct_packed_size(g)), -7.0f);
  ladon::kernels::conv2d_direct_pack(g, w.data(), transpose_flip, packed.data());
  const i64 oh = g.padded_h - g.kernel_h + 1, ow = g.padded_w - g.kernel_w + 1;
  std::vector<float> out(static_cast<std::size_t>(g.out_channels * oh * ow) + 16, -3.0f);  // 16 guard floats
  ladon::kernels::conv2d_direct(g, in.data(), packed.data(), bias, act, out.data());
  for (std::size_t i = out.size() - 16; i < out.size(); ++i) CHECK(out[i] == -3.0f);  // nothing past the end
  out.resize(out.size() - 16);
  return out;
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, i64 k) {
  REQUIRE(got.size() == want.size());
  i64 bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      bad += !std::isnan(got[i]);
      continue;
    }
    bad += !(std::fabs(got[i] - want[i]) <= 2e-6 * static_cast<double>(k + 1));  // float32 sums of k terms in [-1, 1]
  }
  CHECK_MESSAGE(bad == 0, bad, " of ", got.size(), " outputs differ");
}

// One convolution of the shape tables: channels, output channels, kernel, padded input plane.
struct Case {
  i64 c, o, kh, kw, ph, pw;
  DirectConv conv() const {
    return {.channels = c, .out_channels = o, .kernel_h = kh, .kernel_w = kw, .padded_h = ph, .padded_w = pw};
  }
};
std::ostream& operator<<(std::ostream& os, const Case& t) {
  return os << "c " << t.c << " o " << t.o << " kernel " << t.kh << "x" << t.kw << " padded " << t.ph << "x" << t.pw;
}

// A case's padded input, with a NaN that reaches some outputs of every channel, ReLU or not (a
// 1-wide plane: index 1), its weights and its bias.
struct CaseInputs {
  std::vector<float> in, w, bias;
};
CaseInputs case_inputs(const Case& t) {
  CaseInputs v{random_values(t.c * t.ph * t.pw, 1), random_values(t.o * t.c * t.kh * t.kw, 2), random_values(t.o, 3)};
  v.in[static_cast<std::size_t>(std::min<i64>(t.pw + 1, t.c * t.ph * t.pw - 1))] = NAN;
  return v;
}

// Adds one image's weight and bias gradients, in double, into want_w ([o, c, kh, kw]) and want_b:
// the output gradient zeroed where masked and mask <= 0 (or NaN), times the padded input.
void add_reference_grads(const Case& t, const std::vector<float>& in, const std::vector<float>& grad,
                         const std::vector<float>& mask, bool masked, std::vector<double>& want_w,
                         std::vector<double>& want_b) {
  const i64 oh = t.ph - t.kh + 1, ow = t.pw - t.kw + 1;
  for (i64 o = 0; o < t.o; ++o)
    for (i64 y = 0; y < oh; ++y)
      for (i64 x = 0; x < ow; ++x) {
        const std::size_t at = static_cast<std::size_t>((o * oh + y) * ow + x);
        const double gv = masked && !(mask[at] > 0.0f) ? 0.0 : grad[at];
        want_b[static_cast<std::size_t>(o)] += gv;
        for (i64 c = 0; c < t.c; ++c)
          for (i64 i = 0; i < t.kh; ++i)
            for (i64 j = 0; j < t.kw; ++j)
              want_w[static_cast<std::size_t>(((o * t.c + c) * t.kh + i) * t.kw + j)] +=
                  gv * in[static_cast<std::size_t>((c * t.ph + y + i) * t.pw + x + j)];
      }
}

}  // namespace

// Runs check under each instruction set whose direct kernels this CPU has (avx2, avx512: the
// avx512_bf16 level runs the avx512 ones).
template <typename F>
void for_each_direct_isa(bool weight_grad, F&& check) {
  using ladon::kernels::Isa;
  for (const Isa isa : {Isa::avx2, Isa::avx512}) {
    if (!ladon::kernels::isa_supported(isa)) continue;
    const ladon::kernels::IsaOverride use(isa);
    if (!(weight_grad ? ladon::kernels::conv2d_direct_weight_grad_available()
                      : ladon::kernels::conv2d_direct_available()))
      continue;
    INFO("instruction set: " << ladon::kernels::isa_name(isa));
    check();
  }
}

TEST_CASE("conv2d_direct: available exactly from AVX2 on, its weight gradient from AVX-512 on, bf16 from AVX512_BF16") {
  using ladon::kernels::Isa;
  for (const Isa isa : ladon::kernels::kIsas) {
    if (!ladon::kernels::isa_supported(isa)) continue;
    CAPTURE(ladon::kernels::isa_name(isa));
    const ladon::kernels::IsaOverride use(isa);
    CHECK(ladon::kernels::conv2d_direct_available() == (isa >= Isa::avx2));
    CHECK(ladon::kernels::conv2d_direct_weight_grad_available() == (isa >= Isa::avx512));
    CHECK(ladon::kernels::conv2d_direct_bf16_available() == (isa >= Isa::avx512_bf16));
    if (ladon::kernels::conv2d_direct_bf16_preferred()) CHECK(ladon::kernels::conv2d_direct_bf16_available());
    if (!ladon::kernels::conv2d_direct_bf16_available()) {
      const DirectConv g;
      std::vector<std::uint32_t> words(4);
      const std::vector<float> x(4);
      CHECK_THROWS_WITH_AS(ladon::kernels::conv2d_direct_bf16_pair(g, x.data(), words.data()),
                           "conv2d_direct_bf16: needs AVX512_BF16 (conv2d_direct_bf16_available)", std::logic_error);
    }
  }
}

TEST_CASE("conv2d_direct: matches a plain loop for every tile shape") {
  // The AVX2 tiles: 6 consecutive positions of the plane (crossing output rows) x 16 channels, and
  // for one input channel 2 x 8 positions of a row x 6 channels; the AVX-512 ones 14 positions of a
  // row x 32 channels, and 2 x 16 positions x 12 channels.
  const Case cases[] = {{1, 32, 3, 3, 30, 30},
                        {32, 64, 3, 3, 16, 16},
                        {3, 1, 1, 1, 4, 17},
                        {2, 17, 3, 3, 5, 16},
                        {4, 70, 5, 3, 9, 32},
                        {5, 16, 3, 3, 3, 3},
                        {1, 33, 2, 2, 6, 15},
                        // Planes of 1 to 7 positions (every AVX2 tail tile), 8 channels and 9.
                        {2, 8, 1, 1, 1, 1},
                        {3, 9, 2, 2, 3, 4},
                        {2, 8, 3, 3, 4, 5},
                        {2, 9, 3, 1, 9, 1},
                        {64, 32, 3, 3, 16, 16},
                        // One input channel (single_channel_tile): LeNet's 9 x 9 layer; rows of 1, 16,
                        // 18 and 33 positions (full and masked 16-position vectors); 1 to 40 channels
                        // (blocks of 12 or 6, partial last blocks, and blocks cut at a 32-channel panel).
                        {1, 10, 9, 9, 36, 36},
                        {1, 1, 1, 2, 2, 2},
                        {1, 16, 3, 3, 4, 18},
                        {1, 40, 2, 3, 5, 20},
                        {1, 7, 1, 4, 3, 36},
                        {1, 5, 1, 1, 7, 3},
                        {1, 3, 2, 2, 5, 11}};
  std::int64_t runs = 0;
  for_each_direct_isa(false, [&] {
    ++runs;
    for (const Case& t : cases)
      for (const bool with_bias : {false, true})
        for (const Activation act : {Activation::none, Activation::relu}) {
          CAPTURE(t);
          const DirectConv g = t.conv();
          const auto [in, w, bias] = case_inputs(t);
          const float* b = with_bias ? bias.data() : nullptr;
          check_close(direct(g, in, w, false, b, act), reference(g, in, w, b, act), t.c * t.kh * t.kw);
        }
  });
  if (runs == 0) MESSAGE("no AVX2 on this CPU: conv2d_direct is not used");
}

TEST_CASE("conv2d_direct: transpose_flip packs the input gradient's weights") {
  for_each_direct_isa(false, [] {
    // A forward convolution of fc = 5 channels in and fo = 3 out, weight [3, 5, 3, 2]: its input
    // gradient is a convolution of 3 channels in and 5 out with w'[c][o][i][j] = w[o][c][2 - i][1 - j].
    const i64 fc = 5, fo = 3, kh = 3, kw = 2;
    const std::vector<float> w = random_values(fo * fc * kh * kw, 4);  // [fo, fc, kh, kw] as the forward holds it
    std::vector<float> flipped(w.size());
    for (i64 c = 0; c < fc; ++c)
      for (i64 o = 0; o < fo; ++o)
        for (i64 i = 0; i < kh; ++i)
          for (i64 j = 0; j < kw; ++j)
            flipped[static_cast<std::size_t>(((c * fo + o) * kh + i) * kw + j)] =
                w[static_cast<std::size_t>(((o * fc + c) * kh + (kh - 1 - i)) * kw + (kw - 1 - j))];
    const DirectConv g{
        .channels = fo, .out_channels = fc, .kernel_h = kh, .kernel_w = kw, .padded_h = 6, .padded_w = 19};
    const std::vector<float> in = random_values(fo * 6 * 19, 5);
    check_close(direct(g, in, w, true, nullptr, Activation::none), reference(g, in, flipped, nullptr, Activation::none),
                fo * kh * kw);
  });
}

TEST_CASE("conv2d_direct_bf16: the plain loop on bf16-rounded operands, and the emulation, for every tile shape") {
  if (!ladon::kernels::conv2d_direct_bf16_available()) {
    MESSAGE("no AVX512_BF16 on this CPU: conv2d_direct_bf16 is not used (the emulation rounds for conv2d_direct)");
    return;
  }
  // Odd channel counts (a last pair with a zero high half), one channel, 14-position tiles and every
  // remainder, 1 to 70 output channels, bias or none, ReLU or none, NaN passing through.
  const Case cases[] = {{32, 64, 3, 3, 16, 16}, {64, 32, 3, 3, 16, 16}, {3, 1, 1, 1, 4, 17},  {2, 17, 3, 3, 5, 16},
                        {4, 70, 5, 3, 9, 32},   {5, 16, 3, 3, 3, 3},    {1, 33, 2, 2, 6, 15}, {7, 9, 2, 2, 3, 4}};
  for (const Case& t : cases)
    for (const bool with_bias : {false, true})
      for (const Activation act : {Activation::none, Activation::relu}) {
        CAPTURE(t);
        const DirectConv g = t.conv();
        const auto [in, w, bias] = case_inputs(t);
        const float* b = with_bias ? bias.data() : nullptr;
        std::vector<float> packed(static_cast<std::size_t>(ladon::kernels::conv2d_direct_packed_size(g)));
        ladon::kernels::conv2d_direct_pack(g, w.data(), false, packed.data());
        std::vector<std::uint32_t> pairs(static_cast<std::size_t>(ladon::kernels::conv2d_direct_bf16_image_size(g)));
        std::vector<std::uint32_t> words(static_cast<std::size_t>(ladon::kernels::conv2d_direct_bf16_packed_size(g)));
        ladon::kernels::conv2d_direct_bf16_pair(g, in.data(), pairs.data());
        ladon::kernels::conv2d_direct_bf16_pack(g, packed.data(), words.data());
        const i64 oh = t.ph - t.kh + 1, ow = t.pw - t.kw + 1;
        std::vector<float> got(static_cast<std::size_t>(t.o * oh * ow) + 16, -3.0f);  // 16 guard floats
        ladon::kernels::conv2d_direct_bf16(g, pairs.data(), words.data(), b, act, got.data());
        for (std::size_t i = got.size() - 16; i < got.size(); ++i) CHECK(got[i] == -3.0f);
        got.resize(got.size() - 16);
        // The emulation: the same operands rounded to bf16 in floats (round_to_bf16), summed in double
        // by the plain loop and in float32 by conv2d_direct (the AVX-512 level's kernel).
        std::vector<float> in_rounded = in, w_rounded = w;
        ladon::kernels::round_to_bf16(static_cast<i64>(in_rounded.size()), in_rounded.data());
        ladon::kernels::round_to_bf16(static_cast<i64>(w_rounded.size()), w_rounded.data());
        const i64 k = t.c * t.kh * t.kw;
        check_close(got, reference(g, in_rounded, w_rounded, b, act), k);
        const ladon::kernels::IsaOverride emulate(ladon::kernels::Isa::avx512);
        check_close(got, direct(g, in_rounded, w_rounded, false, b, act), 2 * k);
        const std::vector<float> unrounded = reference(g, in, w, b, act);
        double largest = 0.0;  // the products really ran on rounded operands (where NaN left any)
        bool compared = false;
        for (std::size_t i = 0; i < got.size(); ++i)
          if (!std::isnan(unrounded[i]))
            compared = true, largest = std::max<double>(largest, std::fabs(got[i] - unrounded[i]));
        if (compared) CHECK(largest > 1e-5);
      }
}

TEST_CASE("conv2d_direct_bf16_weight_grad: the plain loop on bf16-rounded operands, and the emulation") {
  if (!ladon::kernels::conv2d_direct_bf16_available()) {
    MESSAGE("no AVX512_BF16 on this CPU: conv2d_direct_bf16_weight_grad is not used");
    return;
  }
  // Output rows of even and odd width (a last position pair with one position), 1 to 70 channels,
  // steps k of 288, 9, 3, 18, 60, 45, 4, 5 and 13 (tiles of every height), masked or not, two images.
  const Case cases[] = {{32, 64, 3, 3, 16, 16}, {1, 32, 3, 3, 30, 30}, {3, 1, 1, 1, 4, 17},  {2, 17, 3, 3, 5, 16},
                        {4, 70, 5, 3, 9, 32},   {5, 16, 3, 3, 3, 3},   {1, 33, 2, 2, 6, 15}, {5, 20, 1, 1, 3, 5},
                        {13, 20, 1, 1, 3, 5},   {2, 9, 3, 3, 7, 6}};
  for (const Case& t : cases)
    for (const bool masked : {false, true}) {
      CAPTURE(t);
      CAPTURE(masked);
      const DirectConv g = t.conv();
      const i64 oh = t.ph - t.kh + 1, ow = t.pw - t.kw + 1, plane = oh * ow, k = t.c * t.kh * t.kw;
      const i64 ld = ladon::kernels::conv2d_direct_grad_ld(g);
      std::vector<float> native(static_cast<std::size_t>(ladon::kernels::conv2d_direct_packed_size(g)), 0.0f);
      std::vector<float> emulated = native;
      std::vector<double> want_w(static_cast<std::size_t>(t.o * k), 0.0), want_b(static_cast<std::size_t>(t.o), 0.0);
      std::vector<std::uint32_t> shifted(static_cast<std::size_t>(t.c * t.ph * t.pw));
      std::vector<std::uint32_t> grad_pairs(static_cast<std::size_t>(ladon::kernels::conv2d_direct_bf16_grad_size(g)));
      for (unsigned image = 0; image < 2; ++image) {
        std::vector<float> in = random_values(t.c * t.ph * t.pw, 10 + image);
        std::vector<float> grad = random_values(t.o * plane, 20 + image);
        const std::vector<float> mask = random_values(t.o * plane, 30 + image);
        std::vector<float> grad_t(static_cast<std::size_t>(plane * ld));
        ladon::kernels::conv2d_direct_grad_transpose(g, grad.data(), masked ? mask.data() : nullptr, grad_t.data(),
                                                     nullptr);
        ladon::kernels::conv2d_direct_bf16_weight_operands(g, in.data(), grad_t.data(), shifted.data(),
                                                           grad_pairs.data());
        ladon::kernels::conv2d_direct_bf16_weight_grad(g, shifted.data(), grad_pairs.data(), native.data());
        // The emulation: the FP32 kernel on the operands rounded to bf16; the reference in double on them.
        ladon::kernels::round_to_bf16(static_cast<i64>(in.size()), in.data());
        ladon::kernels::round_to_bf16(static_cast<i64>(grad.size()), grad.data());
        ladon::kernels::round_to_bf16(static_cast<i64>(grad_t.size()), grad_t.data());
        ladon::kernels::conv2d_direct_weight_grad(g, in.data(), grad_t.data(), emulated.data());
        add_reference_grads(t, in, grad, mask, masked, want_w, want_b);
      }
      std::vector<float> got(want_w.size(), 0.0f), emulation(want_w.size(), 0.0f);
      ladon::kernels::conv2d_direct_unpack_add(g, native.data(), got.data());
      ladon::kernels::conv2d_direct_unpack_add(g, emulated.data(), emulation.data());
      i64 bad = 0, far = 0;
      for (std::size_t i = 0; i < got.size(); ++i) {
        bad += !(std::fabs(got[i] - want_w[i]) <= 4e-6 * static_cast<double>(2 * plane + 1));
        far += !(std::fabs(got[i] - emulation[i]) <= 8e-6 * static_cast<double>(2 * plane + 1));
      }
      CHECK_MESSAGE(bad == 0, bad, " of ", got.size(), " weight gradients differ from the rounded plain loop");
      CHECK_MESSAGE(far == 0, far, " of ", got.size(), " weight gradients differ from the emulation");
    }
}

TEST_CASE("conv2d_direct_weight_grad: matches a plain loop for every tile shape, over two images") {
  if (!ladon::kernels::conv2d_direct_weight_grad_available()) return;
  // Steps k = c kh kw of 9, 288 (20 tiles of 14 and one of 8), 3, 18, 60, 45, 4 and, with 1 x 1
  // kernels, 1, 2, 5, 6, 7, 10, 11, 12, 13: a last tile of every height from 1 to 14. 1 to 70 channels;
  // output planes from 1 x 1 to 28 x 28, whose positions run past every 16-position transpose block.
  const Case cases[] = {{1, 32, 3, 3, 30, 30}, {32, 64, 3, 3, 16, 16}, {3, 1, 1, 1, 4, 17},  {2, 17, 3, 3, 5, 16},
                        {4, 70, 5, 3, 9, 32},  {5, 16, 3, 3, 3, 3},    {1, 33, 2, 2, 6, 15}, {2, 20, 1, 1, 3, 5},
                        {5, 20, 1, 1, 3, 5},   {6, 48, 1, 1, 2, 9},    {7, 20, 1, 1, 3, 5},  {10, 20, 1, 1, 3, 5},
                        {11, 20, 1, 1, 3, 5},  {12, 20, 1, 1, 3, 5},   {13, 20, 1, 1, 3, 5}, {1, 5, 1, 1, 4, 4}};
  for (const Case& t : cases)
    for (const bool masked : {false, true}) {
      CAPTURE(t);
      CAPTURE(masked);
      const DirectConv g = t.conv();
      const i64 oh = t.ph - t.kh + 1, ow = t.pw - t.kw + 1, plane = oh * ow, k = t.c * t.kh * t.kw;
      const i64 ld = ladon::kernels::conv2d_direct_grad_ld(g);
      REQUIRE(ld % 32 == 0);
      REQUIRE(ld >= t.o);
      // Two images: the packed gradient and the bias sums accumulate over both.
      std::vector<float> packed(static_cast<std::size_t>(ladon::kernels::conv2d_direct_packed_size(g)), 0.0f);
      std::vector<float> sums(static_cast<std::size_t>(t.o) + 1, 0.5f);  // one guard float, and a start of 0.5
      std::vector<double> want_w(static_cast<std::size_t>(t.o * k), 0.0), want_b(static_cast<std::size_t>(t.o), 0.5);
      for (unsigned image = 0; image < 2; ++image) {
        const std::vector<float> in = random_values(t.c * t.ph * t.pw, 10 + image);
        const std::vector<float> grad = random_values(t.o * plane, 20 + image);
        const std::vector<float> mask = random_values(t.o * plane, 30 + image);  // about half <= 0
        std::vector<float> grad_t(static_cast<std::size_t>(plane * ld), -5.0f);
        ladon::kernels::conv2d_direct_grad_transpose(g, grad.data(), masked ? mask.data() : nullptr, grad_t.data(),
                                                     sums.data());
        for (i64 p = 0; p < plane; ++p)
          for (i64 o = 0; o < ld; ++o) {
            const std::size_t at = static_cast<std::size_t>(o * plane + p);
            const float want = o >= t.o || (masked && !(mask[at] > 0.0f)) ? 0.0f : grad[at];
            REQUIRE(grad_t[static_cast<std::size_t>(p * ld + o)] == want);
          }
        ladon::kernels::conv2d_direct_weight_grad(g, in.data(), grad_t.data(), packed.data());
        add_reference_grads(t, in, grad, mask, masked, want_w, want_b);
      }
      CHECK(sums.back() == 0.5f);                   // nothing past out_channels
      std::vector<float> got(want_w.size(), 1.0f);  // unpack_add adds: 1 + the gradient
      ladon::kernels::conv2d_direct_unpack_add(g, packed.data(), got.data());
      i64 bad = 0;
      for (std::size_t i = 0; i < got.size(); ++i)
        bad += !(std::fabs(got[i] - (1.0 + want_w[i])) <= 4e-6 * static_cast<double>(2 * plane + 1));
      CHECK_MESSAGE(bad == 0, bad, " of ", got.size(), " weight gradients differ");
      for (i64 o = 0; o < t.o; ++o)
        CHECK(std::fabs(sums[static_cast<std::size_t>(o)] - want_b[static_cast<std::size_t>(o)]) <=
              4e-6 * static_cast<double>(2 * plane + 1));
    }
}

TEST_CASE(
    "conv2d_single_channel_weight_grad: matches a plain loop for every tap chunk and channel pair, over two images") {
  if (!ladon::kernels::conv2d_direct_weight_grad_available()) return;
  // One input channel: 9 taps (the CNN's conv1: 28 x 28, 32 channels), 4, 1, 25 (chunks of rows 2,
  // 2, 1), 81 (LeNet's 9 x 9: 9 chunks of one row), 2 x 13 (chunks of columns 7 and 6, one row each,
  // so a row's inputs reach 16 + 12 lanes); odd channel counts (a last lone channel); rows of 1 to 60
  // positions: one band of 32 columns or fewer as one vector (4, 14, 16) or two (17, 18, 28), two
  // bands of two vectors (60), a full band and one of a part vector (36). With bf16 the weight sums
  // take the gradient rounded to bf16 (the input comes rounded) and the bias sums the gradient as is.
  const Case cases[] = {{1, 32, 3, 3, 30, 30}, {1, 33, 2, 2, 6, 15},  {1, 5, 1, 1, 4, 4},
                        {1, 7, 5, 5, 9, 40},   {1, 10, 9, 9, 36, 36}, {1, 1, 3, 3, 3, 18},
                        {1, 3, 2, 13, 5, 30},  {1, 3, 3, 3, 4, 62},   {1, 2, 3, 3, 4, 19}};
  for (const Case& t : cases)
    for (const bool masked : {false, true})
      for (const bool bf16 : {false, true}) {
        CAPTURE(t);
        CAPTURE(masked);
        CAPTURE(bf16);
        const DirectConv g = t.conv();
        const i64 oh = t.ph - t.kh + 1, ow = t.pw - t.kw + 1, plane = oh * ow, taps = t.kh * t.kw;
        const i64 size = ladon::kernels::conv2d_single_channel_grad_size(g);
        std::vector<float> lanes(static_cast<std::size_t>(size) + 16, 0.0f);  // 16 guard floats
        std::vector<double> want_w(static_cast<std::size_t>(t.o * taps), 0.0),
            want_b(static_cast<std::size_t>(t.o), 0.0);
        for (unsigned image = 0; image < 2; ++image) {
          std::vector<float> in = random_values(t.ph * t.pw, 40 + image);
          if (bf16) ladon::kernels::round_to_bf16(static_cast<i64>(in.size()), in.data());
          std::vector<float> grad = random_values(t.o * plane, 50 + image);
          std::vector<float> mask = random_values(t.o * plane, 60 + image);  // about half <= 0
          // A NaN mask counts as <= 0; a NaN gradient under a mask <= 0 is dropped, as in the transpose.
          mask[0] = std::nanf("");
          grad[1] = masked && !(mask[1] > 0.0f) ? std::nanf("") : grad[1];
          ladon::kernels::conv2d_single_channel_weight_grad(g, in.data(), grad.data(), masked ? mask.data() : nullptr,
                                                            bf16, lanes.data());
          std::vector<float> rounded = grad;
          if (bf16) ladon::kernels::round_to_bf16(static_cast<i64>(rounded.size()), rounded.data());
          std::vector<double> unused_w(want_w.size()), unused_b(want_b.size());
          add_reference_grads(t, in, rounded, mask, masked, want_w, unused_b);
          add_reference_grads(t, in, grad, mask, masked, unused_w, want_b);
        }
        for (std::size_t i = static_cast<std::size_t>(size); i < lanes.size(); ++i) CHECK(lanes[i] == 0.0f);
        std::vector<float> got_w(want_w.size(), 1.0f), got_b(want_b.size(), 0.5f);  // grad_add adds
        ladon::kernels::conv2d_single_channel_grad_add(g, lanes.data(), got_w.data(), got_b.data());
        const double tol = 4e-6 * static_cast<double>(2 * plane + 1);
        i64 bad = 0;
        for (std::size_t i = 0; i < got_w.size(); ++i) bad += !(std::fabs(got_w[i] - (1.0 + want_w[i])) <= tol);
        CHECK_MESSAGE(bad == 0, bad, " of ", got_w.size(), " weight gradients differ");
        for (std::size_t o = 0; o < got_b.size(); ++o) CHECK(std::fabs(got_b[o] - (0.5 + want_b[o])) <= tol);
        // Either gradient may be left out.
        std::vector<float> only_b(want_b.size(), 0.0f);
        ladon::kernels::conv2d_single_channel_grad_add(g, lanes.data(), nullptr, only_b.data());
        for (std::size_t o = 0; o < only_b.size(); ++o)
          CHECK(only_b[o] == doctest::Approx(got_b[o] - 0.5f).epsilon(1e-5));
      }
  {
    // bf16 rounding of the gradient, exactly: ties to even (1 + 2^-8 -> 1, 1 + 3 2^-8 -> 1 + 2^-6) and a
    // float32 subnormal flushed to zero, as round_to_bf16; the bias sums the unrounded values.
    const DirectConv one{.channels = 1, .out_channels = 1, .kernel_h = 1, .kernel_w = 1, .padded_h = 1, .padded_w = 5};
    const std::vector<float> in(5, 1.0f), grad = {1.00390625f, 1.01171875f, 1e-40f, 2.0f, 1.00390625f};
    std::vector<float> lanes(static_cast<std::size_t>(ladon::kernels::conv2d_single_channel_grad_size(one)), 0.0f);
    ladon::kernels::conv2d_single_channel_weight_grad(one, in.data(), grad.data(), nullptr, true, lanes.data());
    float dw = 0.0f, db = 0.0f;
    ladon::kernels::conv2d_single_channel_grad_add(one, lanes.data(), &dw, &db);
    CHECK(dw == 1.0f + 1.015625f + 0.0f + 2.0f + 1.0f);
    CHECK(db == 1.00390625f + 1.01171875f + 1e-40f + 2.0f + 1.00390625f);
  }
  // More than one input channel is the caller's mistake (DirectBackward takes the transposed path).
  const DirectConv two{.channels = 2, .out_channels = 4, .kernel_h = 3, .kernel_w = 3, .padded_h = 6, .padded_w = 6};
  std::vector<float> in(72), grad(64),
      lanes(static_cast<std::size_t>(ladon::kernels::conv2d_single_channel_grad_size(two)));
  CHECK_THROWS_WITH_AS(
      ladon::kernels::conv2d_single_channel_weight_grad(two, in.data(), grad.data(), nullptr, false, lanes.data()),
      "conv2d_single_channel_weight_grad: needs one input channel", std::logic_error);
}
