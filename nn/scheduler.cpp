#include "scheduler.h"

#include <cmath>
#include <limits>
#include <numbers>

namespace ladon::nn {

namespace {
std::string base_key(std::size_t g) { return "base_lr." + std::to_string(g); }
}  // namespace

// ---- LRScheduler --------------------------------------------------------------------------------

LRScheduler::LRScheduler(Optimizer& optimizer, const char* name) : name_(name), optimizer_(&optimizer) {
  for (std::size_t g = 0; g < optimizer.num_groups(); ++g) base_lrs_.push_back(optimizer.lr(g));
}

LRScheduler::~LRScheduler() = default;

double LRScheduler::lr_at(std::int64_t epoch, double base_lr) const {
  // A negative epoch would index the schedule backwards (StepLR gave gamma^-1 times the base).
  LADON_CHECK(epoch >= 0, name_, "lr_at: epoch must be >= 0, got ", epoch);
  return schedule(epoch, base_lr);
}

void LRScheduler::apply() {
  for (std::size_t g = 0; g < base_lrs_.size(); ++g) optimizer_->set_lr(g, std::max(0.0, lr_at(epoch_, base_lrs_[g])));
}

void LRScheduler::step() {
  ++epoch_;
  apply();
}

StateDict LRScheduler::state_dict() const {
  StateDict out;
  out.set("scheduler", name_);
  out.set("epoch", epoch_);
  out.set("groups", base_lrs_.size());
  for (std::size_t g = 0; g < base_lrs_.size(); ++g) out.set(base_key(g), base_lrs_[g]);
  return out;
}

void LRScheduler::check_state_dict(const StateDict& state) const {
  const std::string kind = state.string("scheduler", name_);
  LADON_CHECK(kind == name_, name_, "the state was saved by ", kind, ", this is ", name_);
  const std::int64_t epoch = state.integer("epoch", name_);
  LADON_CHECK(epoch >= 0, name_, "epoch must be >= 0, got ", epoch, " in the state");
  const std::int64_t groups = state.integer("groups", name_);
  LADON_CHECK(groups == static_cast<std::int64_t>(base_lrs_.size()), name_, "the state has ", groups,
              " parameter groups, the optimizer has ", base_lrs_.size());
  for (std::size_t g = 0; g < base_lrs_.size(); ++g) {
    const double base = state.number(base_key(g), name_);
    LADON_CHECK(base >= 0.0, name_, "base lr of group ", g, " must be >= 0, got ", base, " in the state");
  }
}

void LRScheduler::load_state_dict(const StateDict& state) {
  check_state_dict(state);
  epoch_ = state.integer("epoch", name_);
  for (std::size_t g = 0; g < base_lrs_.size(); ++g) base_lrs_[g] = state.number(base_key(g), name_);
  apply();
}

// ---- Epoch schedules ----------------------------------------------------------------------------

StepLR::StepLR(Optimizer& optimizer, StepLROptions options) : LRScheduler(optimizer, "StepLR"), options_(options) {
  LADON_CHECK(options_.step_size > 0, name_, "step_size must be > 0, got ", options_.step_size);
  LADON_CHECK(options_.gamma >= 0.0, name_, "gamma must be >= 0, got ", options_.gamma);
  apply();
}

double StepLR::schedule(std::int64_t epoch, double base_lr) const {
  return base_lr * std::pow(options_.gamma, static_cast<double>(epoch / options_.step_size));
}

MultiStepLR::MultiStepLR(Optimizer& optimizer, MultiStepLROptions options)
    : LRScheduler(optimizer, "MultiStepLR"), options_(std::move(options)) {
  for (std::size_t k = 0; k < options_.milestones.size(); ++k) {
    LADON_CHECK(options_.milestones[k] >= 0, name_, "milestone ", k, " is negative: ", options_.milestones[k]);
    LADON_CHECK(k == 0 || options_.milestones[k] > options_.milestones[k - 1], name_,
                "milestones must be strictly increasing, got ", options_.milestones[k - 1], " then ",
                options_.milestones[k]);
  }
  LADON_CHECK(options_.gamma >= 0.0, name_, "gamma must be >= 0, got ", options_.gamma);
  apply();
}

double MultiStepLR::schedule(std::int64_t epoch, double base_lr) const {
  int passed = 0;
  for (std::int64_t m : options_.milestones) passed += m <= epoch ? 1 : 0;
  return base_lr * std::pow(options_.gamma, passed);
}

ExponentialLR::ExponentialLR(Optimizer& optimizer, ExponentialLROptions options)
    : LRScheduler(optimizer, "ExponentialLR"), options_(options) {
  LADON_CHECK(options_.gamma >= 0.0, name_, "gamma must be >= 0, got ", options_.gamma);
  apply();
}

double ExponentialLR::schedule(std::int64_t epoch, double base_lr) const {
  return base_lr * std::pow(options_.gamma, static_cast<double>(epoch));
}

WarmupCosineLR::WarmupCosineLR(Optimizer& optimizer, WarmupCosineLROptions options)
    : LRScheduler(optimizer, "WarmupCosineLR"), options_(options) {
  const auto& o = options_;
  LADON_CHECK(o.warmup_steps >= 0, name_, "warmup_steps must be >= 0, got ", o.warmup_steps);
  LADON_CHECK(o.total_steps > o.warmup_steps, name_, "total_steps (", o.total_steps,
              ") must be greater than warmup_steps (", o.warmup_steps, ")");
  LADON_CHECK(o.min_lr >= 0.0, name_, "min_lr must be >= 0, got ", o.min_lr);
  LADON_CHECK(o.warmup_start_factor >= 0.0 && o.warmup_start_factor <= 1.0, name_,
              "warmup_start_factor must be in [0, 1], got ", o.warmup_start_factor);
  apply();
}

double WarmupCosineLR::schedule(std::int64_t epoch, double base_lr) const {
  const auto& o = options_;
  if (epoch < o.warmup_steps) {
    const double f = o.warmup_start_factor;
    return base_lr * (f + (1.0 - f) * static_cast<double>(epoch) / static_cast<double>(o.warmup_steps));
  }
  if (epoch >= o.total_steps) return o.min_lr;
  const double progress =
      static_cast<double>(epoch - o.warmup_steps) / static_cast<double>(o.total_steps - o.warmup_steps);
  return o.min_lr + (base_lr - o.min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

// ---- ReduceLROnPlateau --------------------------------------------------------------------------

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options)
    : optimizer_(&optimizer), options_(options) {
  const char* op = "ReduceLROnPlateau";
  const auto& o = options_;
  LADON_CHECK(o.factor > 0.0 && o.factor < 1.0, op, "factor must be in (0, 1), got ", o.factor);
  LADON_CHECK(o.patience >= 0, op, "patience must be >= 0, got ", o.patience);
  // Finite: an infinite threshold makes no metric an improvement, an infinite eps no reduction big enough.
  LADON_CHECK(std::isfinite(o.threshold) && o.threshold >= 0.0, op, "threshold must be finite and >= 0, got ",
              o.threshold);
  LADON_CHECK(o.cooldown >= 0, op, "cooldown must be >= 0, got ", o.cooldown);
  // Finite: an infinite min_lr would set every group's lr to inf at the first reduction.
  LADON_CHECK(std::isfinite(o.min_lr) && o.min_lr >= 0.0, op, "min_lr must be finite and >= 0, got ", o.min_lr);
  LADON_CHECK(std::isfinite(o.eps) && o.eps >= 0.0, op, "eps must be finite and >= 0, got ", o.eps);
  best_ =
      o.mode == MetricMode::min ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
}

bool ReduceLROnPlateau::is_better(double metric) const {
  const auto& o = options_;
  if (o.mode == MetricMode::min)
    return o.threshold_mode == ThresholdMode::rel ? metric < best_ * (1.0 - o.threshold) : metric < best_ - o.threshold;
  return o.threshold_mode == ThresholdMode::rel ? metric > best_ * (1.0 + o.threshold) : metric > best_ + o.threshold;
}

void ReduceLROnPlateau::step(double metric) {
  ++epoch_;
  if (is_better(metric)) {  // false for NaN
    best_ = metric;
    num_bad_epochs_ = 0;
  } else {
    ++num_bad_epochs_;
  }
  if (cooldown_counter_ > 0) {
    --cooldown_counter_;
    num_bad_epochs_ = 0;
  }
  if (num_bad_epochs_ > options_.patience) {
    for (std::size_t g = 0; g < optimizer_->num_groups(); ++g) {
      const double old_lr = optimizer_->lr(g);
      const double new_lr = std::max(old_lr * options_.factor, options_.min_lr);
      if (old_lr - new_lr > options_.eps) optimizer_->set_lr(g, new_lr);
    }
    cooldown_counter_ = options_.cooldown;
    num_bad_epochs_ = 0;
  }
}

StateDict ReduceLROnPlateau::state_dict() const {
  StateDict out;
  out.set("scheduler", "ReduceLROnPlateau");
  out.set("epoch", epoch_);
  out.set("best", best_);
  out.set("num_bad_epochs", num_bad_epochs_);
  out.set("cooldown_counter", cooldown_counter_);
  return out;
}

void ReduceLROnPlateau::check_state_dict(const StateDict& state) const {
  const char* op = "ReduceLROnPlateau";
  const std::string kind = state.string("scheduler", op);
  LADON_CHECK(kind == "ReduceLROnPlateau", op, "the state was saved by ", kind, ", this is ReduceLROnPlateau");
  LADON_CHECK(state.integer("epoch", op) >= 0, op, "epoch must be >= 0 in the state");
  // "No best yet" is +-inf; best only ever takes a metric that compared better, so it is never
  // NaN, and a NaN would make every later metric compare as not better.
  LADON_CHECK(!std::isnan(state.number("best", op)), op, "best is NaN in the state");
  LADON_CHECK(state.integer("num_bad_epochs", op) >= 0, op, "num_bad_epochs must be >= 0 in the state");
  LADON_CHECK(state.integer("cooldown_counter", op) >= 0, op, "cooldown_counter must be >= 0 in the state");
}

void ReduceLROnPlateau::load_state_dict(const StateDict& state) {
  check_state_dict(state);
  const char* op = "ReduceLROnPlateau";
  epoch_ = state.integer("epoch", op);
  best_ = state.number("best", op);
  num_bad_epochs_ = state.integer("num_bad_epochs", op);
  cooldown_counter_ = state.integer("cooldown_counter", op);
}

}  // namespace ladon::nn
