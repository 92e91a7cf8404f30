// Per-channel loops of batch normalisation, and per-row loops of layer normalisation. x is contiguous [outer, channels, inner] (N, C, H * W);
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

// Layer normalisation of each row of x [rows, n]: mean[r] and rstd[r] = 1 / sqrt(var + eps)
// (biased variance, summed in double), y = (x - mean) * rstd * weight + bias, weight and bias [n]
// or both null. A row is read three times, but from L1 for the usual widths: one pass over memory.
void layer_norm_rows(std::int64_t rows, std::int64_t n, const float* x, const float* weight, const float* bias,
                     float eps, float* y, float* mean, float* rstd);
// Its backward over the same rows, with xhat = (x - mean) * rstd and g = dy * weight (dy without
// weight): dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); dweight += dy * xhat and dbias += dy
// summed over the rows. dx, dweight and dbias may each be null (not wanted).
void layer_norm_backward_rows(std::int64_t rows, std::int64_t n, const float* dy, const float* x, const float* mean,
                              const float* rstd, const float* weight, float* dx, float* dweight, float* dbias);

}  // namespace ladon::kernels
