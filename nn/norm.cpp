#include "norm.h"

#include "../core/autograd.h"
#include "../core/ops.h"

namespace ladon::nn {

BatchNorm::BatchNorm(const char* name, std::int64_t num_features, BatchNormOptions options, std::int64_t min_dim,
                     std::int64_t max_dim)
    : name_(name), num_features_(num_features), options_(options), min_dim_(min_dim), max_dim_(max_dim) {
  LADON_CHECK(num_features > 0, name, "num_features must be positive, got ", num_features);
  LADON_CHECK(options.eps > 0, name, "eps must be positive, got ", options.eps);
  LADON_CHECK(options.momentum >= 0 && options.momentum <= 1, name, "momentum must be in [0, 1], got ",
              options.momentum);
  if (options.affine) {
    weight = ones({num_features}).requires_grad_();
    bias = zeros({num_features}).requires_grad_();
  }
  if (options.track_running_stats) {
    running_mean = zeros({num_features});
    running_var = ones({num_features});
  }
}

Tensor BatchNorm::forward(const Tensor& x) {
  LADON_CHECK(x.defined() && x.dtype() == Dtype::float32, name_, "expected a float32 input");
  LADON_CHECK(x.dim() >= min_dim_ && x.dim() <= max_dim_, name_, "expected a ",
              min_dim_ == max_dim_ ? "4-D [N, C, H, W]" : "2-D [N, C] or 3-D [N, C, L]", " input, got ",
              shape_str(x.shape()));
  LADON_CHECK(x.shape()[1] == num_features_, name_, "expected ", num_features_, " channels in dim 1, got input ",
              shape_str(x.shape()));
  Tensor y;
  const bool use_batch_stats = is_training() || !options_.track_running_stats;
  if (use_batch_stats) {
    const std::int64_t count = x.numel() / num_features_;
    LADON_CHECK(!is_training() || count > 1, name_, "expected more than 1 value per channel when training, got input ",
                shape_str(x.shape()));
    const BatchNormOutput normed = batch_norm(x, weight, bias, options_.eps);
    y = normed.y;
    if (is_training() && options_.track_running_stats) {
      // In place, so the buffers stay the tensors a checkpoint or optimizer already holds.
      const NoGradGuard no_grad;
      const std::vector<float> m = normed.mean.to_vector<float>(), v = normed.var.to_vector<float>();
      const float momentum = static_cast<float>(options_.momentum);
      const float unbias = static_cast<float>(count) / static_cast<float>(count - 1);
      float* rm = running_mean.data<float>();
      float* rv = running_var.data<float>();
      for (std::int64_t c = 0; c < num_features_; ++c) {
        rm[c] = (1 - momentum) * rm[c] + momentum * m[static_cast<std::size_t>(c)];
        rv[c] = (1 - momentum) * rv[c] + momentum * v[static_cast<std::size_t>(c)] * unbias;
      }
    }
  } else {
    Shape stat_shape(static_cast<std::size_t>(x.dim()), 1);  // [1, C, 1, ...]
    stat_shape[1] = num_features_;
    y = div(sub(x, running_mean.view(stat_shape)), sqrt(add(running_var.view(stat_shape), scalar(options_.eps))));
    if (options_.affine) y = add(mul(y, weight.view(stat_shape)), bias.view(stat_shape));
  }
  return y;
}

void BatchNorm::visit(Visitor& v) {
  if (weight.defined()) v("weight", weight);
  if (bias.defined()) v("bias", bias);
  if (running_mean.defined()) v.buffer("running_mean", running_mean);
  if (running_var.defined()) v.buffer("running_var", running_var);
}

LayerNorm::LayerNorm(Shape normalized_shape, LayerNormOptions options)
    : normalized_shape_(std::move(normalized_shape)), options_(options) {
  LADON_CHECK(!normalized_shape_.empty(), "LayerNorm", "normalized_shape must not be empty");
  for (std::int64_t s : normalized_shape_)
    LADON_CHECK(s > 0, "LayerNorm", "normalized_shape must be positive, got ", shape_str(normalized_shape_));
  LADON_CHECK(options.eps > 0, "LayerNorm", "eps must be positive, got ", options.eps);
  if (options.elementwise_affine) {
    weight = ones(normalized_shape_).requires_grad_();
    bias = zeros(normalized_shape_).requires_grad_();
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  const std::int64_t k = static_cast<std::int64_t>(normalized_shape_.size());
  LADON_CHECK(x.defined() && x.dtype() == Dtype::float32, "LayerNorm", "expected a float32 input");
  LADON_CHECK(x.dim() >= k && Shape(x.shape().end() - k, x.shape().end()) == normalized_shape_, "LayerNorm", "input ",
              shape_str(x.shape()), " does not end in normalized_shape ", shape_str(normalized_shape_));
  return layer_norm(x, normalized_shape_, weight, bias, options_.eps);
}

void LayerNorm::visit(Visitor& v) {
  if (weight.defined()) v("weight", weight);
  if (bias.defined()) v("bias", bias);
}

}  // namespace ladon::nn
