// Learning-rate schedulers. Each drives an Optimizer through lr(group) / set_lr(group, lr), per
// parameter group: a group's schedule starts from the lr it had when the scheduler was made (its
// base lr). Epoch-based schedulers are closed-form in the epoch count, set the lr for epoch 0 when
// constructed, and advance with step() once per epoch (or per iteration, if that is the unit
// chosen):
//
//   nn::Adam opt(model.parameters(), {.lr = 1e-3});
//   nn::StepLR sched(opt, {.step_size = 10, .gamma = 0.5});
//   for (int epoch = 0; epoch < 100; ++epoch) { train_one_epoch(); sched.step(); }
//
// ReduceLROnPlateau instead reacts to a monitored metric: sched.step(val_loss).
// A scheduler keeps a reference to its optimizer, which must outlive it. State (epoch, base lrs,
// plateau counters) saves and loads like an optimizer's.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <vector>

#include "optim.h"
#include "state.h"

namespace ladon::nn {

class LRScheduler : public Stateful {
 public:
  LRScheduler(Optimizer& optimizer, const char* name);
  ~LRScheduler() override;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  void step();  // advances one epoch and sets every group's lr for it
  std::int64_t epoch() const { return epoch_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  // The lr this schedule gives a group with base lr `base_lr` at `epoch`; throws for epoch < 0.
  double lr_at(std::int64_t epoch, double base_lr) const;
  const char* name() const { return name_; }

  // "scheduler" (the kind), "epoch", "groups", "base_lr.<g>". Loading sets the optimizer's lr for
  // the loaded epoch.
  StateDict state_dict() const override;
  void check_state_dict(const StateDict& state) const override;
  void load_state_dict(const StateDict& state) override;

 protected:
  void apply();  // sets each group's lr to lr_at(epoch, base); derived constructors call it last
  // The schedule itself, for an epoch already checked to be >= 0.
  virtual double schedule(std::int64_t epoch, double base_lr) const = 0;
  const char* name_;

 private:
  Optimizer* optimizer_;
  std::vector<double> base_lrs_;
  std::int64_t epoch_ = 0;
};

struct StepLROptions {
  std::int64_t step_size = 1;  // epochs per decay, > 0
  double gamma = 0.1;
};
// lr = base * gamma^floor(epoch / step_size).
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, StepLROptions options);
  double schedule(std::int64_t epoch, double base_lr) const override;

 private:
  StepLROptions options_;
};

struct MultiStepLROptions {
  std::vector<std::int64_t> milestones;  // epochs, strictly increasing
  double gamma = 0.1;
};
// lr = base * gamma^(number of milestones <= epoch).
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, MultiStepLROptions options);
  double schedule(std::int64_t epoch, double base_lr) const override;

 private:
  MultiStepLROptions options_;
};

struct ExponentialLROptions {
  double gamma = 0.9;
};
// lr = base * gamma^epoch.
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, ExponentialLROptions options);
  double schedule(std::int64_t epoch, double base_lr) const override;

 private:
  ExponentialLROptions options_;
};

struct WarmupCosineLROptions {
  std::int64_t warmup_steps = 0;   // linear warm-up length, >= 0
  std::int64_t total_steps = 0;    // warm-up plus cosine, > warmup_steps
  double min_lr = 0;               // the floor the cosine reaches at total_steps
  double warmup_start_factor = 0;  // lr at epoch 0 = base * this, in [0, 1]
};
// Linear warm-up, then cosine annealing:
//   epoch < W:        base * (f + (1 - f) epoch / W)
//   W <= epoch <= T:  min_lr + (base - min_lr) (1 + cos(pi (epoch - W) / (T - W))) / 2
//   epoch > T:        min_lr
// With warmup_steps = 0 this is PyTorch's CosineAnnealingLR (closed form, T_max = T, eta_min).
class WarmupCosineLR : public LRScheduler {
 public:
  WarmupCosineLR(Optimizer& optimizer, WarmupCosineLROptions options);
  double schedule(std::int64_t epoch, double base_lr) const override;

 private:
  WarmupCosineLROptions options_;
};

enum class MetricMode { min, max };  // whether a smaller or a larger metric is better
enum class ThresholdMode { rel, abs };

struct ReduceLROnPlateauOptions {
  MetricMode mode = MetricMode::min;
  double factor = 0.1;         // new lr = old lr * factor, in (0, 1)
  std::int64_t patience = 10;  // epochs without improvement tolerated before reducing
  double threshold = 1e-4;     // how much better counts as an improvement
  ThresholdMode threshold_mode = ThresholdMode::rel;
  std::int64_t cooldown = 0;  // epochs after a reduction during which bad epochs are not counted
  double min_lr = 0;          // no group's lr goes below this
  double eps = 1e-8;          // a reduction smaller than this is skipped
};

// PyTorch's ReduceLROnPlateau. step(metric): an epoch improves when the metric beats the best so
// far by the threshold (rel min: metric < best (1 - threshold); abs min: metric < best -
// threshold; max mirrors it); otherwise it counts as bad. During cooldown bad epochs are not
// counted. When more than `patience` bad epochs accumulate, each group's lr becomes
// max(lr * factor, min_lr), the count resets and the cooldown starts. A NaN metric is never an
// improvement.
class ReduceLROnPlateau : public Stateful {
 public:
  ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options = {});
  ReduceLROnPlateau(const ReduceLROnPlateau&) = delete;
  ReduceLROnPlateau& operator=(const ReduceLROnPlateau&) = delete;

  void step(double metric);
  double best() const { return best_; }
  std::int64_t num_bad_epochs() const { return num_bad_epochs_; }
  std::int64_t cooldown_counter() const { return cooldown_counter_; }
  std::int64_t epoch() const { return epoch_; }

  // "scheduler", "epoch", "best", "num_bad_epochs", "cooldown_counter".
  StateDict state_dict() const override;
  void check_state_dict(const StateDict& state) const override;
  void load_state_dict(const StateDict& state) override;

 private:
  bool is_better(double metric) const;
  Optimizer* optimizer_;
  ReduceLROnPlateauOptions options_;
  double best_;
  std::int64_t num_bad_epochs_ = 0;
  std::int64_t cooldown_counter_ = 0;
  std::int64_t epoch_ = 0;
};

}  // namespace ladon::nn
