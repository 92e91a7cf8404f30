// One interface for every task balancer. A training step calls it the same way whatever the method:
//
//   auto losses = ...;                        // one scalar per task, still on the graph
//   opt.zero_grad();
//   balancer.backward(losses, model);         // sets .grad() of every parameter of the model
//   opt.step();
//
// Loss-level methods (loss_weighting.h) weight the losses and run one backward; gradient-level
// methods (gradient_methods.h) combine the task gradients of the shared parameters from their
// Gramian. A balancer with learnable parameters (UncertaintyWeighting, GradNorm's weights) owns and
// steps them itself, so no optimizer can miss them; every balancer's state (weights, histories,
// random streams, its own optimizer) round-trips through state_dict(), which a checkpoint saves
// (nn::SaveOptions::extra). Formulas: ../shared/reference/mtl-methods.md.
#pragma once

#include "layer_fence.h"

#include <span>
#include <string>
#include <vector>

#include "../nn/state.h"
#include "model.h"

namespace ladon::mtl {

// What a balancer needs from the other processes when training is data-parallel (dist/ implements
// it over MPI): averages in place, across every rank, called in the same order on every rank.
class Collective {
 public:
  virtual ~Collective() = default;
  virtual void average(std::span<double> values) = 0;
  virtual void average(std::span<float> values) = 0;
  // How many ranks take part. MGDA-UB needs it: each rank's representation holds other samples,
  // so the global Gramian is the sum of the ranks' Gramians, not the Gramian of averaged rows.
  virtual int ranks() const = 0;

  // The reduce-scatter variant of the gradient methods. average_columns averages `values`, `rows`
  // rows of equal length n (row-major), across the ranks, but need leave the result only in this
  // rank's block of columns [begin, end); sharded says the blocks are split across ranks (their
  // Gramians must then be summed). gather_columns fills every rank's block of a vector of n
  // values from that block's rank. The defaults average everything and shard nothing.
  struct Columns {
    std::int64_t begin = 0, end = 0;
    bool sharded = false;
  };
  virtual Columns average_columns(std::span<float> values, std::int64_t rows);
  virtual void gather_columns(std::span<float> values, Columns mine);
};

class Balancer : public nn::Stateful {
 public:
  // Accumulates into .grad() of every parameter of `model` the gradient of the balanced objective
  // (task-specific parameters: their own task's share; shared ones: the method's combination), and
  // returns the joint loss sum_t w_t L_t (detached) for logging. Throws unless there is one scalar
  // loss per task the balancer was built for.
  Tensor backward(const std::vector<Tensor>& task_losses, MultiTaskModel& model);

  // FAMO learns from what the optimizer step did to the losses of the batch it was computed on: a
  // balancer for which needs_losses_after_step() is true must be given, after every
  // optimizer.step(), the task losses of the same batch recomputed (no graph needed) by
  // after_step(). train::Trainer does that (one extra forward per step, in train mode as the
  // references do); a hand-written loop does it so:
  //
  //   opt.step();
  //   if (balancer.needs_losses_after_step()) {
  //     NoGradGuard no_grad;
  //     balancer.after_step(losses_of(model(batch.x)));
  //   }
  //
  // after_step checks the losses as backward does and averages them over the ranks; calling it on
  // any other balancer is an error.
  virtual bool needs_losses_after_step() const { return false; }
  void after_step(const std::vector<Tensor>& task_losses);

  // The weight on each task's loss (or gradient) the last backward applied.
  const std::vector<double>& weights() const { return weights_; }
  std::size_t num_tasks() const { return weights_.size(); }
  const std::string& name() const { return name_; }

  // Data-parallel training: with a collective, the loss values and the task gradients a method
  // decides from are averaged over the ranks first, so every rank applies the same weights (and
  // gradient methods leave the same combined shared gradient on every rank). The gradients of an
  // ordinary backward stay local: averaging them is the data-parallel wrapper's job.
  void set_collective(Collective* collective) { collective_ = collective; }

  nn::StateDict state_dict() const final;
  void check_state_dict(const nn::StateDict& state) const final;
  void load_state_dict(const nn::StateDict& state) final;

 protected:
  Balancer(std::string name, std::size_t tasks);
  // One step, after the losses are checked: `values` are the loss values (averaged over ranks when
  // a collective is set). Sets weights_ and the gradients; returns the joint loss.
  virtual Tensor step(const std::vector<Tensor>& losses, const std::vector<double>& values,
                      MultiTaskModel& model) = 0;
  // The method's state beyond the weights, under keys of its own.
  // after_step's update from the checked (and rank-averaged) loss values after the step.
  virtual void update_after_step(const std::vector<double>& values) { (void)values; }
  virtual void save_state(nn::StateDict& state) const { (void)state; }
  virtual void check_state(const nn::StateDict& state) const { (void)state; }
  virtual void load_state(const nn::StateDict& state) { (void)state; }

  void average(std::span<float> values) const;
  void average(std::span<double> values) const;
  Collective::Columns average_columns(std::span<float> values, std::int64_t rows) const;
  void gather_columns(std::span<float> values, Collective::Columns mine) const;
  int ranks() const { return collective_ ? collective_->ranks() : 1; }
  // sum_t w_t L_t on the graph, and its value.
  static Tensor weighted_sum(const std::vector<Tensor>& losses, const std::vector<double>& weights);
  static double weighted_value(const std::vector<double>& values, const std::vector<double>& weights);
  // n numbers under key.0 .. key.(n-1) of a state, checked, and back.
  static std::vector<double> numbers(const nn::StateDict& state, const std::string& key, std::size_t n, const char* op);
  static void set_numbers(nn::StateDict& state, const std::string& key, const std::vector<double>& values);

  std::vector<double> weights_;

 private:
  std::string name_;
  Collective* collective_ = nullptr;
};

// Balancers whose objective is sum_t w_t L_t for weights decided before the backward: one
// ordinary backward of the weighted sum.
class LossBalancer : public Balancer {
 protected:
  using Balancer::Balancer;
  // Sets weights_ from the loss values (and the method's history).
  virtual void decide(const std::vector<double>& values, MultiTaskModel& model, const std::vector<Tensor>& losses) = 0;
  // After the backward (a method that trains its own parameters steps them here).
  virtual void after_backward(const std::vector<double>& values) { (void)values; }

 private:
  Tensor step(const std::vector<Tensor>& losses, const std::vector<double>& values, MultiTaskModel& model) final;
};

}  // namespace ladon::mtl
