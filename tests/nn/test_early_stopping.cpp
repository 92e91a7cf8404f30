// EarlyStopping: patience, min_delta, modes, best-weights restore, state.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "ladon.h"
#include "nn/early_stopping.h"
#include "nn/linear.h"

using namespace ladon;

namespace {

// Sets every parameter of the model to `value`, standing in for an epoch of training.
void fill(nn::Module& m, float value) {
  NoGradGuard no_grad;
  for (Tensor& p : m.parameters()) detail::copy_into(p, full(p.shape(), value));
}

float first(nn::Linear& m) { return m.weight.to_vector<float>()[0]; }

}  // namespace

TEST_CASE("EarlyStopping in min mode: patience counts epochs without an improvement") {
  nn::Linear model(2, 1);
  nn::EarlyStopping stop(model, {.mode = nn::MetricMode::min, .patience = 2, .min_delta = 0.1});
  CHECK_FALSE(stop.has_best());
  // epoch: metric -> improved?
  // 0: 1.0 yes (best 1.0); 1: 0.95 no (not below 0.9); 2: 0.85 yes; 3: 0.8 no; 4: 0.9 no -> stop.
  const std::vector<double> metrics = {1.0, 0.95, 0.85, 0.8, 0.9};
  const std::vector<bool> stops = {false, false, false, false, true};
  for (std::size_t e = 0; e < metrics.size(); ++e) {
    CAPTURE(e);
    fill(model, static_cast<float>(e));  // the weights of epoch e are all e
    CHECK(stop.step(metrics[e]) == stops[e]);
  }
  CHECK(stop.should_stop());
  CHECK(stop.best() == 0.85);
  CHECK(stop.best_epoch() == 2);
  CHECK(stop.bad_epochs() == 2);
  CHECK(stop.epochs() == 5);
  // The model holds epoch 4's weights; restore brings back epoch 2's, in place.
  const Tensor weight = model.weight;
  CHECK(first(model) == 4.0f);
  stop.restore_best();
  CHECK(first(model) == 2.0f);
  CHECK(model.bias.to_vector<float>()[0] == 2.0f);
  CHECK(model.weight.same(weight));
}

TEST_CASE("EarlyStopping in max mode, NaN never improves") {
  nn::Linear model(1, 1);
  nn::EarlyStopping stop(model, {.mode = nn::MetricMode::max, .patience = 3});
  fill(model, 1.0f);
  CHECK_FALSE(stop.step(0.5));
  fill(model, 2.0f);
  CHECK_FALSE(stop.step(0.7));  // improvement (min_delta 0: any increase)
  fill(model, 3.0f);
  CHECK_FALSE(stop.step(0.7));  // equal is not better
  CHECK_FALSE(stop.step(std::nan("")));
  CHECK(stop.step(0.6));
  CHECK(stop.best() == 0.7);
  stop.restore_best();
  CHECK(first(model) == 2.0f);
  // A later improvement resets the count.
  fill(model, 5.0f);
  CHECK_FALSE(stop.step(0.9));
  CHECK(stop.bad_epochs() == 0);
  CHECK_FALSE(stop.should_stop());
}

TEST_CASE("EarlyStopping state round-trips, best weights included") {
  nn::Linear model(2, 2);
  nn::EarlyStopping stop(model, {.patience = 4});
  fill(model, 1.0f);
  stop.step(3.0);
  fill(model, 7.0f);
  stop.step(4.0);
  const nn::StateDict s = stop.state_dict();
  CHECK(s.contains("best.weight"));
  CHECK(s.integer("bad_epochs") == 1);

  nn::Linear other(2, 2);
  nn::EarlyStopping resumed(other, {.patience = 4});
  resumed.load_state_dict(s);
  CHECK(resumed.best() == 3.0);
  CHECK(resumed.best_epoch() == 0);
  CHECK(resumed.epochs() == 2);
  CHECK(resumed.state_dict() == s);
  resumed.restore_best();
  CHECK(first(other) == 1.0f);

  // "No best yet" is +inf in min mode (-inf in max), never NaN: a NaN best would make every later
  // metric compare as not better, so a state holding one is rejected and changes nothing.
  nn::EarlyStopping fresh(other, {.mode = nn::MetricMode::max});
  CHECK(fresh.best() == -std::numeric_limits<double>::infinity());
  resumed.load_state_dict(fresh.state_dict());
  CHECK_FALSE(resumed.has_best());
  resumed.load_state_dict(s);
  nn::StateDict nan_best = s;
  nan_best.set("best", std::numeric_limits<double>::quiet_NaN());
  CHECK_THROWS_WITH_AS(resumed.load_state_dict(nan_best), "EarlyStopping: best is NaN in the state", Error);
  CHECK(resumed.state_dict() == s);

  nn::Linear wrong(3, 2);
  nn::EarlyStopping mismatched(wrong);
  CHECK_THROWS_WITH_AS(mismatched.load_state_dict(s),
                       "load_module_state: tensor 'weight': shape mismatch, the model has [2, 3], the state has [2, 2]",
                       Error);
}

TEST_CASE("EarlyStopping errors") {
  nn::Linear model(1, 1);
  CHECK_THROWS_WITH_AS(nn::EarlyStopping(model, {.patience = 0}), "EarlyStopping: patience must be >= 1, got 0", Error);
  CHECK_THROWS_WITH_AS(nn::EarlyStopping(model, {.min_delta = -1}),
                       "EarlyStopping: min_delta must be finite and >= 0, got -1", Error);
  // An infinite min_delta means no epoch ever improves: a silent stop after `patience` epochs.
  CHECK_THROWS_WITH_AS(nn::EarlyStopping(model, {.min_delta = std::numeric_limits<double>::infinity()}),
                       "EarlyStopping: min_delta must be finite and >= 0, got inf", Error);
  nn::EarlyStopping stop(model);
  stop.step(std::nan(""));
  CHECK_THROWS_WITH_AS(stop.restore_best(), "EarlyStopping: restore_best: no epoch has improved yet (1 epochs seen)",
                       Error);
}
