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

  // The Gramian-first path, for when memory matters (T full gradient copies grow with T; TorchJD
  // issue 137): the most bytes the T shared gradient rows may take at once, 0 (the default) for no
  // limit. When the T x P rows do not fit, the shared parameters are cut into blocks of whole
  // tensors whose T rows fit (a larger tensor is a block alone), G is summed block by block from
  // partial backwards and each block's rows are dropped, and d = sum_t w_t g_t is taken by one more
  // backward, of sum_t w_t L_t. The weights and the update are the same to float rounding; the cost
  // is one partial backward per task and block plus that backward (the full path: one per task).
  // The peak then holds T rows of the largest block (or the final backward's P floats, if more)
  // instead of the T x P rows, a task's gradient being copied in and d: (T + 2) x P floats. For the
  // methods whose step this is (all but MGDA-UB, which works at the representation already).
  void set_max_gradient_bytes(std::int64_t bytes);
  std::int64_t max_gradient_bytes() const { return max_gradient_bytes_; }

 protected:
  using Balancer::Balancer;
  Tensor step(const std::vector<Tensor>& losses, const std::vector<double>& values, MultiTaskModel& model) override;

  Tensor task_grads_;  // [T, shared parameter count], reused between steps (Nash-MTL's step too)
  std::int64_t max_gradient_bytes_ = 0;
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

// Nash-MTL (Navon et al., ICML 2022, "Multi-Task Learning as a Bargaining Game"): the weights
// alpha > 0 with alpha_t (G alpha)_t = 1 for every t (the Nash bargaining solution), found by damped
// Newton on the strictly convex Phi(b) = b^T G^ b / 2 - sum log b_t over the normalised G^ = G / |G|_F
// (+ 1e-8 I), warm-started from the last alpha (../shared/reference/mtl-methods-2.md section 4; it
// reaches the fixed point NashRef's sequence of convex programs converges to). As NashRef and
// LibMTL: the heads get alpha-weighted gradients, and the shared gradient d = sum_t alpha_t g_t is
// clipped to max_norm (|d| = sqrt(T) at the solution, so it usually is). The weights are recomputed
// on calls 0, E, 2E, ... (E = update_every); the calls between reuse them and take no per-task
// gradient at all: one backward of sum_t alpha_t L_t, whose shared part is then clipped (averaged
// over ranks first, so every rank clips the same vector). When G = 0 the last alpha is kept.
struct NashMTLOptions {
  std::int64_t update_every = 1;
  double max_norm = 1.0;  // 0: no clipping
};
class NashMTL : public GradientBalancer {
 public:
  explicit NashMTL(std::size_t tasks, NashMTLOptions options = {});
  std::vector<double> combine(const Gramian& G, const std::vector<double>& losses) override;
  int last_newton_steps() const { return newton_steps_; }  // of the last combine()

 private:
  Tensor step(const std::vector<Tensor>& losses, const std::vector<double>& values, MultiTaskModel& model) override;
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;

  NashMTLOptions options_;
  std::int64_t calls_ = 0;
  bool solved_ = false;  // weights_ hold a solution to warm-start from
  int newton_steps_ = 0;
};

// GradVac (Wang et al., ICLR 2021, "Gradient Vaccine"), as LibMTL: for each ordered task pair an
// EMA target rho^_ij of their cosine; visiting the other tasks in random order, whenever
// cos(g'_i, g_j) < rho^_ij, enough of g_j is added to g'_i to lift the cosine to the target, and
// rho^_ij <- (1 - beta) rho^_ij + beta cos (the cosine before the correction, corrected or not).
// The update is sum_i g'_i. Granularity: the whole shared parameter vector (LibMTL's default,
// group_type 0), so every g'_i stays in the span of the g_t and GradVac is a stateful, random
// Gramian weighting; the per-layer variants are not offered. With rho^ = 0 it is PCGrad.
struct GradVacOptions {
  double beta = 0.5;  // LibMTL's default; the paper's (about 1e-2) is unconfirmed
};
class GradVac : public GradientBalancer {
 public:
  explicit GradVac(std::size_t tasks, GradVacOptions options = {}, std::uint64_t seed = 0);
  std::vector<double> combine(const Gramian& G, const std::vector<double>& losses) override;
  double target(std::size_t i, std::size_t j) const { return targets_[i * num_tasks() + j]; }  // rho^_ij

 private:
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;
  GradVacOptions options_;
  std::vector<double> targets_;  // T x T, row-major; 0 before the first step
  Generator gen_;
};

// GradDrop (Chen et al., NeurIPS 2020, "Just Pick a Sign"), as LibMTL, at the model's shared
// representation (MultiTaskModel::representation(), each tensor [batch, features...]): with r_t the
// task gradients there and H the representation, s_t = sum over the batch of sign(H) r_t, the
// positive-sign purity P = (1 + sum_t s_t / (sum_t |s_t| + 1e-7)) / 2 per feature, one uniform draw
// U per feature (shared by the batch and the tasks), and the masks M_t = [P > U][s_t > 0] +
// [P < U][s_t < 0]. The representation gets sum_t r_t (leak + (1 - leak) M_t), backpropagated
// through the shared part; each task's own parameters get its own gradient. Data-parallel: the s_t
// are averaged over the ranks and every rank draws U from the same seeded stream, so the masks are
// the same everywhere. The weights stay 1.
struct GradDropOptions {
  double leak = 0.0;  // in [0, 1]: 1 keeps every gradient (the plain sum)
};
class GradDrop : public Balancer {
 public:
  explicit GradDrop(std::size_t tasks, GradDropOptions options = {}, std::uint64_t seed = 0);
  // The combination itself, for one representation tensor h ([batch, features...]) with task
  // gradients r[t] (h's shape) and draws u (one per feature): what step() applies, without ranks.
  Tensor drop(const Tensor& h, const std::vector<Tensor>& r, const std::vector<double>& u) const;

 private:
  Tensor step(const std::vector<Tensor>& losses, const std::vector<double>& values, MultiTaskModel& model) override;
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;
  GradDropOptions options_;
  Generator gen_;
};

// DB-MTL (Lin et al. 2023, "Dual-Balancing for Multi-Task Learning"), as the authors' LibMTL code:
// losses balanced by taking logs, h_t = grad log(L_t + 1e-8); gradients balanced in magnitude:
// m_t <- (1 - b_k) h_t + b_k m_t with b_k = beta / k^sigma at step k = 1, 2, ... (m starts at 0, no
// bias correction), and the shared update sum_t a_t m_t with a_t = max_s |m_s| / (|m_t| + 1e-8), so
// every task contributes with the largest norm. Heads get their own grad log(L_t + 1e-8). weights()
// are the a_t; backward() returns sum_t log(L_t + 1e-8). The m_t (T x P floats) are state.
struct DBMTLOptions {
  double beta = 0.9;
  double sigma = 0.0;
};
class DBMTL : public Balancer {
 public:
  explicit DBMTL(std::size_t tasks, DBMTLOptions options = {});

 private:
  Tensor step(const std::vector<Tensor>& losses, const std::vector<double>& values, MultiTaskModel& model) override;
  void save_state(nn::StateDict& state) const override;
  void check_state(const nn::StateDict& state) const override;
  void load_state(const nn::StateDict& state) override;
  DBMTLOptions options_;
  std::int64_t step_ = 0;
  Tensor task_grads_;  // [T, P], the h_t of this step
  Tensor averages_;    // [T, P], the m_t (undefined before the first step)
};

}  // namespace ladon::mtl
