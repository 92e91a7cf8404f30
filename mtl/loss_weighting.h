// Loss-level task balancing: the joint loss L = sum_t alpha_t * L_t with alphas that are fixed,
// learned, or adapted from the training history, and one ordinary backward. Every method is a
// Balancer (balancer.h), called as balancer.backward(task_losses, model). Formulas:
// ../shared/reference/mtl-methods.md.
#pragma once

#include "layer_fence.h"

#include <memory>
#include <vector>

#include "../core/random.h"
#include "../nn/optim.h"
#include "balancer.h"
#include "task_scalars.h"

namespace ladon::mtl {

// Fixed alphas chosen by the user; StaticWeighting::equal(T) gives alpha_t = 1.
class StaticWeighting : public LossBalancer {
 public:
  explicit StaticWeighting(std::vector<double> alphas);
  static StaticWeighting equal(std::size_t tasks) { return StaticWeighting(std::vector<double>(tasks, 1.0)); }

 private:
  void decide(const std::vector<double>&, MultiTaskModel&, const std::vector<Tensor>&) override {}
};

// Kendall et al. 2018: learned s_t = log sigma_t^2 per task; the joint loss is
//   regression:     0.5 * exp(-s) * L + 0.5 * s
//   classification:       exp(-s) * L + 0.5 * s   (multiclass and binary tasks)
// The s_t are the balancer's own parameters, stepped by its own Adam after every backward (the
// network's gradient is taken at the s_t before the step, exactly as one joint optimizer would).
struct UncertaintyOptions {
  double lr = 1e-3;  // Adam step size for the s_t
};
class UncertaintyWeighting : public LossBalancer {
 public:
  explicit UncertaintyWeighting(const std::vector<TaskSpec>& tasks, UncertaintyOptions options = {});
  Tensor log_vars() const { return log_vars_.tensor(); }  // [T]

 private:
  void decide(const std::vector<double>& values, MultiTaskModel& model, const std::vector<Tensor>& losses) override;
  void after_backward(const std::vector<double>& values) override;
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;

  std::vector<double> factors_;  // 0.5 for regression, 1 for classification
  TaskScalars log_vars_;         // start at 0 (sigma = 1)
};

// Liu et al. 2019 (MTAN): lambda_k = K softmax_k(w_k / T), w_k = L_k(t-1) / L_k(t-2) from epoch-mean
// losses; all ones for the first two epochs. The balancer averages the losses it sees over each
// epoch of steps_per_epoch steps itself (w_k = 1 when L_k(t-2) is 0: a task with no labels then).
struct DWAOptions {
  std::int64_t steps_per_epoch = 0;  // required: the loader's batches per epoch
  double temperature = 2.0;
};
class DynamicWeightAverage : public LossBalancer {
 public:
  DynamicWeightAverage(std::size_t tasks, DWAOptions options);

 private:
  void decide(const std::vector<double>& values, MultiTaskModel& model, const std::vector<Tensor>& losses) override;
  void after_backward(const std::vector<double>& values) override;
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;

  DWAOptions options_;
  std::int64_t step_in_epoch_ = 0, epochs_ = 0;
  std::vector<double> epoch_sums_;
  std::vector<double> previous_, last_;  // the mean losses of epochs t-2 and t-1
};

// Random loss weighting (Lin et al. 2021): alphas = softmax of fresh N(0, 1) draws every step.
class RandomLossWeighting : public LossBalancer {
 public:
  explicit RandomLossWeighting(std::size_t tasks, std::uint64_t seed = 0);

 private:
  void decide(const std::vector<double>& values, MultiTaskModel& model, const std::vector<Tensor>& losses) override;
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;
  Generator gen_;
};

// Chen et al. 2018. Each step trains the network on sum_t w_t L_t with the current weights, then
// moves the weights toward equalising G_t = |grad_W w_t L_t| scaled by the relative inverse training
// rate r_t^alpha (an L1 balancing loss with the target held constant), and renormalises
// sum w = T. W is a shared layer, usually the last shared one; every task loss must reach it.
struct GradNormOptions {
  double alpha = 1.5;
  double lr = 0.025;  // Adam step size for the weights
};
class GradNorm : public LossBalancer {
 public:
  GradNorm(std::size_t tasks, std::vector<Tensor> shared_layer, GradNormOptions options = {});

 private:
  void decide(const std::vector<double>& values, MultiTaskModel& model, const std::vector<Tensor>& losses) override;
  void after_backward(const std::vector<double>& values) override;
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;

  GradNormOptions options_;
  std::vector<Tensor> shared_layer_;
  TaskScalars task_weights_;  // start at 1
  std::vector<double> initial_losses_, norms_;
};

// GLS (Chennupati et al. 2019): the geometric mean (prod_t L_t)^(1/T), whose gradient weights task t
// by GLS / (T L_t); those are the weights reported (LibMTL logs other numbers). Losses are clamped
// at 1e-12 so a zero loss gives a large, finite weight. No state.
class GeometricLossStrategy : public LossBalancer {
 public:
  explicit GeometricLossStrategy(std::size_t tasks);

 private:
  void decide(const std::vector<double>& values, MultiTaskModel& model, const std::vector<Tensor>& losses) override;
};

// IMTL-L (Liu et al., ICLR 2021): a learned scale s_t per task, loss e^{s_t} L_t - s_t, whose fixed
// point s_t = -log L_t balances the scaled losses at 1. The s_t are the balancer's own, stepped by
// its own Adam from d/ds = e^s L - 1.
struct IMTLLOptions {
  double lr = 1e-3;
};
class IMTLL : public LossBalancer {
 public:
  explicit IMTLL(std::size_t tasks, IMTLLOptions options = {});
  Tensor scales() const { return scales_.tensor(); }  // [T], the s_t

 private:
  void decide(const std::vector<double>& values, MultiTaskModel& model, const std::vector<Tensor>& losses) override;
  void after_backward(const std::vector<double>& values) override;
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;

  TaskScalars scales_;  // start at 0
};

// STCH (Lin et al., ICML 2024), as LibMTL and the official code: for the first warmup_epochs epochs
// the loss is sum_t log L_t (weights 1 / L_t), and the last of them accumulates the nadir n_t, the
// mean of each task's losses; afterwards the loss is T mu log sum_t exp(f_t / mu), f_t = log(L_t / n_t),
// whose weights are T softmax(f / mu)_t / L_t. Epochs are counted from steps_per_epoch.
struct STCHOptions {
  std::int64_t steps_per_epoch = 0;  // required: the loader's batches per epoch
  std::int64_t warmup_epochs = 4;
  double mu = 1.0;
};
class STCH : public LossBalancer {
 public:
  STCH(std::size_t tasks, STCHOptions options);

 private:
  void decide(const std::vector<double>& values, MultiTaskModel& model, const std::vector<Tensor>& losses) override;
  void after_backward(const std::vector<double>& values) override;
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;

  STCHOptions options_;
  std::int64_t step_ = 0;           // steps taken, over all epochs
  std::vector<double> nadir_sums_;  // over the last warm-up epoch
  std::vector<double> nadir_;       // empty until warm-up ends
};

// FAMO (Liu et al., NeurIPS 2023, "Fast Adaptive Multitask Optimization"), as FAMORef and LibMTL:
// O(1) in the task count, no per-task gradient. With z = softmax(xi) and D_t = L_t - l*_t + 1e-8,
// the network trains on sum_t (z_t / c) log D_t, c = sum_t z_t / D_t (held constant): weights
// z_t / (c D_t) on the losses, summing to 1 over their D's. The step's effect on the losses gives
// delta_t = log D_t - log D'_t, and xi takes one Adam step (L2 decay gamma, PyTorch-style) along
// z o (delta - (z . delta) 1), toward the tasks whose log-loss fell least. No clipping (the
// reference's recommendation). Where D' comes from is FAMOUpdate:
//   same_batch  the losses of the same batch after the optimizer step (after_step(), balancer.h:
//               one extra forward per step), the paper's Algorithm 1 and its code. Every backward
//               must be followed by after_step() before the next.
//   next_batch  the losses of the next batch, before its step: the ones its backward gets anyway,
//               so no extra forward (the O(1) cost the paper claims, with the forward the LeNet of
//               MultiFashion spends a third of its step in). The change then mixes the step's
//               effect with the difference between two batches: a noisier delta, unbiased over
//               batches drawn alike. Each backward first updates xi from the previous backward's
//               losses, then weighs; a checkpoint keeps those losses, so a resumed run goes on exactly.
enum class FAMOUpdate { same_batch, next_batch };
struct FAMOOptions {
  double lr = 0.025;                    // Adam step size for the logits xi
  double gamma = 1e-3;                  // their L2 decay (LibMTL; FAMORef's famo.py: 0.01)
  std::vector<double> min_losses = {};  // the lower bounds l*_t; empty: all 0
  FAMOUpdate update = FAMOUpdate::same_batch;
};
class FAMO : public LossBalancer {
 public:
  FAMO(std::size_t tasks, FAMOOptions options = {});
  bool needs_losses_after_step() const override { return update_ == FAMOUpdate::same_batch; }
  Tensor logits() const { return logits_.tensor(); }  // [T], the xi

 private:
  void decide(const std::vector<double>& values, MultiTaskModel& model, const std::vector<Tensor>& losses) override;
  void update_after_step(const std::vector<double>& values) override;
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;
  std::vector<double> log_gaps(const std::vector<double>& values, const char* when) const;  // log D_t
  void step_logits(const std::vector<double>& after);  // from before_ and softmax_ to log D'_t

  std::vector<double> min_losses_;
  FAMOUpdate update_;
  TaskScalars logits_;             // start at 0
  std::vector<double> before_;     // log D_t of the last backward, until the next update uses it
  std::vector<double> softmax_;    // z of the last backward
};

}  // namespace ladon::mtl
