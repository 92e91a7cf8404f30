#include "gradient_methods.h"

#include <cmath>
#include <numeric>

#include "../core/autograd.h"
#include "../core/ops.h"

namespace ladon::mtl {

namespace {
double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

std::vector<std::vector<double>> gram(const std::vector<std::vector<double>>& g) {
  std::vector<std::vector<double>> G(g.size(), std::vector<double>(g.size()));
  for (std::size_t i = 0; i < g.size(); ++i)
    for (std::size_t j = i; j < g.size(); ++j) G[i][j] = G[j][i] = dot(g[i], g[j]);
  return G;
}

std::vector<double> mix(const std::vector<std::vector<double>>& g, const std::vector<double>& w) {
  std::vector<double> out(g[0].size(), 0.0);
  for (std::size_t t = 0; t < g.size(); ++t)
    for (std::size_t i = 0; i < out.size(); ++i) out[i] += w[t] * g[t][i];
  return out;
}
}  // namespace

void GradientMethod::backward(const std::vector<Tensor>& task_losses, const std::vector<Tensor>& shared_parameters) {
  LADON_CHECK(!task_losses.empty(), "GradientMethod", "needs at least one task loss");
  LADON_CHECK(!shared_parameters.empty(), "GradientMethod", "needs the shared parameters");
  // The flat per-task buffers keep their capacity between calls: a training step reuses them.
  task_grads_.resize(task_losses.size());
  for (std::size_t t = 0; t < task_losses.size(); ++t) {
    std::vector<double>& flat = task_grads_[t];
    flat.clear();
    for (const Tensor& g : grad({task_losses[t]}, shared_parameters, {.retain_graph = true})) {
      const Tensor c = g.contiguous();
      flat.insert(flat.end(), c.data<float>(), c.data<float>() + c.numel());
    }
  }
  const std::vector<double> combined = combine(task_grads_);

  // One ordinary backward gives every task-specific parameter its own task's gradient (the other
  // tasks' losses do not reach it); the shared gradients it also accumulates are replaced below.
  std::vector<Tensor> before;
  for (const Tensor& p : shared_parameters) before.push_back(p.grad());
  Tensor total = task_losses[0].reshape({});
  for (std::size_t t = 1; t < task_losses.size(); ++t) total = total + task_losses[t].reshape({});
  total.backward();
  std::size_t at = 0;
  for (std::size_t k = 0; k < shared_parameters.size(); ++k) {
    const Tensor& p = shared_parameters[k];
    Tensor g = empty(p.shape());
    float* out = g.data<float>();
    for (std::int64_t i = 0; i < p.numel(); ++i) out[i] = static_cast<float>(combined[at++]);
    p.set_grad(before[k].defined() ? add(before[k], g) : g);
  }
}

std::vector<double> PCGrad::combine(const std::vector<std::vector<double>>& task_grads) {
  const std::size_t tasks = task_grads.size();
  conflicts_ = 0;
  std::vector<double> out(task_grads[0].size(), 0.0);
  for (std::size_t i = 0; i < tasks; ++i) {
    std::vector<double> g = task_grads[i];
    std::vector<std::size_t> order;
    for (std::size_t j = 0; j < tasks; ++j)
      if (j != i) order.push_back(j);
    for (std::size_t k = order.size(); k > 1; --k) std::swap(order[k - 1], order[gen_.below(k)]);
    for (std::size_t j : order) {
      const double d = dot(g, task_grads[j]);
      if (d < 0) {
        const double scale = d / (dot(task_grads[j], task_grads[j]) + 1e-20);
        for (std::size_t e = 0; e < g.size(); ++e) g[e] -= scale * task_grads[j][e];
        ++conflicts_;
      }
    }
    for (std::size_t e = 0; e < g.size(); ++e) out[e] += g[e];
  }
  return out;
}

std::vector<double> min_norm_weights(const std::vector<std::vector<double>>& G, int iterations) {
  const std::size_t n = G.size();
  std::vector<double> a(n, 1.0 / static_cast<double>(n));
  for (int it = 0; it < iterations; ++it) {
    std::vector<double> Ga(n, 0.0);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) Ga[i] += G[i][j] * a[j];
    const std::size_t t = static_cast<std::size_t>(std::min_element(Ga.begin(), Ga.end()) - Ga.begin());
    // Exact line search between the current point v = sum a g and the vertex g_t.
    const double vv = dot(a, Ga), vt = Ga[t], tt = G[t][t];
    const double denom = vv - 2 * vt + tt;
    if (denom <= 1e-20) break;
    const double gamma = std::clamp((vv - vt) / denom, 0.0, 1.0);
    if (gamma < 1e-9) break;
    for (double& v : a) v *= 1 - gamma;
    a[t] += gamma;
  }
  return a;
}

std::vector<double> MGDA::combine(const std::vector<std::vector<double>>& task_grads) {
  weights_ = min_norm_weights(gram(task_grads));
  return mix(task_grads, weights_);
}

void MGDA::backward_upper_bound(const std::vector<Tensor>& task_losses, const Tensor& representation) {
  LADON_CHECK(!task_losses.empty(), "MGDA", "needs at least one task loss");
  std::vector<std::vector<double>> grads;
  for (const Tensor& loss : task_losses) {
    const Tensor g = grad({loss}, {representation}, {.retain_graph = true})[0].contiguous();
    grads.emplace_back(g.data<float>(), g.data<float>() + g.numel());
  }
  weights_ = min_norm_weights(gram(grads));
  Tensor total = task_losses[0].reshape({}) * weights_[0];
  for (std::size_t t = 1; t < task_losses.size(); ++t) total = total + task_losses[t].reshape({}) * weights_[t];
  total.backward();
}

std::vector<double> CAGrad::combine(const std::vector<std::vector<double>>& task_grads) {
  const std::size_t tasks = task_grads.size();
  const auto G = gram(task_grads);
  const std::vector<double> uniform(tasks, 1.0 / static_cast<double>(tasks));
  std::vector<double> Gu(tasks, 0.0);  // G * uniform: g_i . g0
  for (std::size_t i = 0; i < tasks; ++i)
    for (std::size_t j = 0; j < tasks; ++j) Gu[i] += G[i][j] * uniform[j];
  const double g0_norm = std::sqrt(std::max(dot(uniform, Gu), 0.0));
  const double sqrt_phi = c_ * g0_norm;
  // Minimise F(w) = w.Gu + sqrt_phi * sqrt(w'Gw) over the simplex by exponentiated gradient.
  std::vector<double> w = uniform;
  for (int it = 0; it < 500; ++it) {
    std::vector<double> Gw(tasks, 0.0);
    for (std::size_t i = 0; i < tasks; ++i)
      for (std::size_t j = 0; j < tasks; ++j) Gw[i] += G[i][j] * w[j];
    const double gw_norm = std::sqrt(std::max(dot(w, Gw), 1e-20));
    double total = 0;
    const double step = 1.0 / (g0_norm * g0_norm + 1e-20);
    for (std::size_t i = 0; i < tasks; ++i) total += w[i] *= std::exp(-step * (Gu[i] + sqrt_phi * Gw[i] / gw_norm));
    for (double& v : w) v /= total;
  }
  std::vector<double> Gw(tasks, 0.0);
  for (std::size_t i = 0; i < tasks; ++i)
    for (std::size_t j = 0; j < tasks; ++j) Gw[i] += G[i][j] * w[j];
  const double gw_norm = std::sqrt(std::max(dot(w, Gw), 1e-20));
  const std::vector<double> g0 = mix(task_grads, uniform), gw = mix(task_grads, w);
  std::vector<double> d(g0.size());
  for (std::size_t e = 0; e < d.size(); ++e) d[e] = (g0[e] + sqrt_phi / gw_norm * gw[e]) / (1 + c_ * c_);
  return d;
}

}  // namespace ladon::mtl
