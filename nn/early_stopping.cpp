#include "early_stopping.h"

#include <cmath>
#include <limits>

#include "../core/autograd.h"

namespace ladon::nn {

namespace {
constexpr const char* kOp = "EarlyStopping";
const std::string kBest = "best.";

// The "best.<name>" entries of a saved state, without the prefix.
StateDict best_part(const StateDict& state) {
  StateDict out;
  for (const auto& [key, value] : state.items())
    if (key.rfind(kBest, 0) == 0) out.set(key.substr(kBest.size()), value);
  return out;
}
}  // namespace

EarlyStopping::EarlyStopping(Module& model, EarlyStoppingOptions options) : model_(&model), options_(options) {
  LADON_CHECK(options_.patience >= 1, kOp, "patience must be >= 1, got ", options_.patience);
  // Finite: with an infinite min_delta no epoch could ever improve.
  LADON_CHECK(std::isfinite(options_.min_delta) && options_.min_delta >= 0.0, kOp,
              "min_delta must be finite and >= 0, got ", options_.min_delta);
  best_ = options_.mode == MetricMode::min ? std::numeric_limits<double>::infinity()
                                           : -std::numeric_limits<double>::infinity();
}

bool EarlyStopping::step(double metric) {
  const bool better = options_.mode == MetricMode::min ? metric < best_ - options_.min_delta
                                                       : metric > best_ + options_.min_delta;  // false for NaN
  if (better) {
    best_ = metric;
    best_epoch_ = epochs_;
    bad_epochs_ = 0;
    if (options_.keep_best) best_state_ = module_state(*model_, /*copy=*/true);
  } else {
    ++bad_epochs_;
  }
  ++epochs_;
  return should_stop();
}

void EarlyStopping::restore_best() {
  LADON_CHECK(options_.keep_best, kOp, "restore_best needs keep_best = true");
  LADON_CHECK(has_best(), kOp, "restore_best: no epoch has improved yet (", epochs_, " epochs seen)");
  load_module_state(*model_, best_state_, /*strict=*/true);
}

StateDict EarlyStopping::state_dict() const {
  StateDict out;
  out.set("early_stopping", 1);
  out.set("best", best_);
  out.set("best_epoch", best_epoch_);
  out.set("epochs", epochs_);
  out.set("bad_epochs", bad_epochs_);
  for (const auto& [name, value] : best_state_.items()) out.set(kBest + name, value);
  return out;
}

void EarlyStopping::check_state_dict(const StateDict& state) const {
  state.integer("early_stopping", kOp);
  // "No best yet" is +-inf; best only ever takes a metric that improved, so it is never NaN, and a
  // NaN would make every later metric compare as not better.
  LADON_CHECK(!std::isnan(state.number("best", kOp)), kOp, "best is NaN in the state");
  const std::int64_t best_epoch = state.integer("best_epoch", kOp);
  const std::int64_t epochs = state.integer("epochs", kOp);
  const std::int64_t bad = state.integer("bad_epochs", kOp);
  LADON_CHECK(best_epoch >= -1 && best_epoch < epochs && bad >= 0 && bad <= epochs, kOp,
              "inconsistent counters in the state: best_epoch ", best_epoch, ", epochs ", epochs, ", bad_epochs ", bad);
  const StateDict best = best_part(state);
  if (!best.empty()) check_module_state(*model_, best, /*strict=*/true);
}

void EarlyStopping::load_state_dict(const StateDict& state) {
  check_state_dict(state);
  best_ = state.number("best", kOp);
  best_epoch_ = state.integer("best_epoch", kOp);
  epochs_ = state.integer("epochs", kOp);
  bad_epochs_ = state.integer("bad_epochs", kOp);
  NoGradGuard no_grad;
  best_state_ = StateDict();
  const StateDict best = best_part(state);
  for (const auto& [name, value] : best.items()) best_state_.set(name, std::get<Tensor>(value).contiguous().clone());
}

}  // namespace ladon::nn
