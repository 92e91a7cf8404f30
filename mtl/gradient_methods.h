// Gradient-level task balancing on the shared parameters (../shared/reference/mtl-methods.md).
// backward() replaces loss.backward(): every parameter gets a .grad(); task-specific parameters
// get their own task's gradient unchanged, and the shared parameters get the method's
// combination of the per-task gradients g_t = grad_shared L_t.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <vector>

#include "../core/random.h"
#include "../core/tensor.h"

namespace ladon::mtl {

class GradientMethod {
 public:
  virtual ~GradientMethod() = default;
  void backward(const std::vector<Tensor>& task_losses, const std::vector<Tensor>& shared_parameters);

  // Combines per-task gradients (each flattened over all shared parameters) into one update.
  virtual std::vector<double> combine(const std::vector<std::vector<double>>& task_grads) = 0;

 private:
  std::vector<std::vector<double>> task_grads_;
};

// Yu et al. 2020: each g_i is projected off every g_j it conflicts with (g_i . g_j < 0), visiting
// the others in random order; the update is the sum of the projected gradients.
class PCGrad : public GradientMethod {
 public:
  explicit PCGrad(std::uint64_t seed = 0) : gen_(seed) {}
  std::vector<double> combine(const std::vector<std::vector<double>>& task_grads) override;
  std::int64_t last_conflicts() const { return conflicts_; }  // projections made by the last call

 private:
  Generator gen_;
  std::int64_t conflicts_ = 0;
};

// Sener & Koltun 2018: the minimum-norm point of the convex hull of the task gradients,
// sum_t a_t g_t with a on the simplex, found by Frank-Wolfe on the Gram matrix.
class MGDA : public GradientMethod {
 public:
  std::vector<double> combine(const std::vector<std::vector<double>>& task_grads) override;
  // MGDA-UB: the weights come from gradients with respect to the shared representation (the
  // trunk's output, one backward through the towers only), then the whole network is trained on
  // sum_t a_t L_t by one ordinary backward.
  void backward_upper_bound(const std::vector<Tensor>& task_losses, const Tensor& representation);
  const std::vector<double>& last_weights() const { return weights_; }

 private:
  std::vector<double> weights_;
};

// The min-norm weights of MGDA for a Gram matrix G[i][j] = g_i . g_j.
std::vector<double> min_norm_weights(const std::vector<std::vector<double>>& gram, int iterations = 250);

// Liu et al. 2021: d = g0 + (sqrt(phi) / |g_w|) g_w, with g0 the mean gradient, phi = c^2 |g0|^2 and
// w on the simplex minimising g_w . g0 + sqrt(phi) |g_w|; returned divided by 1 + c^2, as in LibMTL.
class CAGrad : public GradientMethod {
 public:
  explicit CAGrad(double c = 0.5) : c_(c) {}
  std::vector<double> combine(const std::vector<std::vector<double>>& task_grads) override;

 private:
  double c_;
};

}  // namespace ladon::mtl
