// Convolution and pooling loops on raw pointers, one image plane set at a time. Layouts are
// row-major and contiguous: an image is [channels, height, width]; a column buffer is
// [channels * kh * kw, out_h * out_w] (im2col), so a convolution becomes one GEMM per group.
#pragma once

#include <cstdint>

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

// col[(c * kh + i) * kw + j, oy * out_w + ox] = image[c, oy*sh - ph + i*dh, ox*sw - pw + j*dw], 0 outside.
void im2col(const Window2d& w, const float* image, float* col);
// The adjoint of im2col: image[c, y, x] += every col entry that im2col read from there. image must
// be initialised by the caller (usually zeroed).
void col2im(const Window2d& w, const float* col, float* image);

// Max pooling over `planes` planes of height x width (channels in w is ignored). Padding counts as
// -infinity. argmax holds the winning element's offset within its plane (y * width + x); the first
// maximum wins ties.
void max_pool2d(const Window2d& w, std::int64_t planes, const float* x, float* out, std::int64_t* argmax);
// grad_x[plane, argmax] += grad_out; grad_x must be zeroed by the caller.
void max_pool2d_backward(std::int64_t planes, std::int64_t in_plane, std::int64_t out_plane, const float* grad_out,
                         const std::int64_t* argmax, float* grad_x);

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
