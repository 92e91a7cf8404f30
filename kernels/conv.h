// Convolution and pooling loops on raw pointers, one image plane set at a time. Layouts are
// row-major and contiguous: an image is [channels, height, width]; a column block is
// [channels * kh * kw, ld] (im2col) holding several images side by side, out_h * out_w columns
// each, so a convolution over a block of images becomes one GEMM per group.
#pragma once

#include <cstdint>

#include "gemm.h"  // Activation

namespace ladon::kernels {

// Geometry of a 2-D sliding window over an [channels, height, width] image.
struct Window2d {
  std::int64_t channels = 1, height = 1, width = 1;
  std::int64_t kernel_h = 1, kernel_w = 1;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_h = 0, pad_w = 0;
  std::int64_t dilation_h = 1, dilation_w = 1;
  std::int64_t out_h = 1, out_w = 1;
};

// col[((c * kh + i) * kw + j) * ld + oy * out_w + ox] = image[c, oy*sh - ph + i*dh, ox*sw - pw + j*dw],
// 0 outside; ld >= out_h * out_w is the column block's row stride.
void im2col(const Window2d& w, const float* image, float* col, std::int64_t ld);
// The adjoint of im2col: image[c, y, x] += every col entry that im2col read from there. image must
// be initialised by the caller (usually zeroed).
void col2im(const Window2d& w, const float* col, std::int64_t ld, float* image);

// The convolution GEMM's result c [rows, ld] holds `images` images side by side, `plane` columns
// each; conv_store writes it out image-major with the epilogue: out[i, r, p] =
// activation(c[r * ld + i * plane + p] + bias[r]) (bias may be null).
void conv_store(std::int64_t images, std::int64_t rows, std::int64_t plane, const float* c, std::int64_t ld,
                const float* bias, Activation activation, float* out);
// Its adjoint for the backward: c[r * ld + i * plane + p] = grad[i, r, p], zeroed where
// y[i, r, p] <= 0 when y (the ReLU's output) is given.
void conv_gather(std::int64_t images, std::int64_t rows, std::int64_t plane, const float* grad, const float* y,
                 float* c, std::int64_t ld);

// A zero-padded copy of `channels` planes of height x width: dst[c, y + pad_h, x + pad_w] = src[c, y, x],
// zero in the border; dst is [channels, height + 2 pad_h, width + 2 pad_w]. With mask (same shape
// as src), entries whose mask is <= 0 become 0 (the ReLU's mask in a backward).
void conv_pad(std::int64_t channels, std::int64_t height, std::int64_t width, std::int64_t pad_h, std::int64_t pad_w,
              const float* src, const float* mask, float* dst);

// Direct convolution of one image, stride 1, dilation 1, one group (conv_direct.cpp): out[o, y, x] =
// activation(bias[o] + sum_{c,i,j} w[o, c, i, j] padded[c, y + i, x + j]) for y < padded_h - kh + 1,
// x < padded_w - kw + 1, with the padding already in `padded` (conv_pad). The weights come packed
// by conv2d_direct_pack (conv2d_direct_packed_size floats). AVX-512 and AVX2 + FMA kernels: callers
// check conv2d_direct_available() and use im2col + GEMM otherwise.
struct DirectConv {
  std::int64_t channels = 1, out_channels = 1, kernel_h = 1, kernel_w = 1;
  std::int64_t padded_h = 1, padded_w = 1;  // the padded input plane
};
bool conv2d_direct_available();
// The weight gradient below (conv2d_direct_grad_transpose, conv2d_direct_weight_grad): AVX-512 only.
bool conv2d_direct_weight_grad_available();
std::int64_t conv2d_direct_packed_size(const DirectConv& g);
// transpose_flip = false: weight is [out_channels, channels, kh, kw]. true (the input gradient as
// a convolution of the padded output gradient): weight is the forward's [channels, out_channels,
// kh, kw], used with its two channel roles swapped and its taps reversed.
void conv2d_direct_pack(const DirectConv& g, const float* weight, bool transpose_flip, float* packed);
void conv2d_direct(const DirectConv& g, const float* padded, const float* packed, const float* bias,
                   Activation activation, float* out);

// The same convolution with bf16 products and float32 sums (AVX512_BF16: vdpbf16ps multiplies a
// pair of bf16 values by another and adds both products; check conv2d_direct_bf16_available()).
// Its operands are words of two bf16 values, the low half first, rounded to nearest even:
// conv2d_direct_bf16_pair turns a padded image (conv_pad's [channels, padded_h, padded_w] floats)
// into ceil(channels / 2) planes of words, word (q, p) = (padded[2q, p], padded[2q + 1, p]), zero
// past the last channel (conv2d_direct_bf16_image_size words); conv2d_direct_bf16_pack turns
// conv2d_direct_pack's floats into the same channel pairs (conv2d_direct_bf16_packed_size words).
// Each output sums the exact products of the rounded operands in float32, two by two.
bool conv2d_direct_bf16_available();
// Whether conv2d should run it: available, and where vdpbf16ps issues at the FMA's rate, as
// gemm_bf16's dot kernel (AMD Zen 4 and 5). Intel's issues at a quarter of it (gemm_bf16_kernel()
// is fma or amx there), so conv2d keeps the FP32 kernel on bf16-rounded operands.
bool conv2d_direct_bf16_preferred();
std::int64_t conv2d_direct_bf16_image_size(const DirectConv& g);
std::int64_t conv2d_direct_bf16_packed_size(const DirectConv& g);
void conv2d_direct_bf16_pair(const DirectConv& g, const float* padded, std::uint32_t* pairs);
void conv2d_direct_bf16_pack(const DirectConv& g, const float* packed, std::uint32_t* words);
void conv2d_direct_bf16(const DirectConv& g, const std::uint32_t* pairs, const std::uint32_t* packed, const float* bias,
                        Activation activation, float* out);

// The weight gradient of the same convolution, direct (no im2col): for one image,
//   dw[o, c, i, j] += sum_{y, x} grad[o, y, x] padded[c, y + i, x + j],
// accumulated in the packed layout of conv2d_direct_pack (conv2d_direct_packed_size floats, zeroed
// by the caller before the first image) and added into a [out_channels, channels, kh, kw] weight
// gradient by conv2d_direct_unpack_add. The output gradient goes in position-major:
// conv2d_direct_grad_transpose writes grad_t[p * ld + o] = grad[o, p] (p = y * out_w + x;
// ld = conv2d_direct_grad_ld(g), a multiple of 32, channels past out_channels zero), zeroed where
// mask[o, p] <= 0 when mask (the ReLU's output) is given, and adds each channel's sum of those
// values into bias_sum[o] when bias_sum is not null.
std::int64_t conv2d_direct_grad_ld(const DirectConv& g);
void conv2d_direct_grad_transpose(const DirectConv& g, const float* grad, const float* mask, float* grad_t,
                                  float* bias_sum);
void conv2d_direct_weight_grad(const DirectConv& g, const float* padded, const float* grad_t, float* packed_grad);
void conv2d_direct_unpack_add(const DirectConv& g, const float* packed_grad, float* weight_grad);
// The weight gradient in bf16 (AVX512_BF16, conv2d_direct_bf16_available()), into the same packed
// float32 gradient: the sum over each output row's positions two at a time. Its operands, from the
// padded image and conv2d_direct_grad_transpose's grad_t: `shifted` (channels * padded_h * padded_w
// words; word q = (padded[q], padded[q + 1]) over the whole buffer, zero past its end) and
// `grad_pairs` (conv2d_direct_bf16_grad_size words; for output row y and positions 2h, 2h + 1,
// word (y * ceil(out_w / 2) + h) * ld + o = (grad_t[y * out_w + 2h][o], grad_t[y * out_w + 2h + 1][o]),
// the second zero past an odd row's end), all rounded to bf16 to nearest even. Past an odd row's
// end that zero meets the padded float after the row's last position: an inf there gives NaN
// (0 x inf), where the float32 kernel never reads it.
std::int64_t conv2d_direct_bf16_grad_size(const DirectConv& g);
void conv2d_direct_bf16_weight_operands(const DirectConv& g, const float* padded, const float* grad_t,
                                        std::uint32_t* shifted, std::uint32_t* grad_pairs);
void conv2d_direct_bf16_weight_grad(const DirectConv& g, const std::uint32_t* shifted, const std::uint32_t* grad_pairs,
                                    float* packed_grad);

// One input channel's weight and bias gradients (g.channels == 1: conv1 of the CNN, LeNet's first
// layer), AVX-512 as the above, without the transpose: for one image,
//   dw[o, 0, i, j] += sum_{y, x} grad[o, y, x] padded[y + i, x + j],   db[o] += sum_{y, x} grad[o, y, x],
// grad read as it comes ([out_channels, out_h, out_w]), zeroed where mask[o, y, x] <= 0 when mask
// is given. With bf16 the weight sums take grad rounded to bf16 (round_to_bf16's bits; padded must
// hold bf16 values already): bf16 products, float32 sums; db stays the float32 sum of grad. The
// sums stay as 16 lanes each in `lanes` (conv2d_single_channel_grad_size floats,
// zeroed by the caller before the first image), summed across and added into a [out_channels, 1,
// kh, kw] weight gradient and a bias gradient (either may be null) by conv2d_single_channel_grad_add.
std::int64_t conv2d_single_channel_grad_size(const DirectConv& g);
void conv2d_single_channel_weight_grad(const DirectConv& g, const float* padded, const float* grad, const float* mask,
                                       bool bf16, float* lanes);
void conv2d_single_channel_grad_add(const DirectConv& g, const float* lanes, float* weight_grad, float* bias_grad);

// Max pooling over `planes` planes of height x width (channels in w is ignored). Padding counts as
// -infinity. argmax holds the winning element's offset within its plane (y * width + x); the first
// maximum wins ties. argmax may be null (a forward without backward): the same values only.
void max_pool2d(const Window2d& w, std::int64_t planes, const float* x, float* out, std::int64_t* argmax);
// grad_x[plane, argmax] += grad_out; grad_x must be zeroed by the caller.
void max_pool2d_backward(std::int64_t planes, std::int64_t in_plane, std::int64_t out_plane, const float* grad_out,
                         const std::int64_t* argmax, float* grad_x);
// The 2x2 window of stride 2 without padding or dilation, max_pool2d's fast case: its windows do
// not overlap, so max_pool2d_2x2_backward writes every element of grad_x (the output gradient at
// each window's argmax, 0 elsewhere and past the last window of an odd height or width), into an
// uninitialised grad_x. Only for a window where max_pool2d_is_2x2. With mask (shaped as grad_out:
// the pooled output of a ReLU), an output gradient whose mask is <= 0 (or NaN) counts as 0, as
// conv2d's backward masks its ReLU (conv2d_max_pool2x2).
bool max_pool2d_is_2x2(const Window2d& w);
void max_pool2d_2x2_backward(const Window2d& w, std::int64_t planes, const float* grad_out, const std::int64_t* argmax,
                             const float* mask, float* grad_x);
// The same 2x2 pool keeping each window's winner as its tap, one byte per output (0, 1: the top
// row's left and right element; 2, 3: the bottom row's), and its backward from those taps, with the
// same results as the offset pair above: what conv2d_max_pool2x2 keeps for its backward, an eighth
// of the int64 offsets' bytes. Only for a window where max_pool2d_is_2x2.
void max_pool2d_2x2_taps(const Window2d& w, std::int64_t planes, const float* x, float* out, std::uint8_t* taps);
void max_pool2d_2x2_taps_backward(const Window2d& w, std::int64_t planes, const float* grad_out,
                                  const std::uint8_t* taps, const float* mask, float* grad_x);

// Average pooling. count_include_pad: divide by kh * kw (padding counts as zeros); otherwise by the
// number of real elements under the window.
void avg_pool2d(const Window2d& w, std::int64_t planes, bool count_include_pad, const float* x, float* out);
// grad_x += the adjoint of avg_pool2d; grad_x must be zeroed by the caller.
void avg_pool2d_backward(const Window2d& w, std::int64_t planes, bool count_include_pad, const float* grad_out,
                         float* grad_x);

// Adaptive average pooling to out_h x out_w (PyTorch's windows: start = floor(o * in / out),
// end = ceil((o + 1) * in / out)). Only height, width, out_h, out_w of w are used.
void adaptive_avg_pool2d(const Window2d& w, std::int64_t planes, const float* x, float* out);
void adaptive_avg_pool2d_backward(const Window2d& w, std::int64_t planes, const float* grad_out, float* grad_x);

}  // namespace ladon::kernels
