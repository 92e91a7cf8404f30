#include "gradient_methods.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <span>
#include <string>
#include <utility>

#include "../core/autograd.h"
#include "../core/ops.h"
#include "../kernels/reduce.h"

namespace ladon::mtl {

namespace {

void check_gramian(const char* op, const Gramian& G, const std::vector<double>& losses) {
  LADON_CHECK(!G.empty(), op, "needs the Gramian of at least one task gradient");
  LADON_CHECK(losses.size() == G.size(), op, losses.size(), " loss values for a ", G.size(), "-task Gramian");
  for (std::size_t i = 0; i < G.size(); ++i) {
    LADON_CHECK(G[i].size() == G.size(), op, "the Gramian is not square: row ", i, " has ", G[i].size(),
                " entries for ", G.size(), " tasks");
    for (std::size_t j = 0; j < G.size(); ++j)
      LADON_CHECK(std::isfinite(G[i][j]), op, "the Gramian has a non-finite entry G[", i, "][", j, "] = ", G[i][j]);
  }
}

double quadratic(const Gramian& G, const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < G.size(); ++i)
    for (std::size_t j = 0; j < G.size(); ++j) s += a[i] * G[i][j] * b[j];
  return s;
}

// Rows of `rows` ([T, P] float32, each row contiguous, rows at any stride: a column block of wider
// rows too): G = R R^T, by kernels::gram (float sums over blocks of 4096 columns, block totals in
// double, so a long gradient loses no more than one block's rounding).
Gramian gramian_of_rows(const Tensor& rows) {
  const std::int64_t tasks = rows.shape()[0], n = rows.shape()[1];
  LADON_CHECK(n <= 1 || rows.strides()[1] == 1, "gramian", "task-gradient rows must be contiguous");
  std::vector<double> flat(static_cast<std::size_t>(tasks * tasks));
  kernels::gram(tasks, n, rows.strides()[0], rows.data<float>(), flat.data());
  Gramian G(static_cast<std::size_t>(tasks), std::vector<double>(static_cast<std::size_t>(tasks)));
  for (std::int64_t i = 0; i < tasks; ++i)
    for (std::int64_t j = 0; j < tasks; ++j)
      G[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)] = flat[static_cast<std::size_t>(i * tasks + j)];
  return G;
}

// Copies each gradient, flattened, into the row of `rows` from column `at` on.
std::int64_t append_row(Tensor& rows, std::size_t task, std::int64_t at, const Tensor& g) {
  const Tensor c = g.contiguous();
  float* dst = rows.data<float>() + static_cast<std::int64_t>(task) * rows.shape()[1] + at;
  std::copy(c.data<float>(), c.data<float>() + c.numel(), dst);
  return at + c.numel();
}

void accumulate_grad(const Tensor& p, const Tensor& g) {
  NoGradGuard no_grad;
  p.set_grad(p.grad().defined() ? add(p.grad(), g) : g.contiguous());
}

std::int64_t total_numel(const std::vector<Tensor>& tensors) {
  std::int64_t n = 0;
  for (const Tensor& t : tensors) n += t.numel();
  return n;
}


// The model's parameters: the shared ones, and each task's own.
struct SplitParameters {
  std::vector<Tensor> shared;
  std::vector<std::vector<Tensor>> own;
  std::int64_t shared_numel = 0;
};

SplitParameters split_parameters(const char* op, MultiTaskModel& model, std::size_t tasks) {
  SplitParameters p;
  p.own.resize(tasks);
  for (MultiTaskModel::OwnedParameter& o : model.owned_parameters())
    (o.task < 0 ? p.shared : p.own[static_cast<std::size_t>(o.task)]).push_back(o.parameter);
  LADON_CHECK(!p.shared.empty(), op, "the model has no shared parameters to balance");
  p.shared_numel = total_numel(p.shared);
  return p;
}

// One gradient per task, for the shared parameters and the task's own together: the graph between
// them runs once per task, and nothing else does. The shared parts become the rows of `rows`
// ([T, P] float32, reallocated only when the shape changes); the own parts are returned.
std::vector<std::vector<Tensor>> task_gradients(const std::vector<Tensor>& losses, const SplitParameters& p,
                                                Tensor& rows) {
  const std::size_t tasks = p.own.size();
  const Shape shape{static_cast<std::int64_t>(tasks), p.shared_numel};
  if (!rows.defined() || rows.shape() != shape) rows = empty(shape);
  std::vector<std::vector<Tensor>> own(tasks);
  for (std::size_t t = 0; t < tasks; ++t) {
    std::vector<Tensor> inputs = p.shared;
    inputs.insert(inputs.end(), p.own[t].begin(), p.own[t].end());
    const std::vector<Tensor> g = grad({losses[t]}, inputs, {.retain_graph = t + 1 < tasks});
    std::int64_t at = 0;
    for (std::size_t k = 0; k < p.shared.size(); ++k) at = append_row(rows, t, at, g[k]);
    own[t].assign(g.begin() + static_cast<std::ptrdiff_t>(p.shared.size()), g.end());
  }
  return own;
}

// The first `count` gradients of g, flattened one after the other into one [numel] tensor.
Tensor flat_row(const std::vector<Tensor>& g, std::size_t count, std::int64_t numel) {
  Tensor flat = empty({1, numel});
  std::int64_t at = 0;
  for (std::size_t k = 0; k < count; ++k) at = append_row(flat, 0, at, g[k]);
  return flat.reshape({numel});
}

// The Gramian-first path (GradientBalancer::set_max_gradient_bytes). The shared parameters, in
// order, cut into blocks of consecutive tensors whose T gradient rows fit in `budget` bytes (a
// tensor too large for it is a block alone): [first, last) indices into p.shared. One block when
// there is no budget or everything fits.
std::vector<std::pair<std::size_t, std::size_t>> parameter_blocks(const SplitParameters& p, std::size_t tasks,
                                                                  std::int64_t budget) {
  std::vector<std::pair<std::size_t, std::size_t>> blocks;
  const auto row_bytes = [&](std::int64_t numel) { return numel * static_cast<std::int64_t>(tasks * sizeof(float)); };
  if (budget <= 0 || row_bytes(p.shared_numel) <= budget) return {{0, p.shared.size()}};
  std::size_t first = 0;
  std::int64_t numel = 0;
  for (std::size_t k = 0; k < p.shared.size(); ++k) {
    if (k > first && row_bytes(numel + p.shared[k].numel()) > budget) {
      blocks.emplace_back(first, k);
      first = k, numel = 0;
    }
    numel += p.shared[k].numel();
  }
  blocks.emplace_back(first, p.shared.size());
  return blocks;
}

// The Gramian of the T shared task gradients, block by block: each block's T rows are taken by
// partial backwards (only the graph from the loss down to that block runs), averaged over the
// ranks, added into G (the Gramian of the whole rows is the sum of the blocks'), and dropped, so
// at most one block's rows (in one buffer reused by every block) are alive at a time. Each task's
// own gradients come with the first block. The graph is kept for the backward that follows.
Gramian blocked_gramian(const std::vector<Tensor>& losses, const SplitParameters& p,
                        const std::vector<std::pair<std::size_t, std::size_t>>& blocks,
                        std::vector<std::vector<Tensor>>& own, const std::function<void(std::span<float>)>& average) {
  const std::size_t tasks = p.own.size();
  const auto tasks64 = static_cast<std::int64_t>(tasks);
  std::int64_t widest = 0;
  for (const auto& [first, last] : blocks) {
    std::int64_t n = 0;
    for (std::size_t k = first; k < last; ++k) n += p.shared[k].numel();
    widest = std::max(widest, n);
  }
  const Tensor buffer = empty({tasks64 * widest});
  Gramian G(tasks, std::vector<double>(tasks, 0.0));
  own.assign(tasks, {});
  for (std::size_t b = 0; b < blocks.size(); ++b) {
    const auto [first, last] = blocks[b];
    const std::vector<Tensor> params(p.shared.begin() + static_cast<std::ptrdiff_t>(first),
                                     p.shared.begin() + static_cast<std::ptrdiff_t>(last));
    Tensor rows = buffer.narrow(0, 0, tasks64 * total_numel(params)).reshape({tasks64, total_numel(params)});
    for (std::size_t t = 0; t < tasks; ++t) {
      std::vector<Tensor> inputs = params;
      if (b == 0) inputs.insert(inputs.end(), p.own[t].begin(), p.own[t].end());
      const std::vector<Tensor> g = grad({losses[t]}, inputs, {.retain_graph = true});
      std::int64_t at = 0;
      for (std::size_t k = 0; k < params.size(); ++k) at = append_row(rows, t, at, g[k]);
      if (b == 0) own[t].assign(g.begin() + static_cast<std::ptrdiff_t>(params.size()), g.end());
    }
    average(std::span<float>(rows.data<float>(), static_cast<std::size_t>(rows.numel())));
    const Gramian part = gramian_of_rows(rows);
    for (std::size_t i = 0; i < tasks; ++i)
      for (std::size_t j = 0; j < tasks; ++j) G[i][j] += part[i][j];
  }
  return G;
}

// The gradient of `objective` with respect to the shared parameters, averaged over the ranks, as
// one flat row ([P]): the combination d = sum_t w_t g_t taken by one more backward, of
// sum_t w_t L_t.
Tensor flat_shared_gradient(const Tensor& objective, const SplitParameters& p, int ranks,
                            const std::function<void(std::span<float>)>& average) {
  Tensor flat = flat_row(grad({objective}, p.shared), p.shared.size(), p.shared_numel);
  if (ranks > 1) average(std::span<float>(flat.data<float>(), static_cast<std::size_t>(flat.numel())));
  return flat;
}

// The same, one tensor per shared parameter. On one process the backward's tensors are used as
// they are; with ranks they are views of the flat row the collective averaged.
std::vector<Tensor> shared_gradient(const Tensor& objective, const SplitParameters& p, int ranks,
                                    const std::function<void(std::span<float>)>& average) {
  if (ranks == 1) return grad({objective}, p.shared);
  const Tensor flat = flat_shared_gradient(objective, p, ranks, average);
  std::vector<Tensor> g;
  std::int64_t at = 0;
  for (const Tensor& s : p.shared) {
    g.push_back(flat.narrow(0, at, s.numel()).reshape(s.shape()));
    at += s.numel();
  }
  return g;
}

// Adds scale[t] times task t's own gradients to its parameters' .grad().
void add_own(const SplitParameters& p, const std::vector<std::vector<Tensor>>& grads, const std::vector<double>& scale) {
  NoGradGuard no_grad;
  for (std::size_t t = 0; t < p.own.size(); ++t)
    for (std::size_t k = 0; k < p.own[t].size(); ++k)
      accumulate_grad(p.own[t][k], scale[t] == 1.0 ? grads[t][k] : grads[t][k] * scale[t]);
}

// Adds the flat d ([P]) to the shared parameters' .grad(), cut back into their shapes.
void add_shared(const SplitParameters& p, const Tensor& d) {
  NoGradGuard no_grad;
  std::int64_t at = 0;
  for (const Tensor& s : p.shared) {
    accumulate_grad(s, d.narrow(0, at, s.numel()).reshape(s.shape()));
    at += s.numel();
  }
}

// d = w^T rows, one GEMM: [P].
Tensor combination(const Tensor& rows, const std::vector<double>& w) {
  NoGradGuard no_grad;
  const std::vector<float> wf(w.begin(), w.end());
  return matmul(tensor(wf, {1, rows.shape()[0]}), rows).reshape({rows.shape()[1]});
}

// The tasks other than i, shuffled (Fisher-Yates): PCGrad's and GradVac's visiting order.
std::vector<std::size_t> others_in_random_order(std::size_t i, std::size_t tasks, Generator& gen) {
  std::vector<std::size_t> order;
  for (std::size_t j = 0; j < tasks; ++j)
    if (j != i) order.push_back(j);
  for (std::size_t k = order.size(); k > 1; --k) std::swap(order[k - 1], order[gen.below(k)]);
  return order;
}

void check_drop_inputs(const Tensor& h, const std::vector<Tensor>& r, std::size_t tasks) {
  LADON_CHECK(h.defined() && h.dim() >= 2 && h.dtype() == Dtype::float32, "GradDrop", "the representation has shape ",
              h.defined() ? shape_str(h.shape()) : "undefined", "; expected float32 [batch, features...]");
  LADON_CHECK(r.size() == tasks, "GradDrop", r.size(), " task gradients for ", tasks, " tasks");
  for (std::size_t t = 0; t < r.size(); ++t)
    LADON_CHECK(r[t].defined() && r[t].shape() == h.shape() && r[t].dtype() == Dtype::float32, "GradDrop",
                "task ", t, "'s gradient has shape ", r[t].defined() ? shape_str(r[t].shape()) : "undefined",
                ", the representation ", shape_str(h.shape()));
}

// GradDrop's s_t = sum over the batch of sign(h) r_t, one per feature: [t * F + f].
std::vector<double> sign_sums(const Tensor& h, const std::vector<Tensor>& r) {
  const Tensor hc = h.contiguous();
  const std::int64_t batch = h.shape()[0], features = h.numel() / std::max<std::int64_t>(batch, 1);
  const float* hv = hc.data<float>();
  std::vector<double> s(r.size() * static_cast<std::size_t>(features), 0.0);
  for (std::size_t t = 0; t < r.size(); ++t) {
    const Tensor rc = r[t].contiguous();
    const float* rv = rc.data<float>();
    double* st = s.data() + t * static_cast<std::size_t>(features);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t f = 0; f < features; ++f) {
        const float x = hv[b * features + f];
        st[f] += static_cast<double>((x > 0) - (x < 0)) * rv[b * features + f];
      }
  }
  return s;
}

// sum_t r_t (leak + (1 - leak) M_t), the masks from the sign sums s and one draw u per feature.
Tensor masked_sum(const std::vector<Tensor>& r, const std::vector<double>& s, const std::vector<double>& u,
                  double leak) {
  const std::size_t tasks = r.size(), features = u.size();
  std::vector<double> purity(features);  // P = (1 + sum_t s_t / (sum_t |s_t| + 1e-7)) / 2
  for (std::size_t f = 0; f < features; ++f) {
    double total = 0, mass = 0;
    for (std::size_t t = 0; t < tasks; ++t) total += s[t * features + f], mass += std::fabs(s[t * features + f]);
    purity[f] = 0.5 * (1 + total / (mass + 1e-7));
  }
  std::vector<float> factor(tasks * features);  // leak + (1 - leak) M_t, per task and feature
  for (std::size_t t = 0; t < tasks; ++t)
    for (std::size_t f = 0; f < features; ++f) {
      const double st = s[t * features + f];
      const bool keep = (purity[f] > u[f] && st > 0) || (purity[f] < u[f] && st < 0);
      factor[t * features + f] = static_cast<float>(leak + (1 - leak) * (keep ? 1.0 : 0.0));
    }
  Tensor out = zeros(r[0].shape());
  float* o = out.data<float>();
  const std::int64_t rows = r[0].numel() / static_cast<std::int64_t>(features);
  for (std::size_t t = 0; t < tasks; ++t) {  // row by row: contiguous in memory
    const Tensor rc = r[t].contiguous();
    const float* rv = rc.data<float>();
    const float* ft = factor.data() + t * features;
    for (std::int64_t b = 0; b < rows; ++b) {
      float* ob = o + b * static_cast<std::int64_t>(features);
      const float* rb = rv + b * static_cast<std::int64_t>(features);
      for (std::size_t f = 0; f < features; ++f) ob[f] += ft[f] * rb[f];
    }
  }
  return out;
}

// Solves A x = b (small, dense) by Gaussian elimination with partial pivoting.
std::vector<double> solve_small(const char* op, Gramian A, std::vector<double> b) {
  const std::size_t n = b.size();
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t pivot = c;
    for (std::size_t r = c + 1; r < n; ++r)
      if (std::fabs(A[r][c]) > std::fabs(A[pivot][c])) pivot = r;
    LADON_CHECK(std::fabs(A[pivot][c]) > 1e-300, op, "the task Gramian is singular (regularise it)");
    std::swap(A[c], A[pivot]);
    std::swap(b[c], b[pivot]);
    for (std::size_t r = c + 1; r < n; ++r) {
      const double f = A[r][c] / A[c][c];
      for (std::size_t k = c; k < n; ++k) A[r][k] -= f * A[c][k];
      b[r] -= f * b[c];
    }
  }
  std::vector<double> x(n);
  for (std::size_t r = n; r-- > 0;) {
    double v = b[r];
    for (std::size_t k = r + 1; k < n; ++k) v -= A[r][k] * x[k];
    x[r] = v / A[r][r];
  }
  return x;
}

// min_v v^T Q v subject to v >= u, for a positive definite Q: exact, by the primal active-set method
// (Nocedal & Wright, Algorithm 16.3). Starts with every bound active and frees the one with the most
// negative multiplier (Q v)_i until none is negative, stepping back to the first bound a solve
// crosses.
std::vector<double> bounded_qp(const char* op, const Gramian& Q, const std::vector<double>& u) {
  const std::size_t n = u.size();
  std::vector<double> v = u;
  std::vector<bool> active(n, true);
  for (std::size_t iteration = 0; iteration < 20 * n + 20; ++iteration) {
    std::size_t worst = n;
    double most_negative = -1e-12;
    for (std::size_t i = 0; i < n; ++i) {
      if (!active[i]) continue;
      double mu = 0;
      for (std::size_t j = 0; j < n; ++j) mu += Q[i][j] * v[j];
      if (mu < most_negative) most_negative = mu, worst = i;
    }
    if (worst == n) return v;
    active[worst] = false;
    for (;;) {  // minimise over the free set, stepping back to the first bound crossed
      std::vector<std::size_t> free;
      for (std::size_t i = 0; i < n; ++i)
        if (!active[i]) free.push_back(i);
      Gramian QFF(free.size(), std::vector<double>(free.size()));
      std::vector<double> rhs(free.size(), 0.0);
      for (std::size_t a = 0; a < free.size(); ++a) {
        for (std::size_t b = 0; b < free.size(); ++b) QFF[a][b] = Q[free[a]][free[b]];
        for (std::size_t j = 0; j < n; ++j)
          if (active[j]) rhs[a] -= Q[free[a]][j] * u[j];
      }
      const std::vector<double> x = solve_small(op, QFF, rhs);
      double step = 1.0;
      std::size_t blocking = n;
      for (std::size_t a = 0; a < free.size(); ++a) {
        const std::size_t i = free[a];
        if (x[a] < u[i] && v[i] - x[a] > 0) {
          const double t = (v[i] - u[i]) / (v[i] - x[a]);
          if (t < step) step = t, blocking = i;
        }
      }
      for (std::size_t a = 0; a < free.size(); ++a) v[free[a]] += step * (x[a] - v[free[a]]);
      if (blocking == n) break;
      v[blocking] = u[blocking];
      active[blocking] = true;
    }
  }
  ::ladon::detail::fail(op, "the dual-cone projection did not converge");
}

// G / trace(G) + reg_eps I, or reg_eps I when the trace is below norm_eps (TorchJD's normalisation).
Gramian normalise_for_qp(const Gramian& G, const DualConeOptions& o) {
  double trace = 0;
  for (std::size_t t = 0; t < G.size(); ++t) trace += G[t][t];
  Gramian out = G;
  for (std::size_t i = 0; i < G.size(); ++i)
    for (std::size_t j = 0; j < G.size(); ++j)
      out[i][j] = (trace < o.norm_eps ? 0.0 : G[i][j] / trace) + (i == j ? o.reg_eps : 0.0);
  return out;
}

void check_dual_cone_options(const char* op, const DualConeOptions& o) {
  LADON_CHECK(o.norm_eps >= 0 && o.reg_eps >= 0 && std::isfinite(o.norm_eps) && std::isfinite(o.reg_eps), op,
              "norm_eps and reg_eps must be non-negative, got ", o.norm_eps, " and ", o.reg_eps);
}

// Eigenvalues and unit eigenvectors (columns of vectors) of a symmetric matrix, by cyclic Jacobi
// rotations: T is small, and Jacobi is accurate for the tiny eigenvalues Aligned-MTL divides by.
void symmetric_eigen(Gramian A, std::vector<double>& values, Gramian& vectors) {
  const std::size_t n = A.size();
  vectors.assign(n, std::vector<double>(n, 0.0));
  for (std::size_t i = 0; i < n; ++i) vectors[i][i] = 1.0;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, scale = 0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) (i == j ? scale : off) += A[i][j] * A[i][j];
    if (off <= 1e-30 * scale || off == 0) break;
    for (std::size_t p = 0; p + 1 < n; ++p)
      for (std::size_t q = p + 1; q < n; ++q) {
        if (A[p][q] == 0) continue;
        const double theta = (A[q][q] - A[p][p]) / (2 * A[p][q]);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (std::size_t k = 0; k < n; ++k) {  // A <- A J (columns p, q)
          const double akp = A[k][p], akq = A[k][q];
          A[k][p] = c * akp - s * akq;
          A[k][q] = s * akp + c * akq;
        }
        for (std::size_t k = 0; k < n; ++k) {  // A <- J^T A (rows p, q)
          const double apk = A[p][k], aqk = A[q][k];
          A[p][k] = c * apk - s * aqk;
          A[q][k] = s * apk + c * aqk;
        }
        for (std::size_t k = 0; k < n; ++k) {
          const double vkp = vectors[k][p], vkq = vectors[k][q];
          vectors[k][p] = c * vkp - s * vkq;
          vectors[k][q] = s * vkp + c * vkq;
        }
      }
  }
  values.resize(n);
  for (std::size_t i = 0; i < n; ++i) values[i] = A[i][i];
}
}  // namespace

Gramian gramian(const std::vector<std::vector<double>>& vectors) {
  LADON_CHECK(!vectors.empty(), "gramian", "needs at least one vector");
  for (std::size_t i = 0; i < vectors.size(); ++i)
    LADON_CHECK(vectors[i].size() == vectors[0].size(), "gramian", "vector ", i, " has ", vectors[i].size(),
                " entries, vector 0 has ", vectors[0].size());
  Gramian G(vectors.size(), std::vector<double>(vectors.size()));
  for (std::size_t i = 0; i < vectors.size(); ++i)
    for (std::size_t j = i; j < vectors.size(); ++j)
      G[i][j] = G[j][i] = std::inner_product(vectors[i].begin(), vectors[i].end(), vectors[j].begin(), 0.0);
  return G;
}

void GradientBalancer::set_max_gradient_bytes(std::int64_t bytes) {
  LADON_CHECK(bytes >= 0, name().c_str(), "max_gradient_bytes must be non-negative (0: no limit), got ", bytes);
  max_gradient_bytes_ = bytes;
  if (bytes > 0) task_grads_ = Tensor();  // the rows this path no longer keeps between steps
}

Tensor GradientBalancer::step(const std::vector<Tensor>& losses, const std::vector<double>& values,
                              MultiTaskModel& model) {
  const SplitParameters p = split_parameters(name().c_str(), model, num_tasks());
  const auto blocks = parameter_blocks(p, num_tasks(), max_gradient_bytes_);
  const auto average_floats = [this](std::span<float> v) { average(v); };
  if (blocks.size() > 1) {  // Gramian first, then d by one backward of sum_t w_t L_t
    std::vector<std::vector<Tensor>> own;
    const Gramian G = blocked_gramian(losses, p, blocks, own, average_floats);
    add_own(p, own, std::vector<double>(num_tasks(), 1.0));
    weights_ = combine(G, values);
    const std::vector<Tensor> d = shared_gradient(weighted_sum(losses, weights_), p, ranks(), average_floats);
    for (std::size_t k = 0; k < p.shared.size(); ++k) accumulate_grad(p.shared[k], d[k]);
    return scalar(static_cast<float>(weighted_value(values, weights_)));
  }
  const std::vector<std::vector<Tensor>> own = task_gradients(losses, p, task_grads_);
  add_own(p, own, std::vector<double>(num_tasks(), 1.0));
  // The global task gradients: all of them, or (reduce-scatter) this rank's block of columns.
  const std::size_t tasks = num_tasks();
  const std::int64_t n = task_grads_.shape()[1];
  const Collective::Columns mine = average_columns(
      std::span<float>(task_grads_.data<float>(), static_cast<std::size_t>(task_grads_.numel())),
      static_cast<std::int64_t>(tasks));
  const std::int64_t width = mine.end - mine.begin;
  const Tensor block = task_grads_.narrow(1, mine.begin, width);
  Gramian G = gramian_of_rows(block);
  if (mine.sharded) {  // the blocks' Gramians add up to the whole one
    std::vector<double> flat;
    for (const std::vector<double>& row : G) flat.insert(flat.end(), row.begin(), row.end());
    average(flat);
    for (std::size_t i = 0; i < tasks; ++i)
      for (std::size_t j = 0; j < tasks; ++j) G[i][j] = flat[i * tasks + j] * ranks();
  }
  weights_ = combine(G, values);
  if (!mine.sharded) {
    add_shared(p, combination(task_grads_, weights_));
  } else {  // this rank's block of the combination, the rest gathered from the other ranks
    Tensor d = empty({n});
    if (width > 0) {
      const Tensor part = combination(block, weights_).contiguous();
      std::copy_n(part.data<float>(), width, d.data<float>() + mine.begin);
    }
    gather_columns(std::span<float>(d.data<float>(), static_cast<std::size_t>(n)), mine);
    add_shared(p, d);
  }
  return scalar(static_cast<float>(weighted_value(values, weights_)));
}

PCGrad::PCGrad(std::size_t tasks, std::uint64_t seed) : GradientBalancer("PCGrad", tasks), gen_(seed) {}

std::vector<double> PCGrad::combine(const Gramian& G, const std::vector<double>& losses) {
  check_gramian("PCGrad", G, losses);
  const std::size_t tasks = G.size();
  conflicts_ = 0;
  std::vector<double> total(tasks, 0.0);
  for (std::size_t i = 0; i < tasks; ++i) {
    std::vector<double> c(tasks, 0.0);  // g_i^PC = sum_k c_k g_k
    c[i] = 1.0;
    for (std::size_t j : others_in_random_order(i, tasks, gen_)) {
      double d = 0;  // g_i^PC . g_j
      for (std::size_t k = 0; k < tasks; ++k) d += c[k] * G[k][j];
      if (d < 0) {
        c[j] -= d / (G[j][j] + 1e-20);
        ++conflicts_;
      }
    }
    for (std::size_t k = 0; k < tasks; ++k) total[k] += c[k];
  }
  return total;
}

void PCGrad::save_state(nn::StateDict& state) const { nn::save_generator(state, "generator", gen_); }

void PCGrad::check_state(const nn::StateDict& state) const { nn::generator_state(state, "generator", "PCGrad"); }

void PCGrad::load_state(const nn::StateDict& state) {
  gen_.set_state(nn::generator_state(state, "generator", "PCGrad"));
}

std::vector<double> min_norm_weights(const Gramian& G, int iterations) {
  check_gramian("min_norm_weights", G, std::vector<double>(G.size()));
  const std::size_t n = G.size();
  std::vector<double> a(n, 1.0 / static_cast<double>(n));
  for (int it = 0; it < iterations; ++it) {
    std::vector<double> Ga(n, 0.0);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) Ga[i] += G[i][j] * a[j];
    const std::size_t t = static_cast<std::size_t>(std::min_element(Ga.begin(), Ga.end()) - Ga.begin());
    // Exact line search between the current point v = sum a g and the vertex g_t.
    const double vv = std::inner_product(a.begin(), a.end(), Ga.begin(), 0.0), vt = Ga[t], tt = G[t][t];
    const double denom = vv - 2 * vt + tt;
    if (denom <= 1e-20) break;
    const double gamma = std::clamp((vv - vt) / denom, 0.0, 1.0);
    if (gamma < 1e-9) break;
    for (double& v : a) v *= 1 - gamma;
    a[t] += gamma;
  }
  return a;
}

MGDA::MGDA(std::size_t tasks, MGDAOptions options) : GradientBalancer("MGDA", tasks), options_(options) {}

std::vector<double> MGDA::combine(const Gramian& G, const std::vector<double>& losses) {
  check_gramian("MGDA", G, losses);
  const std::size_t tasks = G.size();
  std::vector<double> scale(tasks, 1.0);  // n_t; a zero norm or loss leaves its task unscaled
  for (std::size_t t = 0; t < tasks; ++t) {
    const double norm = std::sqrt(std::max(G[t][t], 0.0));
    switch (options_.normalization) {
      case GradNormalization::none: break;
      case GradNormalization::l2: scale[t] = norm; break;
      case GradNormalization::loss: scale[t] = losses[t]; break;
      case GradNormalization::loss_plus: scale[t] = losses[t] * norm; break;
    }
    if (!(scale[t] > 0)) scale[t] = 1.0;
  }
  Gramian normalised = G;
  for (std::size_t i = 0; i < tasks; ++i)
    for (std::size_t j = 0; j < tasks; ++j) normalised[i][j] = G[i][j] / (scale[i] * scale[j]);
  std::vector<double> a = min_norm_weights(normalised);
  for (std::size_t t = 0; t < tasks; ++t) a[t] /= scale[t];
  return a;
}

Tensor MGDA::step(const std::vector<Tensor>& losses, const std::vector<double>& values, MultiTaskModel& model) {
  if (!options_.upper_bound) return GradientBalancer::step(losses, values, model);
  // Gradients with respect to the representation: a backward through the task parts only.
  const std::vector<Tensor>& z = model.representation();
  const std::size_t tasks = num_tasks();
  Tensor rows = empty({static_cast<std::int64_t>(tasks), total_numel(z)});
  for (std::size_t t = 0; t < tasks; ++t) {
    std::int64_t at = 0;
    for (const Tensor& g : grad({losses[t]}, z, {.retain_graph = true})) at = append_row(rows, t, at, g);
  }
  // Each rank's representation holds its own samples, so rows of different ranks must not be
  // averaged element by element. The global Gramian is the sum of the ranks' Gramians of gradients
  // scaled by 1/W (a rank's loss is the mean over its 1/W of the batch): avg_r(G_r) / W.
  Gramian G = gramian_of_rows(rows);
  std::vector<double> flat;
  for (const std::vector<double>& row : G) flat.insert(flat.end(), row.begin(), row.end());
  average(flat);
  const double per_rank = 1.0 / static_cast<double>(ranks());
  for (std::size_t i = 0; i < tasks; ++i)
    for (std::size_t j = 0; j < tasks; ++j) G[i][j] = flat[i * tasks + j] * per_rank;
  weights_ = combine(G, values);
  weighted_sum(losses, weights_).backward();
  return scalar(static_cast<float>(weighted_value(values, weights_)));
}

CAGrad::CAGrad(std::size_t tasks, double c) : GradientBalancer("CAGrad", tasks), c_(c) {
  LADON_CHECK(c >= 0 && std::isfinite(c), "CAGrad", "c must be non-negative, got ", c);
}

std::vector<double> CAGrad::combine(const Gramian& G, const std::vector<double>& losses) {
  check_gramian("CAGrad", G, losses);
  const std::size_t tasks = G.size();
  const std::vector<double> uniform(tasks, 1.0 / static_cast<double>(tasks));
  std::vector<double> Gu(tasks, 0.0);  // G * uniform: g_i . g0
  for (std::size_t i = 0; i < tasks; ++i)
    for (std::size_t j = 0; j < tasks; ++j) Gu[i] += G[i][j] * uniform[j];
  const double g0_norm = std::sqrt(std::max(quadratic(G, uniform, uniform), 0.0));
  const double sqrt_phi = c_ * g0_norm;
  // Minimise F(w) = w.Gu + sqrt_phi * sqrt(w'Gw) over the simplex by exponentiated gradient.
  std::vector<double> w = uniform;
  const double step = 1.0 / (g0_norm * g0_norm + 1e-20);
  for (int it = 0; it < 500; ++it) {
    std::vector<double> Gw(tasks, 0.0);
    for (std::size_t i = 0; i < tasks; ++i)
      for (std::size_t j = 0; j < tasks; ++j) Gw[i] += G[i][j] * w[j];
    const double gw_norm = std::sqrt(std::max(quadratic(G, w, w), 1e-20));
    double total = 0;
    for (std::size_t i = 0; i < tasks; ++i) total += w[i] *= std::exp(-step * (Gu[i] + sqrt_phi * Gw[i] / gw_norm));
    for (double& v : w) v /= total;
  }
  // d = (g0 + sqrt_phi / |g_w| g_w) / (1 + c^2), as weights on the task gradients.
  const double gw_norm = std::sqrt(std::max(quadratic(G, w, w), 1e-20));
  std::vector<double> d(tasks);
  for (std::size_t t = 0; t < tasks; ++t) d[t] = (uniform[t] + sqrt_phi / gw_norm * w[t]) / (1 + c_ * c_);
  return d;
}

UPGrad::UPGrad(std::size_t tasks, DualConeOptions options) : GradientBalancer("UPGrad", tasks), options_(options) {
  check_dual_cone_options("UPGrad", options);
}

std::vector<double> UPGrad::combine(const Gramian& G, const std::vector<double>& losses) {
  check_gramian("UPGrad", G, losses);
  const Gramian Q = normalise_for_qp(G, options_);
  const std::size_t tasks = G.size();
  std::vector<double> w(tasks, 0.0);
  for (std::size_t i = 0; i < tasks; ++i) {
    std::vector<double> u(tasks, 0.0);
    u[i] = 1.0 / static_cast<double>(tasks);
    const std::vector<double> v = bounded_qp("UPGrad", Q, u);
    for (std::size_t t = 0; t < tasks; ++t) w[t] += v[t];
  }
  return w;
}

DualProj::DualProj(std::size_t tasks, DualConeOptions options)
    : GradientBalancer("DualProj", tasks), options_(options) {
  check_dual_cone_options("DualProj", options);
}

std::vector<double> DualProj::combine(const Gramian& G, const std::vector<double>& losses) {
  check_gramian("DualProj", G, losses);
  return bounded_qp("DualProj", normalise_for_qp(G, options_),
                    std::vector<double>(G.size(), 1.0 / static_cast<double>(G.size())));
}

IMTLG::IMTLG(std::size_t tasks) : GradientBalancer("IMTLG", tasks) {}

std::vector<double> IMTLG::combine(const Gramian& G, const std::vector<double>& losses) {
  check_gramian("IMTLG", G, losses);
  const std::size_t tasks = G.size();
  std::vector<double> values;
  Gramian vectors;
  symmetric_eigen(G, values, vectors);
  const double top = *std::max_element(values.begin(), values.end());
  std::vector<double> v(tasks, 0.0);  // pinv(G) a, a_t = |g_t|
  for (std::size_t k = 0; k < tasks; ++k) {
    if (!(values[k] > 1e-12 * top)) continue;
    double along = 0;
    for (std::size_t t = 0; t < tasks; ++t) along += vectors[t][k] * std::sqrt(std::max(G[t][t], 0.0));
    for (std::size_t t = 0; t < tasks; ++t) v[t] += vectors[t][k] * along / values[k];
  }
  const double total = std::accumulate(v.begin(), v.end(), 0.0);
  if (!(total > 1e-12)) return std::vector<double>(tasks, 1.0 / static_cast<double>(tasks));
  for (double& x : v) x /= total;
  return v;
}

AlignedMTL::AlignedMTL(std::size_t tasks, AlignedMTLOptions options)
    : GradientBalancer("AlignedMTL", tasks), options_(options) {}

std::vector<double> AlignedMTL::combine(const Gramian& G, const std::vector<double>& losses) {
  check_gramian("AlignedMTL", G, losses);
  const std::size_t tasks = G.size();
  const std::vector<double> p(tasks, options_.mean_preference ? 1.0 / static_cast<double>(tasks) : 1.0);
  std::vector<double> values;
  Gramian vectors;
  symmetric_eigen(G, values, vectors);
  const double top = *std::max_element(values.begin(), values.end());
  // The float32 epsilon, as every reference uses even in double.
  const double tol = top * static_cast<double>(tasks) * 1.1920929e-7;
  double smallest = 0;
  for (double l : values)
    if (l > tol && (smallest == 0 || l < smallest)) smallest = l;
  if (smallest == 0) return p;  // rank 0: B = I
  std::vector<double> w(tasks, 0.0);  // B p = sqrt(s) sum_k v_k (v_k . p) / sqrt(l_k)
  for (std::size_t k = 0; k < tasks; ++k) {
    if (!(values[k] > tol)) continue;
    double along = 0;
    for (std::size_t t = 0; t < tasks; ++t) along += vectors[t][k] * p[t];
    for (std::size_t t = 0; t < tasks; ++t) w[t] += std::sqrt(smallest / values[k]) * vectors[t][k] * along;
  }
  return w;
}

NashMTL::NashMTL(std::size_t tasks, NashMTLOptions options) : GradientBalancer("NashMTL", tasks), options_(options) {
  LADON_CHECK(options.update_every >= 1, "NashMTL", "update_every must be at least 1, got ", options.update_every);
  LADON_CHECK(options.max_norm >= 0 && std::isfinite(options.max_norm), "NashMTL",
              "max_norm must be non-negative (0: no clipping), got ", options.max_norm);
}

std::vector<double> NashMTL::combine(const Gramian& G, const std::vector<double>& losses) {
  check_gramian("NashMTL", G, losses);
  const std::size_t n = G.size();
  LADON_CHECK(n == num_tasks(), "NashMTL", "a ", n, "-task Gramian for ", num_tasks(), " tasks");
  double frobenius = 0;
  for (const std::vector<double>& row : G)
    for (double v : row) frobenius += v * v;
  frobenius = std::sqrt(frobenius);
  newton_steps_ = 0;
  if (!(frobenius > 0)) return weights_;  // no gradient at all: keep the last alpha
  // Solve G^ b = 1 / b on G^ = G / |G|_F (+ 1e-8 I against a singular G); alpha = b / sqrt(|G|_F).
  Gramian Gn = G;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) Gn[i][j] = G[i][j] / frobenius + (i == j ? 1e-8 : 0.0);
  const double root = std::sqrt(frobenius);
  std::vector<double> b(n, 1.0);
  if (solved_)
    for (std::size_t t = 0; t < n; ++t) b[t] = root * weights_[t];
  auto phi = [&](const std::vector<double>& x) {
    double f = 0.5 * quadratic(Gn, x, x);
    for (double v : x) f -= std::log(v);
    return f;
  };
  for (int iteration = 0; iteration < 50; ++iteration) {
    std::vector<double> gradient(n);  // G^ b - 1 / b
    double largest = 0;
    for (std::size_t i = 0; i < n; ++i) {
      double Gb = 0;
      for (std::size_t j = 0; j < n; ++j) Gb += Gn[i][j] * b[j];
      gradient[i] = Gb - 1.0 / b[i];
      largest = std::max(largest, std::fabs(gradient[i]));
    }
    if (largest < 1e-10) break;
    Gramian hessian = Gn;  // G^ + diag(1 / b^2): positive definite
    for (std::size_t i = 0; i < n; ++i) hessian[i][i] += 1.0 / (b[i] * b[i]);
    const std::vector<double> s = solve_small("NashMTL", hessian, gradient);
    double t = 1.0;  // stay inside b > 0
    for (std::size_t i = 0; i < n; ++i)
      if (s[i] > 0) t = std::min(t, 0.99 * b[i] / s[i]);
    // Phi is self-concordant (a quadratic plus -log terms), so once the Newton decrement
    // lambda^2 = s . gradient is below 1/16 full steps converge quadratically; before that, backtrack
    // to Armijo's sufficient decrease. (Armijo alone stalls near the solution, where the decrease
    // is below the rounding of Phi.)
    const double f0 = phi(b), slope = std::inner_product(s.begin(), s.end(), gradient.begin(), 0.0);
    std::vector<double> next(n);
    for (;;) {
      for (std::size_t i = 0; i < n; ++i) next[i] = b[i] - t * s[i];
      if (slope < 1.0 / 16 || phi(next) <= f0 - 1e-4 * t * slope || t < 1e-12) break;
      t *= 0.5;
    }
    b = next;
    ++newton_steps_;
  }
  for (std::size_t t = 0; t < n; ++t) weights_[t] = b[t] / root;
  solved_ = true;
  return weights_;
}

Tensor NashMTL::step(const std::vector<Tensor>& losses, const std::vector<double>& values, MultiTaskModel& model) {
  const SplitParameters p = split_parameters("NashMTL", model, num_tasks());
  Tensor d;
  const auto blocks = parameter_blocks(p, num_tasks(), max_gradient_bytes_);
  if (calls_ % options_.update_every == 0 && blocks.size() > 1) {  // Gramian first (GradientBalancer::step)
    std::vector<std::vector<Tensor>> own;
    const auto average_floats = [this](std::span<float> v) { average(v); };
    weights_ = combine(blocked_gramian(losses, p, blocks, own, average_floats), values);
    add_own(p, own, weights_);
    d = flat_shared_gradient(weighted_sum(losses, weights_), p, ranks(), average_floats);
  } else if (calls_ % options_.update_every == 0) {
    const std::vector<std::vector<Tensor>> own = task_gradients(losses, p, task_grads_);
    average(std::span<float>(task_grads_.data<float>(), static_cast<std::size_t>(task_grads_.numel())));
    weights_ = combine(gramian_of_rows(task_grads_), values);
    add_own(p, own, weights_);
    d = combination(task_grads_, weights_);
  } else {  // reuse alpha: one backward of sum_t alpha_t L_t, no per-task gradient
    std::vector<Tensor> inputs = p.shared;
    for (const std::vector<Tensor>& own : p.own) inputs.insert(inputs.end(), own.begin(), own.end());
    const std::vector<Tensor> g = grad({weighted_sum(losses, weights_)}, inputs);
    d = flat_row(g, p.shared.size(), p.shared_numel);
    average(std::span<float>(d.data<float>(), static_cast<std::size_t>(d.numel())));
    std::size_t k = p.shared.size();
    for (const std::vector<Tensor>& own : p.own)
      for (const Tensor& param : own) accumulate_grad(param, g[k++]);
  }
  ++calls_;
  if (options_.max_norm > 0) {  // clip_grad_norm of the shared update, as NashRef
    double squared = 0;  // |d|^2, the Gramian of d alone: vectorised (a scalar loop here was 10% of a census step)
    kernels::gram(1, d.numel(), d.numel(), d.data<float>(), &squared);
    const double norm = std::sqrt(squared);
    if (norm > options_.max_norm) {
      NoGradGuard no_grad;
      d = d * (options_.max_norm / (norm + 1e-6));
    }
  }
  add_shared(p, d);
  return scalar(static_cast<float>(weighted_value(values, weights_)));
}

void NashMTL::save_state(nn::StateDict& state) const {
  state.set("update_every", options_.update_every);
  state.set("calls", calls_);
  state.set("solved", static_cast<std::int64_t>(solved_));
}

void NashMTL::check_state(const nn::StateDict& state) const {
  const std::int64_t every = state.integer("update_every", "NashMTL");
  LADON_CHECK(every == options_.update_every, "NashMTL", "the state updates every ", every,
              " calls, the balancer every ", options_.update_every);
  LADON_CHECK(state.integer("calls", "NashMTL") >= 0, "NashMTL", "the state has a negative call count");
  state.integer("solved", "NashMTL");
}

void NashMTL::load_state(const nn::StateDict& state) {
  calls_ = state.integer("calls");
  solved_ = state.integer("solved") != 0;
}

GradVac::GradVac(std::size_t tasks, GradVacOptions options, std::uint64_t seed)
    : GradientBalancer("GradVac", tasks), options_(options), targets_(tasks * tasks, 0.0), gen_(seed) {
  LADON_CHECK(options.beta > 0 && options.beta <= 1, "GradVac", "beta must be in (0, 1], got ", options.beta);
}

std::vector<double> GradVac::combine(const Gramian& G, const std::vector<double>& losses) {
  check_gramian("GradVac", G, losses);
  const std::size_t tasks = G.size();
  LADON_CHECK(tasks == num_tasks(), "GradVac", "a ", tasks, "-task Gramian for ", num_tasks(), " tasks");
  const double beta = options_.beta;
  std::vector<double> total(tasks, 0.0);
  for (std::size_t i = 0; i < tasks; ++i) {
    std::vector<double> c(tasks, 0.0);  // g'_i = sum_k c_k g_k
    c[i] = 1.0;
    for (std::size_t j : others_in_random_order(i, tasks, gen_)) {
      double along = 0;  // g'_i . g_j
      for (std::size_t k = 0; k < tasks; ++k) along += c[k] * G[k][j];
      const double norm_i = std::sqrt(std::max(quadratic(G, c, c), 0.0)), norm_j = std::sqrt(std::max(G[j][j], 0.0));
      const double rho = along / (norm_i * norm_j + 1e-8);
      double& target = targets_[i * tasks + j];
      if (rho < target) {
        const double off = std::sqrt(std::max(1 - target * target, 0.0));
        c[j] += norm_i * (target * std::sqrt(std::max(1 - rho * rho, 0.0)) - rho * off) / (norm_j * off + 1e-8);
      }
      target = (1 - beta) * target + beta * rho;
    }
    for (std::size_t k = 0; k < tasks; ++k) total[k] += c[k];
  }
  return total;
}

void GradVac::save_state(nn::StateDict& state) const {
  set_numbers(state, "targets", targets_);
  nn::save_generator(state, "generator", gen_);
}

void GradVac::check_state(const nn::StateDict& state) const {
  numbers(state, "targets", targets_.size(), "GradVac");
  nn::generator_state(state, "generator", "GradVac");
}

void GradVac::load_state(const nn::StateDict& state) {
  targets_ = numbers(state, "targets", targets_.size(), "GradVac");
  gen_.set_state(nn::generator_state(state, "generator", "GradVac"));
}

GradDrop::GradDrop(std::size_t tasks, GradDropOptions options, std::uint64_t seed)
    : Balancer("GradDrop", tasks), options_(options), gen_(seed) {
  LADON_CHECK(options.leak >= 0 && options.leak <= 1, "GradDrop", "leak must be in [0, 1], got ", options.leak);
}

Tensor GradDrop::drop(const Tensor& h, const std::vector<Tensor>& r, const std::vector<double>& u) const {
  check_drop_inputs(h, r, num_tasks());
  const std::vector<double> s = sign_sums(h, r);
  LADON_CHECK(u.size() == s.size() / r.size(), "GradDrop", u.size(), " uniform draws for ", s.size() / r.size(),
              " features");
  return masked_sum(r, s, u, options_.leak);
}

Tensor GradDrop::step(const std::vector<Tensor>& losses, const std::vector<double>& values, MultiTaskModel& model) {
  const std::vector<Tensor>& z = model.representation();
  const std::size_t tasks = num_tasks();
  for (std::size_t k = 0; k < z.size(); ++k)
    LADON_CHECK(z[k].dim() >= 2, "GradDrop", "representation ", k, " has shape ", shape_str(z[k].shape()),
                "; expected [batch, features...]");
  const SplitParameters p = split_parameters("GradDrop", model, tasks);
  // Per task: its gradient at the representation and its own parameters' gradient, one grad().
  std::vector<std::vector<Tensor>> r(z.size(), std::vector<Tensor>(tasks)), own(tasks);
  for (std::size_t t = 0; t < tasks; ++t) {
    std::vector<Tensor> inputs = z;
    inputs.insert(inputs.end(), p.own[t].begin(), p.own[t].end());
    const std::vector<Tensor> g = grad({losses[t]}, inputs, {.retain_graph = true});
    for (std::size_t k = 0; k < z.size(); ++k) r[k][t] = g[k].contiguous();
    own[t].assign(g.begin() + static_cast<std::ptrdiff_t>(z.size()), g.end());
  }
  add_own(p, own, std::vector<double>(tasks, 1.0));
  std::vector<Tensor> seeds;
  for (std::size_t k = 0; k < z.size(); ++k) {
    std::vector<double> s = sign_sums(z[k], r[k]);
    average(s);  // the global batch's sums, up to a factor P ignores: the same masks on every rank
    std::vector<double> u(s.size() / tasks);
    for (double& v : u) v = gen_.uniform();
    seeds.push_back(masked_sum(r[k], s, u, options_.leak));
  }
  const std::vector<Tensor> g = grad(z, p.shared, {.seeds = seeds});
  NoGradGuard no_grad;
  for (std::size_t k = 0; k < p.shared.size(); ++k) accumulate_grad(p.shared[k], g[k]);
  return scalar(static_cast<float>(weighted_value(values, weights_)));
}

void GradDrop::save_state(nn::StateDict& state) const { nn::save_generator(state, "generator", gen_); }

void GradDrop::check_state(const nn::StateDict& state) const { nn::generator_state(state, "generator", "GradDrop"); }

void GradDrop::load_state(const nn::StateDict& state) {
  gen_.set_state(nn::generator_state(state, "generator", "GradDrop"));
}

DBMTL::DBMTL(std::size_t tasks, DBMTLOptions options) : Balancer("DBMTL", tasks), options_(options) {
  LADON_CHECK(options.beta >= 0 && options.beta < 1, "DBMTL", "beta must be in [0, 1), got ", options.beta);
  LADON_CHECK(options.sigma >= 0 && std::isfinite(options.sigma), "DBMTL", "sigma must be non-negative, got ",
              options.sigma);
}

Tensor DBMTL::step(const std::vector<Tensor>& losses, const std::vector<double>& values, MultiTaskModel& model) {
  const std::size_t tasks = num_tasks();
  for (std::size_t t = 0; t < tasks; ++t)
    LADON_CHECK(values[t] >= 0, "DBMTL", "task ", t, " ('", model.tasks()[t].name, "') loss is ", values[t],
                "; the log-loss balance needs non-negative losses");
  const SplitParameters p = split_parameters("DBMTL", model, tasks);
  const std::vector<std::vector<Tensor>> own = task_gradients(losses, p, task_grads_);
  average(std::span<float>(task_grads_.data<float>(), static_cast<std::size_t>(task_grads_.numel())));
  std::vector<double> inverse(tasks);  // grad log(L + 1e-8) = grad L / (L + 1e-8)
  for (std::size_t t = 0; t < tasks; ++t) inverse[t] = 1.0 / (values[t] + 1e-8);
  if (!averages_.defined()) averages_ = zeros(task_grads_.shape());
  LADON_CHECK(averages_.shape() == task_grads_.shape(), "DBMTL", "its gradient averages are ",
              shape_str(averages_.shape()), " but the model's task gradients are ", shape_str(task_grads_.shape()));
  add_own(p, own, inverse);
  ++step_;
  const double b = options_.beta / std::pow(static_cast<double>(step_), options_.sigma);
  const std::int64_t n = p.shared_numel;
  const float* h = task_grads_.data<float>();
  float* m = averages_.data<float>();
  std::vector<double> norms(tasks, 0.0);
  for (std::size_t t = 0; t < tasks; ++t) {
    const std::int64_t row = static_cast<std::int64_t>(t) * n;
    const double scale = (1 - b) * inverse[t];
    double squared = 0;
    for (std::int64_t i = row; i < row + n; ++i) {
      m[i] = static_cast<float>(scale * h[i] + b * m[i]);
      squared += static_cast<double>(m[i]) * m[i];
    }
    norms[t] = std::sqrt(squared);
  }
  const double largest = *std::max_element(norms.begin(), norms.end());
  for (std::size_t t = 0; t < tasks; ++t) weights_[t] = largest / (norms[t] + 1e-8);
  add_shared(p, combination(averages_, weights_));
  double objective = 0;
  for (double v : values) objective += std::log(v + 1e-8);
  return scalar(static_cast<float>(objective));
}

void DBMTL::save_state(nn::StateDict& state) const {
  state.set("step", step_);
  if (averages_.defined()) state.set("averages", averages_.clone());
}

void DBMTL::check_state(const nn::StateDict& state) const {
  const std::int64_t step = state.integer("step", "DBMTL");
  LADON_CHECK(step >= 0, "DBMTL", "the state has a negative step");
  LADON_CHECK((step > 0) == state.contains("averages"), "DBMTL", "the state at step ", step,
              (step > 0 ? " has no gradient averages" : " has gradient averages"));
  if (step == 0) return;
  const Tensor& m = state.tensor("averages", "DBMTL");
  LADON_CHECK(m.dtype() == Dtype::float32 && m.dim() == 2 && m.shape()[0] == static_cast<std::int64_t>(num_tasks()),
              "DBMTL", "the state's gradient averages are ", shape_str(m.shape()), "; expected [", num_tasks(),
              ", shared parameters]");
}

void DBMTL::load_state(const nn::StateDict& state) {
  step_ = state.integer("step");
  averages_ = step_ > 0 ? state.tensor("averages").contiguous().clone() : Tensor();
}

}  // namespace ladon::mtl
