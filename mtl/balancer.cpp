#include "balancer.h"

#include <cmath>

#include "../core/ops.h"

namespace ladon::mtl {

Balancer::Balancer(std::string name, std::size_t tasks) : weights_(tasks, 1.0), name_(std::move(name)) {
  LADON_CHECK(tasks > 0, name_.c_str(), "needs at least one task");
}

Tensor Balancer::backward(const std::vector<Tensor>& task_losses, MultiTaskModel& model) {
  const char* op = name_.c_str();
  LADON_CHECK(model.num_tasks() == num_tasks(), op, "built for ", num_tasks(), " tasks, given a model with ",
              model.num_tasks());
  LADON_CHECK(task_losses.size() == num_tasks(), op, task_losses.size(), " task losses for ", num_tasks(), " tasks");
  std::vector<double> values(task_losses.size());
  for (std::size_t t = 0; t < task_losses.size(); ++t) {
    const Tensor& loss = task_losses[t];
    LADON_CHECK(loss.defined() && loss.numel() == 1 && loss.dtype() == Dtype::float32, op, "task ", t,
                " loss has shape ", loss.defined() ? shape_str(loss.shape()) : "undefined", "; expected a scalar");
    values[t] = loss.item();
    LADON_CHECK(std::isfinite(values[t]), op, "task ", t, " ('", model.tasks()[t].name, "') loss is ", values[t]);
  }
  average(values);
  return step(task_losses, values, model);
}

Collective::Columns Collective::average_columns(std::span<float> values, std::int64_t rows) {
  average(values);
  return {0, rows > 0 ? static_cast<std::int64_t>(values.size()) / rows : 0, false};
}

void Collective::gather_columns(std::span<float> values, Columns mine) {
  (void)values;
  (void)mine;
}

Collective::Columns Balancer::average_columns(std::span<float> values, std::int64_t rows) const {
  if (collective_) return collective_->average_columns(values, rows);
  return {0, rows > 0 ? static_cast<std::int64_t>(values.size()) / rows : 0, false};
}

void Balancer::gather_columns(std::span<float> values, Collective::Columns mine) const {
  if (collective_) collective_->gather_columns(values, mine);
}

void Balancer::after_step(const std::vector<Tensor>& task_losses) {
  const char* op = name_.c_str();
  LADON_CHECK(needs_losses_after_step(), op, "after_step() was called, but this balancer does not use the losses "
              "after the step");
  LADON_CHECK(task_losses.size() == num_tasks(), op, task_losses.size(), " task losses after the step for ",
              num_tasks(), " tasks");
  std::vector<double> values(task_losses.size());
  for (std::size_t t = 0; t < task_losses.size(); ++t) {
    const Tensor& loss = task_losses[t];
    LADON_CHECK(loss.defined() && loss.numel() == 1 && loss.dtype() == Dtype::float32, op, "task ", t,
                " loss after the step has shape ", loss.defined() ? shape_str(loss.shape()) : "undefined",
                "; expected a scalar");
    values[t] = loss.item();
    LADON_CHECK(std::isfinite(values[t]), op, "task ", t, " loss after the step is ", values[t]);
  }
  average(values);
  update_after_step(values);
}

void Balancer::average(std::span<float> values) const {
  if (collective_) collective_->average(values);
}

void Balancer::average(std::span<double> values) const {
  if (collective_) collective_->average(values);
}

Tensor Balancer::weighted_sum(const std::vector<Tensor>& losses, const std::vector<double>& weights) {
  Tensor total;
  for (std::size_t t = 0; t < losses.size(); ++t) {
    const Tensor term = losses[t].reshape({}) * weights[t];
    total = total.defined() ? total + term : term;
  }
  return total;
}

double Balancer::weighted_value(const std::vector<double>& values, const std::vector<double>& weights) {
  double total = 0;
  for (std::size_t t = 0; t < values.size(); ++t) total += weights[t] * values[t];
  return total;
}

std::vector<double> Balancer::numbers(const nn::StateDict& state, const std::string& key, std::size_t n,
                                      const char* op) {
  std::vector<double> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = state.number(key + "." + std::to_string(i), op);
  return out;
}

void Balancer::set_numbers(nn::StateDict& state, const std::string& key, const std::vector<double>& values) {
  for (std::size_t i = 0; i < values.size(); ++i) state.set(key + "." + std::to_string(i), values[i]);
}

nn::StateDict Balancer::state_dict() const {
  nn::StateDict state;
  state.set("method", name_);
  state.set("tasks", num_tasks());
  for (std::size_t t = 0; t < num_tasks(); ++t) state.set("weight." + std::to_string(t), weights_[t]);
  save_state(state);
  return state;
}

void Balancer::check_state_dict(const nn::StateDict& state) const {
  const char* op = name_.c_str();
  const std::string& method = state.string("method", op);
  LADON_CHECK(method == name_, op, "the state is of a ", method, " balancer");
  const std::int64_t tasks = state.integer("tasks", op);
  LADON_CHECK(tasks == static_cast<std::int64_t>(num_tasks()), op, "the state is of ", tasks,
              " tasks, the balancer of ", num_tasks());
  for (std::size_t t = 0; t < num_tasks(); ++t) state.number("weight." + std::to_string(t), op);
  check_state(state);
}

void Balancer::load_state_dict(const nn::StateDict& state) {
  check_state_dict(state);
  for (std::size_t t = 0; t < num_tasks(); ++t) weights_[t] = state.number("weight." + std::to_string(t));
  load_state(state);
}

Tensor LossBalancer::step(const std::vector<Tensor>& losses, const std::vector<double>& values,
                          MultiTaskModel& model) {
  decide(values, model, losses);
  weighted_sum(losses, weights_).backward();
  after_backward(values);
  return scalar(static_cast<float>(weighted_value(values, weights_)));
}

}  // namespace ladon::mtl
