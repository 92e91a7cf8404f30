// Pooling layers over [N, C, H, W] (or [C, H, W]) images, and Flatten / Unflatten to move between
// image and feature shapes. All are parameter-free wrappers over core ops and views.
#pragma once

#include "layer_fence.h"

#include "../core/ops.h"
#include "module.h"

namespace ladon::nn {

class MaxPool2d : public Layer {
 public:
  // Stride defaults to the kernel size (options.stride = 0), as in PyTorch.
  explicit MaxPool2d(Size2 kernel, PoolOptions options = {}) : kernel_(kernel), options_(options) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel_, options_); }
  // The 2x2 window of stride 2 without padding or dilation (what conv2d_max_pool2x2 fuses).
  bool is_2x2() const {
    return kernel_ == Size2(2) && (options_.stride == Size2(0) || options_.stride == Size2(2)) &&
           options_.padding == Size2(0) && options_.dilation == Size2(1);
  }

 private:
  Size2 kernel_;
  PoolOptions options_;
};

class AvgPool2d : public Layer {
 public:
  // options.count_include_pad defaults to true, as in PyTorch.
  explicit AvgPool2d(Size2 kernel, PoolOptions options = {}) : kernel_(kernel), options_(options) {}
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, kernel_, options_); }

 private:
  Size2 kernel_;
  PoolOptions options_;
};

class AdaptiveAvgPool2d : public Layer {
 public:
  explicit AdaptiveAvgPool2d(Size2 output_size) : output_size_(output_size) {}
  Tensor forward(const Tensor& x) override { return adaptive_avg_pool2d(x, output_size_); }

 private:
  Size2 output_size_;
};

// Flattens dims start_dim..end_dim into one (default: everything but the batch dim).
class Flatten : public Layer {
 public:
  explicit Flatten(std::int64_t start_dim = 1, std::int64_t end_dim = -1) : start_(start_dim), end_(end_dim) {}
  Tensor forward(const Tensor& x) override { return x.flatten(start_, end_); }

 private:
  std::int64_t start_, end_;
};

// Splits dim into `sizes` (one entry may be -1): Unflatten(1, {16, 4, 4}) turns [N, 256] into [N, 16, 4, 4].
class Unflatten : public Layer {
 public:
  Unflatten(std::int64_t dim, Shape sizes);
  Tensor forward(const Tensor& x) override;

 private:
  std::int64_t dim_;
  Shape sizes_;
};

}  // namespace ladon::nn
