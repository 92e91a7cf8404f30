// Per-channel loops of batch normalisation. x is contiguous [outer, channels, inner] (N, C, H * W);
// each function touches only channels [c_begin, c_end), so callers split channels across threads.
#pragma once

#include <cstdint>

namespace ladon::kernels {

struct ChannelRange {
  std::int64_t outer = 1, channels = 1, inner = 1;  // the layout
  std::int64_t begin = 0, end = 1;                  // the channels to process
};

// mean[c] and biased var[c] over the outer * inner values of channel c (two passes, summed in
// double, so large batches of offset data keep their precision).
void channel_mean_var(const ChannelRange& r, const float* x, float* mean, float* var);
// y = x * scale[c] + shift[c]: the normalise-and-affine pass.
void channel_scale_shift(const ChannelRange& r, const float* x, const float* scale, const float* shift, float* y);
// sum_dy[c] = sum of dy, sum_dy_xc[c] = sum of dy * (x - mean[c]): what the backward needs.
void channel_grad_sums(const ChannelRange& r, const float* dy, const float* x, const float* mean, float* sum_dy,
                       float* sum_dy_xc);
// dx = dy * a[c] + x * b[c] + k[c]: batch norm's input gradient, folded into one pass.
void channel_combine(const ChannelRange& r, const float* dy, const float* a, const float* x, const float* b,
                     const float* k, float* dx);

}  // namespace ladon::kernels
