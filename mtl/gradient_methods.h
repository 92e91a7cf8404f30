// Gradient-level task balancing (../shared/reference/mtl-methods.md). PCGrad, MGDA and CAGrad
// each return a weighted sum d = sum_t w_t g_t of the task gradients g_t = grad_shared L_t, with
// weights that depend only on their dot products: the T x T Gramian G_ij = g_i . g_j. So a step
// takes each task's gradient once, for the shared parameters and that task's own parameters
// together (only the graph between them runs), keeps the T shared gradients in float32, builds
// the Gramian (accumulated in double), and writes d. Task-specific parameters get their own task's
// gradient unchanged.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <vector>

#include "../core/random.h"
#include "balancer.h"

namespace ladon::mtl {

// G[i][j] = g_i . g_j; square, symmetric, finite.
using Gramian = std::vector<std::vector<double>>;
// The Gramian of explicit vectors (one per task, all of one length), for tests and tools.
Gramian gramian(const std::vector<std::vector<double>>& vectors);

class GradientBalancer : public Balancer {
 public:
  // The weights w_t of d = sum_t w_t g_t for task gradients with Gramian G and loss values L_t.
  virtual std::vector<double> combine(const Gramian& G, const std::vector<double>& losses) = 0;

 protected:
  using Balancer::Balancer;
  Tensor step(const std::vector<Tensor>& losses, const std::vector<double>& values, MultiTaskModel& model) override;

 private:
  Tensor task_grads_;  // [T, shared parameter count], reused between steps
};

// Yu et al. 2020: each g_i is projected off every g_j it conflicts with (g_i . g_j < 0), visiting
// the others in random order; the update is the sum of the projected gradients.
class PCGrad : public GradientBalancer {
 public:
  explicit PCGrad(std::size_t tasks, std::uint64_t seed = 0);
  std::vector<double> combine(const Gramian& G, const std::vector<double>& losses) override;
  std::int64_t last_conflicts() const { return conflicts_; }  // projections made by the last step

 private:
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;
  Generator gen_;
  std::int64_t conflicts_ = 0;
};

// Sener & Koltun 2018: the minimum-norm point of the convex hull of the (normalised) task
// gradients, sum_t a_t g_t / n_t with a on the simplex, found by Frank-Wolfe on the Gramian. The
// normalisations n_t are LibMTL's: none (1), l2 (|g_t|), loss (L_t), loss+ (L_t |g_t|); weights()
// are the a_t / n_t applied to the raw gradients.
//
// MGDA-UB (upper_bound): the weights come from the gradients with respect to the model's shared
// representation (MultiTaskModel::representation(): a backward through the task parts only), then
// the whole network is trained on sum_t w_t L_t by one ordinary backward.
enum class GradNormalization { none, l2, loss, loss_plus };
struct MGDAOptions {
  GradNormalization normalization = GradNormalization::none;
  bool upper_bound = false;
};
class MGDA : public GradientBalancer {
 public:
  explicit MGDA(std::size_t tasks, MGDAOptions options = {});
  std::vector<double> combine(const Gramian& G, const std::vector<double>& losses) override;

 private:
  Tensor step(const std::vector<Tensor>& losses, const std::vector<double>& values, MultiTaskModel& model) override;
  MGDAOptions options_;
};

// The min-norm weights of MGDA for a Gramian: a on the simplex minimising |sum_t a_t g_t|.
std::vector<double> min_norm_weights(const Gramian& G, int iterations = 250);

// Liu et al. 2021: d = g0 + (sqrt(phi) / |g_w|) g_w, with g0 the mean gradient, phi = c^2 |g0|^2 and
// w on the simplex minimising g_w . g0 + sqrt(phi) |g_w|; returned divided by 1 + c^2, as in LibMTL.
class CAGrad : public GradientBalancer {
 public:
  explicit CAGrad(std::size_t tasks, double c = 0.5);
  std::vector<double> combine(const Gramian& G, const std::vector<double>& losses) override;

 private:
  double c_;
};

// The dual-cone projections of TorchJD (../shared/reference/mtl-methods-2.md, sections 1 and 7).
// Both solve min_v v^T G' v subject to v >= u exactly (a primal active-set method), on
// G' = G / trace(G) + reg_eps I (G' = reg_eps I when trace(G) < norm_eps, which gives w = the
// preference: the plain mean for tiny gradients). Neither keeps state.
struct DualConeOptions {
  double norm_eps = 1e-4;
  double reg_eps = 1e-4;
};

// UPGrad (Quinton & Rey 2024): each task's share g_t / T projected onto the cone of directions that
// harm no task, summed: w = sum_i argmin_{v >= e_i / T} v^T G' v.
class UPGrad : public GradientBalancer {
 public:
  explicit UPGrad(std::size_t tasks, DualConeOptions options = {});
  std::vector<double> combine(const Gramian& G, const std::vector<double>& losses) override;

 private:
  DualConeOptions options_;
};

// DualProj (TorchJD; the GEM projection of Lopez-Paz & Ranzato 2017): the mean gradient projected
// onto the dual cone, one QP: w = argmin_{v >= 1 / T} v^T G' v.
class DualProj : public GradientBalancer {
 public:
  explicit DualProj(std::size_t tasks, DualConeOptions options = {});
  std::vector<double> combine(const Gramian& G, const std::vector<double>& losses) override;

 private:
  DualConeOptions options_;
};

// IMTL-G (Liu et al., ICLR 2021): weights summing to 1 whose combination has equal projections on
// every unit task gradient, in TorchJD's Gramian form w = v / sum(v), v = pinv(G) sqrt(diag G).
// When sum(v) <= 0 (nearly collinear gradients of different sizes) that common projection would be
// negative, raising every loss: the mean weights are used instead.
class IMTLG : public GradientBalancer {
 public:
  explicit IMTLG(std::size_t tasks);
  std::vector<double> combine(const Gramian& G, const std::vector<double>& losses) override;
};

// Aligned-MTL (Senushkin et al., CVPR 2023): the task gradients made orthogonal and of equal norm by
// B = sqrt(s) V_r L_r^-1/2 V_r^T from the Gramian's eigenpairs above T * lambda_max * eps_f32, with s
// the smallest kept eigenvalue; w = B p. p = 1 (the official and LibMTL scaling) by default;
// mean_preference gives TorchJD's p = 1/T.
struct AlignedMTLOptions {
  bool mean_preference = false;
};
class AlignedMTL : public GradientBalancer {
 public:
  explicit AlignedMTL(std::size_t tasks, AlignedMTLOptions options = {});
  std::vector<double> combine(const Gramian& G, const std::vector<double>& losses) override;

 private:
  AlignedMTLOptions options_;
};

}  // namespace ladon::mtl
