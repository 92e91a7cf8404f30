#include "loss_weighting.h"

#include <cmath>
#include <numeric>

#include "../core/autograd.h"
#include "../core/ops.h"

namespace ladon::mtl {

namespace {

void check_losses(const char* op, const std::vector<Tensor>& losses, std::size_t tasks) {
  LADON_CHECK(losses.size() == tasks, op, losses.size(), " task losses for ", tasks, " tasks");
  for (std::size_t t = 0; t < losses.size(); ++t)
    LADON_CHECK(losses[t].defined() && losses[t].numel() == 1, op, "task ", t, " loss has shape ",
                losses[t].defined() ? shape_str(losses[t].shape()) : "undefined", "; expected a scalar");
}

Tensor weighted_sum(const std::vector<Tensor>& losses, const std::vector<double>& alphas) {
  Tensor total;
  for (std::size_t t = 0; t < losses.size(); ++t) {
    const Tensor term = losses[t].reshape({}) * alphas[t];
    total = total.defined() ? total + term : term;
  }
  return total;
}

std::vector<double> softmax(const std::vector<double>& z, double scale) {
  const double top = *std::max_element(z.begin(), z.end());
  std::vector<double> e(z.size());
  double total = 0;
  for (std::size_t i = 0; i < z.size(); ++i) total += e[i] = std::exp(z[i] - top);
  for (double& v : e) v = v / total * scale;
  return e;
}

}  // namespace

StaticWeighting::StaticWeighting(std::vector<double> alphas) : alphas_(std::move(alphas)) {
  LADON_CHECK(!alphas_.empty(), "StaticWeighting", "needs at least one task weight");
  for (double a : alphas_) LADON_CHECK(a >= 0.0, "StaticWeighting", "task weights must be non-negative, got ", a);
}

Tensor StaticWeighting::operator()(const std::vector<Tensor>& task_losses) {
  check_losses("StaticWeighting", task_losses, alphas_.size());
  return weighted_sum(task_losses, alphas_);
}

UncertaintyWeighting::UncertaintyWeighting(std::vector<TaskKind> kinds)
    : kinds_(std::move(kinds)), log_vars_(zeros({static_cast<std::int64_t>(kinds_.size())}).requires_grad_()) {
  LADON_CHECK(!kinds_.empty(), "UncertaintyWeighting", "needs at least one task");
}

Tensor UncertaintyWeighting::operator()(const std::vector<Tensor>& task_losses) {
  check_losses("UncertaintyWeighting", task_losses, kinds_.size());
  Tensor total;
  for (std::size_t t = 0; t < kinds_.size(); ++t) {
    const Tensor s = log_vars_.narrow(0, static_cast<std::int64_t>(t), 1).reshape({});
    const double factor = kinds_[t] == TaskKind::regression ? 0.5 : 1.0;
    const Tensor term = exp(neg(s)) * task_losses[t].reshape({}) * factor + s * 0.5;
    total = total.defined() ? total + term : term;
  }
  return total;
}

std::vector<double> UncertaintyWeighting::weights() const {
  std::vector<double> w;
  const std::vector<float> s = log_vars_.to_vector<float>();
  for (std::size_t t = 0; t < kinds_.size(); ++t)
    w.push_back((kinds_[t] == TaskKind::regression ? 0.5 : 1.0) * std::exp(-static_cast<double>(s[t])));
  return w;
}

DynamicWeightAverage::DynamicWeightAverage(std::size_t tasks, double temperature)
    : temperature_(temperature), lambdas_(tasks, 1.0) {
  LADON_CHECK(tasks > 0, "DynamicWeightAverage", "needs at least one task");
  LADON_CHECK(temperature > 0, "DynamicWeightAverage", "temperature must be positive, got ", temperature);
}

Tensor DynamicWeightAverage::operator()(const std::vector<Tensor>& task_losses) {
  check_losses("DynamicWeightAverage", task_losses, lambdas_.size());
  return weighted_sum(task_losses, lambdas_);
}

void DynamicWeightAverage::end_epoch(const std::vector<double>& mean_task_losses) {
  LADON_CHECK(mean_task_losses.size() == lambdas_.size(), "DynamicWeightAverage", mean_task_losses.size(),
              " epoch losses for ", lambdas_.size(), " tasks");
  history_.push_back(mean_task_losses);
  if (history_.size() > 2) history_.erase(history_.begin());
  if (history_.size() < 2) return;
  std::vector<double> rate(lambdas_.size());
  for (std::size_t k = 0; k < rate.size(); ++k) rate[k] = history_[1][k] / history_[0][k] / temperature_;
  lambdas_ = softmax(rate, static_cast<double>(rate.size()));
}

RandomLossWeighting::RandomLossWeighting(std::size_t tasks, std::uint64_t seed) : gen_(seed), alphas_(tasks, 1.0) {
  LADON_CHECK(tasks > 0, "RandomLossWeighting", "needs at least one task");
}

Tensor RandomLossWeighting::operator()(const std::vector<Tensor>& task_losses) {
  check_losses("RandomLossWeighting", task_losses, alphas_.size());
  std::vector<double> z(alphas_.size());
  for (double& v : z) v = gen_.normal();
  alphas_ = softmax(z, 1.0);
  return weighted_sum(task_losses, alphas_);
}

GradNorm::GradNorm(std::size_t tasks, std::vector<Tensor> shared_layer, GradNormOptions options)
    : options_(options),
      shared_layer_(std::move(shared_layer)),
      task_weights_(ones({static_cast<std::int64_t>(tasks)}).requires_grad_()),
      optimizer_(std::make_unique<nn::Adam>(std::vector<Tensor>{task_weights_}, nn::AdamOptions{.lr = options.lr})) {
  LADON_CHECK(tasks > 0, "GradNorm", "needs at least one task");
  LADON_CHECK(!shared_layer_.empty(), "GradNorm", "needs the shared layer's parameters (W)");
}

std::vector<double> GradNorm::weights() const {
  const std::vector<float> w = task_weights_.to_vector<float>();
  return std::vector<double>(w.begin(), w.end());
}

Tensor GradNorm::operator()(const std::vector<Tensor>& task_losses) {
  const std::size_t tasks = static_cast<std::size_t>(task_weights_.numel());
  check_losses("GradNorm", task_losses, tasks);
  const std::vector<double> w = weights();
  std::vector<double> losses(tasks);
  for (std::size_t t = 0; t < tasks; ++t) losses[t] = task_losses[t].item();
  if (initial_losses_.empty()) initial_losses_ = losses;

  // |grad_W L_t| for each task; G_t = w_t * that, since w_t is a constant factor on L_t.
  std::vector<double> norms(tasks);
  for (std::size_t t = 0; t < tasks; ++t) {
    double squared = 0;
    for (const Tensor& g : grad({task_losses[t]}, shared_layer_, {.retain_graph = true}))
      for (float v : g.to_vector<float>()) squared += static_cast<double>(v) * v;
    norms[t] = std::sqrt(squared);
  }
  std::vector<double> inverse_rate(tasks);
  for (std::size_t t = 0; t < tasks; ++t) inverse_rate[t] = losses[t] / initial_losses_[t];
  const double mean_rate = std::accumulate(inverse_rate.begin(), inverse_rate.end(), 0.0) / static_cast<double>(tasks);
  double mean_norm = 0;
  for (std::size_t t = 0; t < tasks; ++t) mean_norm += w[t] * norms[t] / static_cast<double>(tasks);

  // L_grad = sum_t |w_t * norm_t - target_t|, differentiated with respect to the weights only.
  std::vector<float> target(tasks), norm_f(tasks);
  for (std::size_t t = 0; t < tasks; ++t) {
    target[t] = static_cast<float>(mean_norm * std::pow(inverse_rate[t] / mean_rate, options_.alpha));
    norm_f[t] = static_cast<float>(norms[t]);
  }
  const std::int64_t n = static_cast<std::int64_t>(tasks);
  const Tensor balance = sum(abs(task_weights_ * tensor(norm_f, {n}) - tensor(target, {n})));
  const Tensor joint = weighted_sum(task_losses, w);
  optimizer_->zero_grad();
  balance.backward();
  optimizer_->step();
  {
    NoGradGuard no_grad;  // renormalise so the weights sum to T (and stay positive)
    float* p = task_weights_.data<float>();
    double total = 0;
    for (std::size_t t = 0; t < tasks; ++t) total += p[t] = std::max(p[t], 1e-4f);
    for (std::size_t t = 0; t < tasks; ++t) p[t] = static_cast<float>(p[t] * static_cast<double>(tasks) / total);
  }
  return joint;
}

}  // namespace ladon::mtl
