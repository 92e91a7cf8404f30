#include "loss_weighting.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "../core/autograd.h"
#include "../core/ops.h"

namespace ladon::mtl {

namespace {

std::vector<double> softmax(const std::vector<double>& z, double scale) {
  const double top = *std::max_element(z.begin(), z.end());
  std::vector<double> e(z.size());
  double total = 0;
  for (std::size_t i = 0; i < z.size(); ++i) total += e[i] = std::exp(z[i] - top);
  for (double& v : e) v = v / total * scale;
  return e;
}

}  // namespace

StaticWeighting::StaticWeighting(std::vector<double> alphas) : LossBalancer("StaticWeighting", alphas.size()) {
  for (double a : alphas)
    LADON_CHECK(a >= 0.0 && std::isfinite(a), "StaticWeighting", "task weights must be non-negative, got ", a);
  weights_ = std::move(alphas);
}

UncertaintyWeighting::UncertaintyWeighting(const std::vector<TaskSpec>& tasks, UncertaintyOptions options)
    : LossBalancer("UncertaintyWeighting", tasks.size()), log_vars_(tasks.size(), 0.0f, {.lr = options.lr}) {
  for (const TaskSpec& t : tasks) factors_.push_back(t.kind == TaskKind::regression ? 0.5 : 1.0);
}

void UncertaintyWeighting::decide(const std::vector<double>&, MultiTaskModel&, const std::vector<Tensor>&) {
  const std::vector<double> s = log_vars_.values();
  for (std::size_t t = 0; t < factors_.size(); ++t) weights_[t] = factors_[t] * std::exp(-s[t]);
}

void UncertaintyWeighting::after_backward(const std::vector<double>& values) {
  // d/ds_t [f_t exp(-s_t) L_t + s_t / 2] = 1/2 - w_t L_t, from the (rank-averaged) loss values.
  std::vector<double> g(factors_.size());
  for (std::size_t t = 0; t < g.size(); ++t) g[t] = 0.5 - weights_[t] * values[t];
  log_vars_.step(g);
}

void UncertaintyWeighting::save_state(nn::StateDict& state) const { log_vars_.save(state, "log_vars"); }

void UncertaintyWeighting::check_state(const nn::StateDict& state) const {
  log_vars_.check(state, "log_vars", "UncertaintyWeighting");
}

void UncertaintyWeighting::load_state(const nn::StateDict& state) { log_vars_.load(state, "log_vars"); }

DynamicWeightAverage::DynamicWeightAverage(std::size_t tasks, DWAOptions options)
    : LossBalancer("DynamicWeightAverage", tasks), options_(options), epoch_sums_(tasks, 0.0) {
  LADON_CHECK(options.steps_per_epoch > 0, "DynamicWeightAverage",
              "needs steps_per_epoch > 0 (the batches in an epoch), got ", options.steps_per_epoch);
  LADON_CHECK(options.temperature > 0, "DynamicWeightAverage", "temperature must be positive, got ",
              options.temperature);
}

void DynamicWeightAverage::decide(const std::vector<double>&, MultiTaskModel&, const std::vector<Tensor>&) {
  if (step_in_epoch_ != 0 || epochs_ < 2) return;  // the weights change only when an epoch begins
  std::vector<double> rate(num_tasks());
  for (std::size_t k = 0; k < rate.size(); ++k)
    rate[k] = (previous_[k] > 0 ? last_[k] / previous_[k] : 1.0) / options_.temperature;
  weights_ = softmax(rate, static_cast<double>(rate.size()));
}

void DynamicWeightAverage::after_backward(const std::vector<double>& values) {
  for (std::size_t k = 0; k < values.size(); ++k) epoch_sums_[k] += values[k];
  if (++step_in_epoch_ < options_.steps_per_epoch) return;
  previous_ = std::move(last_);
  last_.resize(num_tasks());
  for (std::size_t k = 0; k < last_.size(); ++k)
    last_[k] = epoch_sums_[k] / static_cast<double>(options_.steps_per_epoch);
  std::fill(epoch_sums_.begin(), epoch_sums_.end(), 0.0);
  step_in_epoch_ = 0;
  ++epochs_;
}

void DynamicWeightAverage::save_state(nn::StateDict& state) const {
  state.set("steps_per_epoch", options_.steps_per_epoch);
  state.set("step_in_epoch", step_in_epoch_);
  state.set("epochs", epochs_);
  set_numbers(state, "epoch_sums", epoch_sums_);
  if (epochs_ >= 1) set_numbers(state, "last", last_);
  if (epochs_ >= 2) set_numbers(state, "previous", previous_);
}

void DynamicWeightAverage::check_state(const nn::StateDict& state) const {
  const char* op = "DynamicWeightAverage";
  const std::int64_t steps = state.integer("steps_per_epoch", op);
  LADON_CHECK(steps == options_.steps_per_epoch, op, "the state counts ", steps, " steps per epoch, the balancer ",
              options_.steps_per_epoch);
  const std::int64_t at = state.integer("step_in_epoch", op), epochs = state.integer("epochs", op);
  LADON_CHECK(at >= 0 && at < steps && epochs >= 0, op, "the state is at step ", at, " of epoch ", epochs);
  numbers(state, "epoch_sums", num_tasks(), op);
  if (epochs >= 1) numbers(state, "last", num_tasks(), op);
  if (epochs >= 2) numbers(state, "previous", num_tasks(), op);
}

void DynamicWeightAverage::load_state(const nn::StateDict& state) {
  step_in_epoch_ = state.integer("step_in_epoch");
  epochs_ = state.integer("epochs");
  epoch_sums_ = numbers(state, "epoch_sums", num_tasks(), "DynamicWeightAverage");
  last_ = epochs_ >= 1 ? numbers(state, "last", num_tasks(), "DynamicWeightAverage") : std::vector<double>();
  previous_ = epochs_ >= 2 ? numbers(state, "previous", num_tasks(), "DynamicWeightAverage") : std::vector<double>();
}

RandomLossWeighting::RandomLossWeighting(std::size_t tasks, std::uint64_t seed)
    : LossBalancer("RandomLossWeighting", tasks), gen_(seed) {}

void RandomLossWeighting::decide(const std::vector<double>&, MultiTaskModel&, const std::vector<Tensor>&) {
  std::vector<double> z(num_tasks());
  for (double& v : z) v = gen_.normal();
  weights_ = softmax(z, 1.0);
}

void RandomLossWeighting::save_state(nn::StateDict& state) const { nn::save_generator(state, "generator", gen_); }

void RandomLossWeighting::check_state(const nn::StateDict& state) const {
  nn::generator_state(state, "generator", "RandomLossWeighting");
}

void RandomLossWeighting::load_state(const nn::StateDict& state) {
  gen_.set_state(nn::generator_state(state, "generator", "RandomLossWeighting"));
}

GradNorm::GradNorm(std::size_t tasks, std::vector<Tensor> shared_layer, GradNormOptions options)
    : LossBalancer("GradNorm", tasks),
      options_(options),
      shared_layer_(std::move(shared_layer)),
      task_weights_(tasks, 1.0f, {.lr = options.lr}) {
  LADON_CHECK(!shared_layer_.empty(), "GradNorm", "needs the shared layer's parameters (W)");
  for (const Tensor& p : shared_layer_)
    LADON_CHECK(p.defined() && p.requires_grad(), "GradNorm", "every tensor of the shared layer must be a parameter");
}

void GradNorm::decide(const std::vector<double>& values, MultiTaskModel&, const std::vector<Tensor>& losses) {
  const std::size_t tasks = num_tasks();
  weights_ = task_weights_.values();
  if (initial_losses_.empty()) {
    for (std::size_t t = 0; t < tasks; ++t)
      LADON_CHECK(values[t] > 0, "GradNorm", "task ", t, "'s first loss is ", values[t],
                  ": the training rates L_t / L_t(0) need a positive start");
    initial_losses_ = values;
  }
  // |grad_W L_t| for each task (G_t = w_t * that, since w_t is a constant factor on L_t), from the
  // rank-averaged gradient when data-parallel.
  norms_.assign(tasks, 0.0);
  std::vector<float> flat;
  for (std::size_t t = 0; t < tasks; ++t) {
    flat.clear();
    std::vector<Tensor> grads;
    try {
      grads = grad({losses[t]}, shared_layer_, {.retain_graph = true, .allow_unused = false});
    } catch (const Error& e) {
      ::ladon::detail::fail("GradNorm", "task ", t, "'s loss does not reach the shared layer W (", e.what(), ")");
    }
    for (const Tensor& g : grads) {
      const Tensor c = g.contiguous();
      flat.insert(flat.end(), c.data<float>(), c.data<float>() + c.numel());
    }
    average(flat);
    double squared = 0;
    for (float v : flat) squared += static_cast<double>(v) * v;
    norms_[t] = std::sqrt(squared);
  }
}

void GradNorm::after_backward(const std::vector<double>& values) {
  const std::size_t tasks = num_tasks();
  std::vector<double> inverse_rate(tasks);
  for (std::size_t t = 0; t < tasks; ++t) inverse_rate[t] = values[t] / initial_losses_[t];
  const double mean_rate = std::accumulate(inverse_rate.begin(), inverse_rate.end(), 0.0) / static_cast<double>(tasks);
  double mean_norm = 0;
  for (std::size_t t = 0; t < tasks; ++t) mean_norm += weights_[t] * norms_[t] / static_cast<double>(tasks);

  // L_grad = sum_t |w_t * norm_t - target_t|, differentiated with respect to the weights only:
  // d/dw_t = sign(w_t norm_t - target_t) * norm_t.
  std::vector<double> g(tasks);
  for (std::size_t t = 0; t < tasks; ++t) {
    const double target = mean_norm * std::pow(inverse_rate[t] / mean_rate, options_.alpha);
    const double d = weights_[t] * norms_[t] - target;
    g[t] = ((d > 0) - (d < 0)) * norms_[t];
  }
  task_weights_.step(g);
  NoGradGuard no_grad;  // renormalise so the weights sum to T (and stay positive)
  float* p = task_weights_.data();
  double total = 0;
  for (std::size_t t = 0; t < tasks; ++t) total += p[t] = std::max(p[t], 1e-4f);
  for (std::size_t t = 0; t < tasks; ++t) p[t] = static_cast<float>(p[t] * static_cast<double>(tasks) / total);
}

void GradNorm::save_state(nn::StateDict& state) const {
  task_weights_.save(state, "task_weights");
  state.set("started", static_cast<std::int64_t>(!initial_losses_.empty()));
  if (!initial_losses_.empty()) set_numbers(state, "initial_losses", initial_losses_);
}

void GradNorm::check_state(const nn::StateDict& state) const {
  task_weights_.check(state, "task_weights", "GradNorm");
  if (state.integer("started", "GradNorm")) numbers(state, "initial_losses", num_tasks(), "GradNorm");
}

void GradNorm::load_state(const nn::StateDict& state) {
  task_weights_.load(state, "task_weights");
  initial_losses_ = state.integer("started") ? numbers(state, "initial_losses", num_tasks(), "GradNorm")
                                             : std::vector<double>();
}

GeometricLossStrategy::GeometricLossStrategy(std::size_t tasks) : LossBalancer("GeometricLossStrategy", tasks) {}

void GeometricLossStrategy::decide(const std::vector<double>& values, MultiTaskModel&, const std::vector<Tensor>&) {
  const double tasks = static_cast<double>(num_tasks());
  double mean_log = 0;  // GLS = exp(mean log L): no under- or overflow of the product
  for (double v : values) mean_log += std::log(std::max(v, 1e-12)) / tasks;
  const double gls = std::exp(mean_log);
  for (std::size_t t = 0; t < values.size(); ++t) weights_[t] = gls / (tasks * std::max(values[t], 1e-12));
}

IMTLL::IMTLL(std::size_t tasks, IMTLLOptions options)
    : LossBalancer("IMTLL", tasks), scales_(tasks, 0.0f, {.lr = options.lr}) {}

void IMTLL::decide(const std::vector<double>&, MultiTaskModel&, const std::vector<Tensor>&) {
  const std::vector<double> s = scales_.values();
  for (std::size_t t = 0; t < s.size(); ++t) weights_[t] = std::exp(s[t]);
}

void IMTLL::after_backward(const std::vector<double>& values) {
  std::vector<double> g(num_tasks());  // d/ds_t (e^s L - s) = e^s L - 1
  for (std::size_t t = 0; t < g.size(); ++t) g[t] = weights_[t] * values[t] - 1.0;
  scales_.step(g);
}

void IMTLL::save_state(nn::StateDict& state) const { scales_.save(state, "scales"); }

void IMTLL::check_state(const nn::StateDict& state) const { scales_.check(state, "scales", "IMTLL"); }

void IMTLL::load_state(const nn::StateDict& state) { scales_.load(state, "scales"); }

STCH::STCH(std::size_t tasks, STCHOptions options)
    : LossBalancer("STCH", tasks), options_(options), nadir_sums_(tasks, 0.0) {
  LADON_CHECK(options.steps_per_epoch > 0, "STCH", "needs steps_per_epoch > 0 (the batches in an epoch), got ",
              options.steps_per_epoch);
  LADON_CHECK(options.warmup_epochs >= 1, "STCH", "needs warmup_epochs >= 1 to measure the nadir, got ",
              options.warmup_epochs);
  LADON_CHECK(options.mu > 0 && std::isfinite(options.mu), "STCH", "mu must be positive, got ", options.mu);
}

void STCH::decide(const std::vector<double>& values, MultiTaskModel&, const std::vector<Tensor>&) {
  const std::size_t tasks = num_tasks();
  if (step_ == options_.warmup_epochs * options_.steps_per_epoch) {  // warm-up over: fix the nadir
    nadir_.resize(tasks);
    for (std::size_t t = 0; t < tasks; ++t)
      nadir_[t] = nadir_sums_[t] / static_cast<double>(options_.steps_per_epoch);
  }
  std::vector<double> loss(tasks);
  for (std::size_t t = 0; t < tasks; ++t) loss[t] = values[t] + 1e-20;
  if (nadir_.empty()) {
    for (std::size_t t = 0; t < tasks; ++t) weights_[t] = 1.0 / loss[t];
    return;
  }
  std::vector<double> f(tasks);
  for (std::size_t t = 0; t < tasks; ++t) f[t] = std::log(loss[t] / nadir_[t] + 1e-20) / options_.mu;
  const std::vector<double> p = softmax(f, static_cast<double>(tasks));  // T softmax(f / mu)
  for (std::size_t t = 0; t < tasks; ++t) weights_[t] = p[t] / loss[t];
}

void STCH::after_backward(const std::vector<double>& values) {
  const std::int64_t last_warmup = options_.warmup_epochs - 1;
  if (step_ / options_.steps_per_epoch == last_warmup)
    for (std::size_t t = 0; t < values.size(); ++t) nadir_sums_[t] += values[t];
  ++step_;
}

void STCH::save_state(nn::StateDict& state) const {
  state.set("steps_per_epoch", options_.steps_per_epoch);
  state.set("step", step_);
  set_numbers(state, "nadir_sums", nadir_sums_);
  state.set("has_nadir", static_cast<std::int64_t>(!nadir_.empty()));
  if (!nadir_.empty()) set_numbers(state, "nadir", nadir_);
}

void STCH::check_state(const nn::StateDict& state) const {
  const std::int64_t steps = state.integer("steps_per_epoch", "STCH");
  LADON_CHECK(steps == options_.steps_per_epoch, "STCH", "the state counts ", steps, " steps per epoch, the balancer ",
              options_.steps_per_epoch);
  LADON_CHECK(state.integer("step", "STCH") >= 0, "STCH", "the state has a negative step");
  numbers(state, "nadir_sums", num_tasks(), "STCH");
  if (state.integer("has_nadir", "STCH")) numbers(state, "nadir", num_tasks(), "STCH");
}

void STCH::load_state(const nn::StateDict& state) {
  step_ = state.integer("step");
  nadir_sums_ = numbers(state, "nadir_sums", num_tasks(), "STCH");
  nadir_ = state.integer("has_nadir") ? numbers(state, "nadir", num_tasks(), "STCH") : std::vector<double>();
}

FAMO::FAMO(std::size_t tasks, FAMOOptions options)
    : LossBalancer("FAMO", tasks),
      min_losses_(options.min_losses.empty() ? std::vector<double>(tasks, 0.0) : options.min_losses),
      update_(options.update),
      logits_(tasks, 0.0f, {.lr = options.lr, .weight_decay = options.gamma}) {
  LADON_CHECK(options.lr > 0 && std::isfinite(options.lr), "FAMO", "lr must be positive, got ", options.lr);
  LADON_CHECK(options.gamma >= 0 && std::isfinite(options.gamma), "FAMO", "gamma must be non-negative, got ",
              options.gamma);
  LADON_CHECK(min_losses_.size() == tasks, "FAMO", options.min_losses.size(), " min_losses for ", tasks, " tasks");
  for (double m : min_losses_) LADON_CHECK(std::isfinite(m), "FAMO", "min_losses must be finite, got ", m);
}

std::vector<double> FAMO::log_gaps(const std::vector<double>& values, const char* when) const {
  std::vector<double> out(values.size());
  for (std::size_t t = 0; t < values.size(); ++t) {
    const double gap = values[t] - min_losses_[t] + 1e-8;
    LADON_CHECK(gap > 0, "FAMO", "task ", t, " loss", when, " is ", values[t], ", not above its lower bound ",
                min_losses_[t], " (set min_losses to a true lower bound)");
    out[t] = std::log(gap);
  }
  return out;
}

void FAMO::decide(const std::vector<double>& values, MultiTaskModel&, const std::vector<Tensor>&) {
  std::vector<double> logs = log_gaps(values, "");
  if (update_ == FAMOUpdate::next_batch) {
    if (!before_.empty()) step_logits(logs);  // this batch's losses are the last step's after-losses
  } else {
    LADON_CHECK(before_.empty(), "FAMO",
                "backward() was called again without after_step(): FAMO needs the losses "
                "of each batch after its optimizer step (the Trainer passes them; see Balancer::after_step)");
  }
  softmax_ = softmax(logits_.values(), 1.0);
  double c = 0;  // sum_t z_t / D_t, held constant
  for (std::size_t t = 0; t < values.size(); ++t) c += softmax_[t] / std::exp(logs[t]);
  for (std::size_t t = 0; t < values.size(); ++t) weights_[t] = softmax_[t] / (c * std::exp(logs[t]));
  before_ = std::move(logs);
}

void FAMO::step_logits(const std::vector<double>& after) {
  const std::size_t tasks = num_tasks();
  std::vector<double> delta(tasks);
  double mean = 0;  // z . delta
  for (std::size_t t = 0; t < tasks; ++t) mean += softmax_[t] * (delta[t] = before_[t] - after[t]);
  std::vector<double> g(tasks);  // the softmax Jacobian's transpose times delta
  for (std::size_t t = 0; t < tasks; ++t) g[t] = softmax_[t] * (delta[t] - mean);
  logits_.step(g);
}

void FAMO::update_after_step(const std::vector<double>& values) {
  LADON_CHECK(!before_.empty(), "FAMO", "after_step() was called without a backward() before it");
  step_logits(log_gaps(values, " after the step"));
  before_.clear();
}

// next_batch carries the last backward's log D_t (and its z, which follows from the logits it was
// taken with: those are saved before the update they will get) to the next backward.
void FAMO::save_state(nn::StateDict& state) const {
  logits_.save(state, "logits");
  if (update_ == FAMOUpdate::next_batch) {
    state.set("has_previous", static_cast<std::int64_t>(!before_.empty()));
    if (!before_.empty()) set_numbers(state, "previous_log_gaps", before_);
  }
}

void FAMO::check_state(const nn::StateDict& state) const {
  logits_.check(state, "logits", "FAMO");
  const bool saved_next = state.contains("has_previous");
  LADON_CHECK(saved_next == (update_ == FAMOUpdate::next_batch), "FAMO", "the state is of a ",
              saved_next ? "next_batch" : "same_batch", " FAMO, the balancer updates from the ",
              update_ == FAMOUpdate::next_batch ? "next batch" : "same batch");
  if (saved_next && state.integer("has_previous", "FAMO")) numbers(state, "previous_log_gaps", num_tasks(), "FAMO");
}

void FAMO::load_state(const nn::StateDict& state) {
  logits_.load(state, "logits");
  before_.clear();
  if (update_ == FAMOUpdate::next_batch && state.integer("has_previous")) {
    before_ = numbers(state, "previous_log_gaps", num_tasks(), "FAMO");
    softmax_ = softmax(logits_.values(), 1.0);
  }
}

}  // namespace ladon::mtl
