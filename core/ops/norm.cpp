// batch_norm: batch statistics, normalisation and affine in two passes over x, backward in closed
// form in two more. Composed of primitives it took 7 passes forward and about 15 backward, and
// was the largest cost of a small CNN's training step after the GEMMs.
#include "../../kernels/norm.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <mutex>
#include <vector>

#include "../autograd.h"
#include "../ops.h"
#include "../parallel.h"
#include "iterate.h"

namespace ladon {

namespace {

// Splits channels across threads, each chunk holding at least ~32K values.
void for_channels(const kernels::ChannelRange& layout, const std::function<void(const kernels::ChannelRange&)>& fn) {
  const std::int64_t per_channel = std::max<std::int64_t>(1, layout.outer * layout.inner);
  parallel_for(0, layout.channels, std::max<std::int64_t>(1, 32768 / per_channel),
               [&](std::int64_t begin, std::int64_t end) {
                 kernels::ChannelRange r = layout;
                 r.begin = begin;
                 r.end = end;
                 fn(r);
               });
}

}  // namespace

BatchNormOutput batch_norm(const Tensor& input, const Tensor& weight, const Tensor& bias, double eps) {
  const char* op = "batch_norm";
  detail::check_float(op, input);
  LADON_CHECK(input.dim() >= 2, op, "expected an [N, C, ...] input, got ", shape_str(input.shape()));
  const std::int64_t channels = input.shape()[1];
  LADON_CHECK(weight.defined() == bias.defined(), op, "weight and bias must both be given or both be undefined");
  const bool affine = weight.defined();
  if (affine) {
    detail::check_float(op, weight);
    detail::check_float(op, bias);
    LADON_CHECK(weight.dim() == 1 && weight.shape()[0] == channels && bias.dim() == 1 && bias.shape()[0] == channels,
                op, "weight ", shape_str(weight.shape()), " and bias ", shape_str(bias.shape()), " must be [", channels,
                "] for input ", shape_str(input.shape()));
  }
  LADON_CHECK(eps > 0, op, "eps must be positive, got ", eps);
  const std::int64_t outer = input.shape()[0];
  const std::int64_t inner = channels > 0 && outer > 0 ? input.numel() / (outer * channels) : 0;
  LADON_CHECK(outer * inner > 0 && channels > 0, op, "input ", shape_str(input.shape()), " has no values per channel");

  const Tensor x = input.detach().contiguous();
  const kernels::ChannelRange layout{outer, channels, inner, 0, channels};
  Tensor mean = empty({channels}), var = empty({channels});
  for_channels(layout, [&](const kernels::ChannelRange& r) {
    kernels::channel_mean_var(r, x.data<float>(), mean.data<float>(), var.data<float>());
  });

  // y = x * scale + shift, scale = weight / sqrt(var + eps), shift = bias - mean * scale.
  const Tensor w = affine ? weight.detach().contiguous() : Tensor(), b = affine ? bias.detach().contiguous() : Tensor();
  Tensor inv_std = empty({channels}), scale = empty({channels});
  std::vector<float> shift(static_cast<std::size_t>(channels));
  {
    const float *pm = mean.data<float>(), *pv = var.data<float>();
    float *pi = inv_std.data<float>(), *ps = scale.data<float>();
    for (std::int64_t c = 0; c < channels; ++c) {
      pi[c] = 1.0f / std::sqrt(pv[c] + static_cast<float>(eps));
      ps[c] = affine ? w.data<float>()[c] * pi[c] : pi[c];
      shift[static_cast<std::size_t>(c)] = (affine ? b.data<float>()[c] : 0.0f) - pm[c] * ps[c];
    }
  }
  Tensor y = empty(input.shape());
  for_channels(layout, [&](const kernels::ChannelRange& r) {
    kernels::channel_scale_shift(r, x.data<float>(), scale.data<float>(), shift.data(), y.data<float>());
  });

  y = record(y, op, {input, weight, bias},
             [x, mean, inv_std, scale, layout](const Tensor& grad, const std::vector<bool>& need) {
               const Tensor dy = grad.contiguous();
               const std::int64_t channels = layout.channels;
               Tensor sum_dy = empty({channels});
               std::vector<float> sum_dy_xc(static_cast<std::size_t>(channels));
               for_channels(layout, [&](const kernels::ChannelRange& r) {
                 kernels::channel_grad_sums(r, dy.data<float>(), x.data<float>(), mean.data<float>(),
                                            sum_dy.data<float>(), sum_dy_xc.data());
               });
               const float *inv = inv_std.data<float>(), *ps = scale.data<float>(), *pm = mean.data<float>();
               const float* sdy = sum_dy.data<float>();
               Grads grads(3);
               if (need[0]) {
                 // dx = scale * (dy - sum_dy / M - xhat * sum(dy * xhat) / M), xhat = (x - mean) * inv_std,
                 // folded into dx = dy * scale + x * bx + k per channel.
                 const auto m = static_cast<float>(layout.outer * layout.inner);
                 std::vector<float> bx(static_cast<std::size_t>(channels)), k(static_cast<std::size_t>(channels));
                 for (std::int64_t c = 0; c < channels; ++c) {
                   const auto i = static_cast<std::size_t>(c);
                   bx[i] = -ps[c] * inv[c] * inv[c] * sum_dy_xc[i] / m;
                   k[i] = -ps[c] * sdy[c] / m - bx[i] * pm[c];
                 }
                 Tensor dx = empty(x.shape());
                 for_channels(layout, [&](const kernels::ChannelRange& r) {
                   kernels::channel_combine(r, dy.data<float>(), ps, x.data<float>(), bx.data(), k.data(),
                                            dx.data<float>());
                 });
                 grads[0] = dx;
               }
               if (need[1]) {  // d weight = sum(dy * xhat)
                 Tensor dw = empty({channels});
                 for (std::int64_t c = 0; c < channels; ++c)
                   dw.data<float>()[c] = inv[c] * sum_dy_xc[static_cast<std::size_t>(c)];
                 grads[1] = dw;
               }
               if (need[2]) grads[2] = sum_dy;
               return grads;
             });
  return {y, mean, var};
}

Tensor layer_norm(const Tensor& input, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  const char* op = "layer_norm";
  detail::check_float(op, input);
  const auto k = static_cast<std::int64_t>(normalized_shape.size());
  LADON_CHECK(k > 0 && input.dim() >= k && Shape(input.shape().end() - k, input.shape().end()) == normalized_shape,
              op, "input ", shape_str(input.shape()), " does not end in normalized_shape ",
              shape_str(normalized_shape));
  LADON_CHECK(weight.defined() == bias.defined(), op, "weight and bias must both be given or both be undefined");
  const bool affine = weight.defined();
  if (affine) {
    detail::check_float(op, weight);
    detail::check_float(op, bias);
    LADON_CHECK(weight.shape() == normalized_shape && bias.shape() == normalized_shape, op, "weight ",
                shape_str(weight.shape()), " and bias ", shape_str(bias.shape()), " must be normalized_shape ",
                shape_str(normalized_shape));
  }
  LADON_CHECK(eps > 0, op, "eps must be positive, got ", eps);
  std::int64_t n = 1;
  for (std::int64_t s : normalized_shape) n *= s;
  LADON_CHECK(n > 0, op, "normalized_shape ", shape_str(normalized_shape), " is empty");
  const std::int64_t rows = input.numel() / n;
  const std::int64_t grain = std::max<std::int64_t>(1, 32768 / n);  // rows per chunk: ~32K values

  const Tensor x = input.detach().contiguous();
  const Tensor w = affine ? weight.detach().contiguous() : Tensor(), b = affine ? bias.detach().contiguous() : Tensor();
  const float* pw = affine ? w.data<float>() : nullptr;
  Tensor y = empty(input.shape()), mean = empty({rows}), rstd = empty({rows});
  parallel_for(0, rows, grain, [&](std::int64_t begin, std::int64_t end) {
    kernels::layer_norm_rows(end - begin, n, x.data<float>() + begin * n, pw, affine ? b.data<float>() : nullptr,
                             static_cast<float>(eps), y.data<float>() + begin * n, mean.data<float>() + begin,
                             rstd.data<float>() + begin);
  });

  return record(y, op, {input, weight, bias},
                [x, w, mean, rstd, rows, n, grain, normalized_shape](const Tensor& grad, const std::vector<bool>& need) {
                  const Tensor dy = grad.contiguous();
                  const bool need_w = w.defined() && need[1], need_b = w.defined() && need[2];
                  Tensor dx = need[0] ? empty(x.shape()) : Tensor();
                  Tensor dw = need_w ? zeros(normalized_shape) : Tensor(), db = need_b ? zeros(normalized_shape) : Tensor();
                  std::mutex merge;
                  parallel_for(0, rows, grain, [&](std::int64_t begin, std::int64_t end) {
                    // Each chunk sums its rows' weight and bias gradients, then adds them in.
                    Tensor pdw = need_w ? zeros({n}) : Tensor(), pdb = need_b ? zeros({n}) : Tensor();
                    kernels::layer_norm_backward_rows(
                        end - begin, n, dy.data<float>() + begin * n, x.data<float>() + begin * n,
                        mean.data<float>() + begin, rstd.data<float>() + begin,
                        w.defined() ? w.data<float>() : nullptr, dx.defined() ? dx.data<float>() + begin * n : nullptr,
                        need_w ? pdw.data<float>() : nullptr, need_b ? pdb.data<float>() : nullptr);
                    std::lock_guard<std::mutex> lock(merge);
                    for (std::int64_t i = 0; i < n; ++i) {
                      if (need_w) dw.data<float>()[i] += pdw.data<float>()[i];
                      if (need_b) db.data<float>()[i] += pdb.data<float>()[i];
                    }
                  });
                  return Grads{dx, dw, db};
                });
}

}  // namespace ladon
