// Optimizers: update parameters in place from their accumulated .grad(), using the fused one-pass
// kernels of kernels/optim.h. A step records nothing in the autograd graph, skips parameters whose
// gradient is undefined (they took no part in the last backward), and allocates per-parameter
// state on a parameter's first update.
//
//   nn::Adam opt(model.parameters(), {.lr = 1e-3});
//   opt.zero_grad(); loss.backward(); opt.step();
#pragma once

#include <cstdint>
#include <vector>

#include "../core/tensor.h"

namespace ladon::nn {

class Optimizer {
 public:
  // params: contiguous float32 leaf tensors, each listed once, at least one. Copies of the handles
  // are kept, so the optimizer updates the very tensors the model holds. `name` prefixes errors.
  explicit Optimizer(std::vector<Tensor> params, const char* name = "Optimizer");
  virtual ~Optimizer();
  // State is per parameter; a copy would silently share or fork it, so optimizers only move.
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  Optimizer(Optimizer&&) = default;
  Optimizer& operator=(Optimizer&&) = default;

  virtual void step() = 0;
  void zero_grad();  // drops every parameter's gradient
  const std::vector<Tensor>& params() const { return params_; }

  // The learning rate, for schedulers that work with any optimizer.
  virtual double lr() const = 0;
  virtual void set_lr(double lr) = 0;

 protected:
  // The gradient of parameter i as a contiguous float32 tensor, or undefined when it has none.
  Tensor gradient(std::size_t i) const;
  const char* name_;

 private:
  std::vector<Tensor> params_;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;  // L2: added to the gradient as weight_decay * param
  bool nesterov = false;    // needs momentum > 0 and dampening = 0
};

// PyTorch's SGD: g = grad + wd p; with momentum, buf = g on the first step and then
// buf = momentum buf + (1 - dampening) g, and g = buf (or g + momentum buf for Nesterov);
// p -= lr g.
class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> params, SGDOptions options = {});
  void step() override;
  double lr() const override { return options_.lr; }
  void set_lr(double lr) override;
  const SGDOptions& options() const { return options_; }

 private:
  SGDOptions options_;
  std::vector<Tensor> momentum_buffers_;  // per parameter; undefined until its first update
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;  // L2: added to the gradient (not AdamW's decoupled decay)
};

// Adam (Kingma & Ba) as PyTorch computes it: g = grad + wd p; m = b1 m + (1 - b1) g;
// v = b2 v + (1 - b2) g^2; p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps), with t the
// parameter's own step count.
class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, AdamOptions options = {});
  void step() override;
  double lr() const override { return options_.lr; }
  void set_lr(double lr) override;
  const AdamOptions& options() const { return options_; }

 private:
  struct State {
    Tensor exp_avg, exp_avg_sq;  // undefined until the parameter's first update
    std::int64_t step = 0;
  };
  AdamOptions options_;
  std::vector<State> state_;
};

}  // namespace ladon::nn
