// Activation layers: thin Module wrappers over the core ops, for use in Sequential.
#pragma once

#include "layer_fence.h"

#include "../core/ops.h"
#include "module.h"

namespace ladon::nn {

class ReLU : public Layer {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
};
class Sigmoid : public Layer {
 public:
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
};
class Tanh : public Layer {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
};
// x * Phi(x) with Phi the standard normal CDF (exact, through erf: PyTorch's default), or with
// Gelu::tanh the approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2, BERT).
class GELU : public Layer {
 public:
  explicit GELU(Gelu form = Gelu::exact) : form_(form) {}
  Tensor forward(const Tensor& x) override { return gelu(x, form_); }

 private:
  Gelu form_;
};

// x for x > 0, negative_slope * x otherwise. The gradient at exactly 0 is negative_slope (as in
// PyTorch), and a NaN stays NaN: where() sends x <= 0 and NaN to the scaled side.
class LeakyReLU : public Layer {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : slope_(negative_slope) {}
  Tensor forward(const Tensor& x) override { return where(gt(x, scalar(0.0)), x, mul(x, scalar(slope_))); }

 private:
  double slope_;
};

// x for x > 0, alpha * (exp(x) - 1) otherwise. exp only ever sees x where x <= 0 (0 elsewhere), so
// it cannot overflow; the gradient at exactly 0 is alpha (the left derivative, as in PyTorch).
class ELU : public Layer {
 public:
  explicit ELU(double alpha = 1.0) : alpha_(alpha) {}
  Tensor forward(const Tensor& x) override {
    const Tensor positive = gt(x, scalar(0.0));
    const Tensor left = where(positive, scalar(0.0), x);
    return where(positive, x, mul(sub(exp(left), scalar(1.0)), scalar(alpha_)));
  }

 private:
  double alpha_;
};

// x * sigmoid(x) (also called swish).
class SiLU : public Layer {
 public:
  Tensor forward(const Tensor& x) override { return mul(x, sigmoid(x)); }
};

// log(1 + exp(beta * x)) / beta, computed stably as max(z, 0) + log(1 + exp(-|z|)) with z = beta * x
// (PyTorch's threshold for switching to the identity is unnecessary: this form never overflows).
// maximum splits its gradient at a tie, so the derivative at 0 is the true 1/2.
class Softplus : public Layer {
 public:
  explicit Softplus(double beta = 1.0) : beta_(beta) {
    LADON_CHECK(beta > 0, "Softplus", "beta must be positive, got ", beta);
  }
  Tensor forward(const Tensor& x) override {
    const Tensor z = beta_ == 1.0 ? x : mul(x, scalar(beta_));
    const Tensor y = add(maximum(z, scalar(0.0)), log(add(exp(neg(abs(z))), scalar(1.0))));
    return beta_ == 1.0 ? y : div(y, scalar(beta_));
  }

 private:
  double beta_;
};

class Softmax : public Layer {
 public:
  explicit Softmax(std::int64_t dim) : dim_(dim) {}
  Tensor forward(const Tensor& x) override { return softmax(x, dim_); }

 private:
  std::int64_t dim_;
};

class LogSoftmax : public Layer {
 public:
  explicit LogSoftmax(std::int64_t dim) : dim_(dim) {}
  Tensor forward(const Tensor& x) override { return log_softmax(x, dim_); }

 private:
  std::int64_t dim_;
};

}  // namespace ladon::nn
