// Normalisation layers, composed from differentiable core ops (mean, sub, mul, sqrt, div), so their
// backward is autograd's.
//
// BatchNorm normalises each channel (dim 1) over the batch and every other dim. In training it uses
// the batch's mean and biased variance and updates the running statistics in place:
//   running = (1 - momentum) * running + momentum * batch_stat, with the unbiased variance,
// as PyTorch does. In eval (Module::eval) it uses the running statistics instead.
#pragma once

#include "layer_fence.h"

#include "../core/tensor.h"
#include "module.h"

namespace ladon::nn {

struct BatchNormOptions {
  double eps = 1e-5;
  double momentum = 0.1;
  bool affine = true;               // learnable per-channel weight (ones) and bias (zeros)
  bool track_running_stats = true;  // false: no buffers, batch statistics in eval too
};

class BatchNorm : public Layer {
 public:
  Tensor forward(const Tensor& x) override;
  void visit(Visitor& v) override;
  std::int64_t num_features() const { return num_features_; }
  const BatchNormOptions& options() const { return options_; }

  Tensor weight;        // [C], undefined unless affine
  Tensor bias;          // [C], undefined unless affine
  Tensor running_mean;  // [C] buffer, starts at 0; undefined unless track_running_stats
  Tensor running_var;   // [C] buffer, starts at 1; undefined unless track_running_stats

 protected:
  BatchNorm(const char* name, std::int64_t num_features, BatchNormOptions options, std::int64_t min_dim,
            std::int64_t max_dim);

 private:
  const char* name_;
  std::int64_t num_features_;
  BatchNormOptions options_;
  std::int64_t min_dim_, max_dim_;
};

// Over [N, C] or [N, C, L].
class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(std::int64_t num_features, BatchNormOptions options = {})
      : BatchNorm("BatchNorm1d", num_features, options, 2, 3) {}
};

// Over [N, C, H, W].
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(std::int64_t num_features, BatchNormOptions options = {})
      : BatchNorm("BatchNorm2d", num_features, options, 4, 4) {}
};

struct LayerNormOptions {
  double eps = 1e-5;
  bool elementwise_affine = true;  // learnable weight (ones) and bias (zeros) of normalized_shape
};

// Normalises over the trailing dims given by normalized_shape, per sample (biased variance); the
// same in training and eval.
class LayerNorm : public Layer {
 public:
  explicit LayerNorm(Shape normalized_shape, LayerNormOptions options = {});
  Tensor forward(const Tensor& x) override;
  void visit(Visitor& v) override;
  const Shape& normalized_shape() const { return normalized_shape_; }

  Tensor weight;  // normalized_shape, undefined unless elementwise_affine
  Tensor bias;

 private:
  Shape normalized_shape_;
  LayerNormOptions options_;
};

}  // namespace ladon::nn
