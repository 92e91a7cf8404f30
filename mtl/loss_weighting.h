// Loss-level task balancing: the joint loss L = sum_t alpha_t * L_t with alphas that are fixed,
// learned, or adapted from the training history. Every balancer has the same interface, so any of
// them works with any architecture. Balancers with learned state are Modules: add their
// parameters() to an optimizer. Formulas: ../shared/reference/mtl-methods.md.
#pragma once

#include "layer_fence.h"

#include <memory>
#include <vector>

#include "../core/random.h"
#include "../nn/module.h"
#include "../nn/optim.h"

namespace ladon::mtl {

class LossWeighting : public nn::Module {
 public:
  // Combines scalar task losses (each still attached to the network's graph) into one loss.
  virtual Tensor operator()(const std::vector<Tensor>& task_losses) = 0;
  // The alphas applied by the last call (uncertainty weighting: the factor on each L_t).
  virtual std::vector<double> weights() const = 0;
  // Called once per epoch with each task's mean training loss over that epoch (DWA needs it).
  virtual void end_epoch(const std::vector<double>& mean_task_losses) { (void)mean_task_losses; }
};

// Fixed alphas chosen by the user; StaticWeighting::equal(T) gives alpha_t = 1.
class StaticWeighting : public LossWeighting {
 public:
  explicit StaticWeighting(std::vector<double> alphas);
  static StaticWeighting equal(std::size_t tasks) { return StaticWeighting(std::vector<double>(tasks, 1.0)); }
  Tensor operator()(const std::vector<Tensor>& task_losses) override;
  std::vector<double> weights() const override { return alphas_; }

 private:
  std::vector<double> alphas_;
};

// Kendall et al. 2018: learned s_t = log sigma_t^2 per task.
//   regression:     0.5 * exp(-s) * L + 0.5 * s
//   classification:       exp(-s) * L + 0.5 * s
enum class TaskKind { regression, classification };
class UncertaintyWeighting : public LossWeighting {
 public:
  explicit UncertaintyWeighting(std::vector<TaskKind> kinds);
  Tensor operator()(const std::vector<Tensor>& task_losses) override;
  std::vector<double> weights() const override;
  void visit(Visitor& v) override { v("log_vars", log_vars_); }
  Tensor log_vars() const { return log_vars_; }

 private:
  std::vector<TaskKind> kinds_;
  Tensor log_vars_;  // [T], starts at 0 (sigma = 1)
};

// Liu et al. 2019 (MTAN): lambda_k = K softmax_k(w_k / T), w_k = L_k(t-1) / L_k(t-2) from epoch-mean
// losses; all ones for the first two epochs.
class DynamicWeightAverage : public LossWeighting {
 public:
  explicit DynamicWeightAverage(std::size_t tasks, double temperature = 2.0);
  Tensor operator()(const std::vector<Tensor>& task_losses) override;
  std::vector<double> weights() const override { return lambdas_; }
  void end_epoch(const std::vector<double>& mean_task_losses) override;

 private:
  double temperature_;
  std::vector<std::vector<double>> history_;  // the last two epochs' mean losses
  std::vector<double> lambdas_;
};

// Random loss weighting (Lin et al. 2021): alphas = softmax of fresh N(0, 1) draws every step.
class RandomLossWeighting : public LossWeighting {
 public:
  explicit RandomLossWeighting(std::size_t tasks, std::uint64_t seed = 0);
  Tensor operator()(const std::vector<Tensor>& task_losses) override;
  std::vector<double> weights() const override { return alphas_; }

 private:
  Generator gen_;
  std::vector<double> alphas_;
};

// Chen et al. 2018. Each call returns sum_t w_t L_t with the current weights, then moves the
// weights toward equalising G_t = |grad_W w_t L_t| scaled by the relative inverse training rate
// r_t^alpha (an L1 balancing loss with the target held constant), and renormalises sum w = T.
// W is the shared layer given at construction, usually the last shared one.
struct GradNormOptions {
  double alpha = 1.5;
  double lr = 0.025;  // Adam step size for the weights
};
class GradNorm : public LossWeighting {
 public:
  GradNorm(std::size_t tasks, std::vector<Tensor> shared_layer, GradNormOptions options = {});
  Tensor operator()(const std::vector<Tensor>& task_losses) override;
  std::vector<double> weights() const override;
  // A buffer, not a parameter: GradNorm trains the weights with its own optimizer.
  void visit(Visitor& v) override { v.buffer("task_weights", task_weights_); }

 private:
  GradNormOptions options_;
  std::vector<Tensor> shared_layer_;
  Tensor task_weights_;  // [T], trained by its own optimizer, not the network's
  std::unique_ptr<nn::Adam> optimizer_;
  std::vector<double> initial_losses_;
};

}  // namespace ladon::mtl
