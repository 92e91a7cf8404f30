// Early stopping on a monitored metric, keeping a copy of the best weights:
//
//   nn::EarlyStopping stopper(model, {.mode = nn::MetricMode::max, .patience = 5});
//   for (int epoch = 0; ...; ++epoch) {
//     train_one_epoch();
//     if (stopper.step(validation_accuracy())) break;   // true: stop now
//   }
//   stopper.restore_best();   // the weights of the best epoch, copied back into the model
//
// An epoch improves when the metric beats the best so far by more than min_delta (min: metric <
// best - min_delta; max: metric > best + min_delta); a NaN never improves. step() returns true
// once `patience` epochs in a row have not improved. Keeps a reference to the model, which must
// outlive it.
#pragma once

#include "layer_fence.h"

#include <cstdint>

#include "module.h"
#include "scheduler.h"
#include "state.h"

namespace ladon::nn {

struct EarlyStoppingOptions {
  MetricMode mode = MetricMode::min;
  std::int64_t patience = 10;  // >= 1
  double min_delta = 0;        // >= 0
  bool keep_best = true;       // copy the model's state at every improvement (for restore_best)
};

class EarlyStopping : public Stateful {
 public:
  explicit EarlyStopping(Module& model, EarlyStoppingOptions options = {});
  EarlyStopping(const EarlyStopping&) = delete;
  EarlyStopping& operator=(const EarlyStopping&) = delete;

  bool step(double metric);  // records one epoch's metric; true when training should stop
  bool should_stop() const { return bad_epochs_ >= options_.patience; }
  bool has_best() const { return best_epoch_ >= 0; }
  double best() const { return best_; }
  std::int64_t best_epoch() const { return best_epoch_; }  // 0-based; -1 before any improvement
  std::int64_t epochs() const { return epochs_; }          // how many metrics step() has seen
  std::int64_t bad_epochs() const { return bad_epochs_; }  // since the last improvement
  const StateDict& best_state() const { return best_state_; }
  // Copies the best epoch's weights back into the model (throws when there is none, or when
  // keep_best is off).
  void restore_best();

  // Counters and the best value, plus the best weights under "best.<name>".
  StateDict state_dict() const override;
  void check_state_dict(const StateDict& state) const override;
  void load_state_dict(const StateDict& state) override;

 private:
  Module* model_;
  EarlyStoppingOptions options_;
  double best_;
  std::int64_t best_epoch_ = -1;
  std::int64_t epochs_ = 0;
  std::int64_t bad_epochs_ = 0;
  StateDict best_state_;
};

}  // namespace ladon::nn
