// Learning-rate schedulers against lr sequences worked out by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <numbers>

#include "approx.h"
#include "ladon.h"
#include "nn/scheduler.h"

using namespace ladon;
using testing::rel;

namespace {

struct Fixture {
  Tensor a = zeros({2}).requires_grad_();
  Tensor b = zeros({1}).requires_grad_();
};

// The lr of group `g` now and after each of n - 1 further steps.
template <typename Sched>
std::vector<double> sequence(nn::Optimizer& opt, Sched& sched, int n, std::size_t g = 0) {
  std::vector<double> out;
  for (int e = 0; e < n; ++e) {
    if (e > 0) sched.step();
    out.push_back(opt.lr(g));
  }
  return out;
}

void check_seq(const std::vector<double>& got, const std::vector<double>& expected) {
  REQUIRE(got.size() == expected.size());
  for (std::size_t e = 0; e < got.size(); ++e) {
    CAPTURE(e);
    if (expected[e] == 0.0)
      CHECK(std::abs(got[e]) < 1e-15);
    else
      CHECK(got[e] == rel(expected[e], 1e-12));
  }
}

}  // namespace

TEST_CASE("StepLR, MultiStepLR and ExponentialLR sequences") {
  Fixture f;
  {
    nn::SGD opt({f.a}, {.lr = 1.0});
    nn::StepLR sched(opt, {.step_size = 2, .gamma = 0.5});
    check_seq(sequence(opt, sched, 6), {1, 1, 0.5, 0.5, 0.25, 0.25});
    CHECK(sched.epoch() == 5);
  }
  {
    nn::SGD opt({f.a}, {.lr = 1.0});
    nn::MultiStepLR sched(opt, {.milestones = {2, 5}, .gamma = 0.1});
    check_seq(sequence(opt, sched, 7), {1, 1, 0.1, 0.1, 0.1, 0.01, 0.01});
  }
  {
    nn::Adam opt({f.a}, {.lr = 0.8});
    nn::ExponentialLR sched(opt, {.gamma = 0.5});
    check_seq(sequence(opt, sched, 4), {0.8, 0.4, 0.2, 0.1});
  }
}

TEST_CASE("schedulers follow each group's own base lr") {
  Fixture f;
  nn::SGD opt({{{f.a}, {}}, {{f.b}, {.lr = 0.1}}}, {.lr = 1.0});
  nn::StepLR sched(opt, {.step_size = 1, .gamma = 0.5});
  sched.step();
  sched.step();
  CHECK(opt.lr(0) == 0.25);
  CHECK(opt.lr(1) == rel(0.025, 1e-12));
  CHECK(sched.base_lrs() == std::vector<double>{1.0, 0.1});
}

TEST_CASE("WarmupCosineLR: linear warm-up, then cosine down to min_lr") {
  Fixture f;
  const double c = std::cos(std::numbers::pi / 4);  // progress 1/4 and 3/4 of the cosine
  {
    nn::SGD opt({f.a}, {.lr = 1.0});
    nn::WarmupCosineLR sched(opt, {.warmup_steps = 2, .total_steps = 6});
    // warm-up 0, 1/2; then 0.5 (1 + cos(pi k / 4)) for k = 0..4; then 0.
    check_seq(sequence(opt, sched, 8), {0, 0.5, 1, 0.5 * (1 + c), 0.5, 0.5 * (1 - c), 0, 0});
  }
  {
    nn::SGD opt({f.a}, {.lr = 1.0});
    nn::WarmupCosineLR sched(opt, {.warmup_steps = 2, .total_steps = 6, .min_lr = 0.1, .warmup_start_factor = 0.2});
    // warm-up 0.2, 0.6; cosine 0.1 + 0.9 (...)
    check_seq(sequence(opt, sched, 7), {0.2, 0.6, 1, 0.1 + 0.45 * (1 + c), 0.55, 0.1 + 0.45 * (1 - c), 0.1});
  }
  {
    // No warm-up: CosineAnnealingLR with T_max = 4.
    nn::SGD opt({f.a}, {.lr = 2.0});
    nn::WarmupCosineLR sched(opt, {.warmup_steps = 0, .total_steps = 4});
    check_seq(sequence(opt, sched, 5), {2, 1 + c, 1, 1 - c, 0});
  }
}

TEST_CASE("ReduceLROnPlateau: threshold, patience, cooldown and min_lr") {
  Fixture f;
  nn::SGD opt({f.a}, {.lr = 1.0});
  nn::ReduceLROnPlateau sched(
      opt, {.mode = nn::MetricMode::min, .factor = 0.5, .patience = 2, .threshold = 0.1, .cooldown = 1, .min_lr = 0.2});
  // Relative threshold 0.1: an improvement must go below 0.9 best.
  const std::vector<double> metrics = {10, 9.5, 9.2, 9.1, 9.3, 9.4, 9.5, 9.6, 8, 8, 8, 8, 8, 8, 8, 8};
  // 10 is the best; 9.5, 9.2, 9.1 are bad (9.1 > 9): the third bad epoch (> patience 2) halves the
  // lr and starts a 1-epoch cooldown, which swallows 9.3; 9.4, 9.5, 9.6 halve it again; 8 beats 9;
  // three more 8s reduce to max(0.125, min_lr 0.2); the next reduction would be a no-op.
  const std::vector<double> expected = {1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2};
  std::vector<double> got;
  for (double m : metrics) {
    sched.step(m);
    got.push_back(opt.lr());
  }
  check_seq(got, expected);
  CHECK(sched.best() == 8.0);
  CHECK(sched.epoch() == 16);
}

TEST_CASE("ReduceLROnPlateau in max mode with an absolute threshold, and NaN") {
  Fixture f;
  nn::SGD opt({f.a}, {.lr = 1.0});
  nn::ReduceLROnPlateau sched(opt, {.mode = nn::MetricMode::max,
                                    .factor = 0.1,
                                    .patience = 0,
                                    .threshold = 0.1,
                                    .threshold_mode = nn::ThresholdMode::abs});
  sched.step(0.5);  // first: better than -inf
  CHECK(opt.lr() == 1.0);
  sched.step(0.55);  // not above 0.5 + 0.1: bad, patience 0 reduces at once
  CHECK(opt.lr() == rel(0.1, 1e-12));
  sched.step(0.7);  // above 0.6: better
  CHECK(opt.lr() == rel(0.1, 1e-12));
  CHECK(sched.best() == 0.7);
  sched.step(std::nan(""));  // never an improvement
  CHECK(opt.lr() == rel(0.01, 1e-12));
  CHECK(sched.best() == 0.7);
}

TEST_CASE("scheduler state saves and loads") {
  Fixture f;
  nn::SGD opt({{{f.a}, {}}, {{f.b}, {.lr = 0.5}}}, {.lr = 1.0});
  nn::StepLR sched(opt, {.step_size = 2, .gamma = 0.1});
  sched.step();
  sched.step();
  sched.step();
  const nn::StateDict s = sched.state_dict();
  CHECK(s.string("scheduler") == "StepLR");
  CHECK(s.integer("epoch") == 3);
  CHECK(s.number("base_lr.1") == 0.5);

  nn::SGD opt2({{{f.a}, {}}, {{f.b}, {.lr = 0.5}}}, {.lr = 1.0});
  nn::StepLR sched2(opt2, {.step_size = 2, .gamma = 0.1});
  sched2.load_state_dict(s);
  CHECK(sched2.epoch() == 3);
  CHECK(opt2.lr(0) == rel(0.1, 1e-12));  // loading sets the lr for the loaded epoch
  CHECK(opt2.lr(1) == rel(0.05, 1e-12));
  sched.step();
  sched2.step();
  CHECK(opt2.lr(0) == opt.lr(0));
  CHECK(opt2.lr(0) == rel(0.01, 1e-12));

  nn::ExponentialLR other(opt2, {.gamma = 0.5});
  const nn::StateDict before = other.state_dict();
  CHECK_THROWS_WITH_AS(other.load_state_dict(s), "ExponentialLR: the state was saved by StepLR, this is ExponentialLR",
                       Error);
  CHECK(other.state_dict() == before);
  nn::SGD one({f.a}, {.lr = 1.0});
  nn::StepLR one_group(one, {.step_size = 2});
  CHECK_THROWS_WITH_AS(one_group.load_state_dict(s), "StepLR: the state has 2 parameter groups, the optimizer has 1",
                       Error);

  // ReduceLROnPlateau: counters and best survive.
  nn::ReduceLROnPlateau plateau(one, {.patience = 1});
  plateau.step(3.0);
  plateau.step(4.0);
  nn::ReduceLROnPlateau plateau2(one, {.patience = 1});
  plateau2.load_state_dict(plateau.state_dict());
  CHECK(plateau2.best() == 3.0);
  CHECK(plateau2.num_bad_epochs() == 1);
  CHECK(plateau2.state_dict() == plateau.state_dict());
  plateau2.step(5.0);  // second bad epoch > patience 1: reduce
  CHECK(one.lr() == rel(0.1, 1e-12));
  // "No best yet" is +inf in min mode (-inf in max), never NaN; a NaN best would make every later
  // metric compare as not better, so a state holding one is rejected and changes nothing.
  nn::ReduceLROnPlateau fresh(one, {.patience = 1});
  CHECK(fresh.best() == std::numeric_limits<double>::infinity());
  plateau2.load_state_dict(fresh.state_dict());
  CHECK(plateau2.best() == std::numeric_limits<double>::infinity());
  plateau2.load_state_dict(plateau.state_dict());
  nn::StateDict nan_best = plateau.state_dict();
  nan_best.set("best", std::numeric_limits<double>::quiet_NaN());
  CHECK_THROWS_WITH_AS(plateau2.load_state_dict(nan_best), "ReduceLROnPlateau: best is NaN in the state", Error);
  CHECK(plateau2.state_dict() == plateau.state_dict());
  CHECK_THROWS_WITH_AS(plateau2.load_state_dict(s),
                       "ReduceLROnPlateau: the state was saved by StepLR, this is ReduceLROnPlateau", Error);
}

TEST_CASE("scheduler options are validated") {
  Fixture f;
  nn::SGD opt({f.a}, {.lr = 1.0});
  CHECK_THROWS_WITH_AS(nn::StepLR(opt, {.step_size = 0}), "StepLR: step_size must be > 0, got 0", Error);
  CHECK_THROWS_WITH_AS(nn::MultiStepLR(opt, {.milestones = {3, 3}}),
                       "MultiStepLR: milestones must be strictly increasing, got 3 then 3", Error);
  CHECK_THROWS_WITH_AS(nn::WarmupCosineLR(opt, {.warmup_steps = 5, .total_steps = 5}),
                       "WarmupCosineLR: total_steps (5) must be greater than warmup_steps (5)", Error);
  CHECK_THROWS_WITH_AS(nn::ReduceLROnPlateau(opt, {.factor = 1.0}),
                       "ReduceLROnPlateau: factor must be in (0, 1), got 1", Error);
  // An infinite min_lr would set every group's lr to inf at the first reduction.
  CHECK_THROWS_WITH_AS(nn::ReduceLROnPlateau(opt, {.min_lr = std::numeric_limits<double>::infinity()}),
                       "ReduceLROnPlateau: min_lr must be finite and >= 0, got inf", Error);
  // An infinite threshold makes no metric an improvement; an infinite eps makes no reduction big enough.
  CHECK_THROWS_WITH_AS(nn::ReduceLROnPlateau(opt, {.threshold = std::numeric_limits<double>::infinity()}),
                       "ReduceLROnPlateau: threshold must be finite and >= 0, got inf", Error);
  CHECK_THROWS_WITH_AS(nn::ReduceLROnPlateau(opt, {.eps = std::numeric_limits<double>::infinity()}),
                       "ReduceLROnPlateau: eps must be finite and >= 0, got inf", Error);
  CHECK(opt.lr() == 1.0);  // failed constructions did not touch the lr
}
