// Optimizer parameter groups, and optimizer state that saves, loads and resumes bit for bit.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "approx.h"
#include "ladon.h"
#include "nn/optim.h"
#include "nn/state.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::rel;
using testing::values;

namespace {
Tensor vec(std::vector<float> v) {
  const auto n = static_cast<std::int64_t>(v.size());
  return tensor(std::move(v), {n});
}

// A fixed gradient for step t of a parameter of n elements: varied signs and sizes.
Tensor grad_at(int t, std::int64_t n, float scale = 1.0f) {
  std::vector<float> g(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    g[i] = scale * std::sin(1.3f * static_cast<float>(t) + 0.7f * static_cast<float>(i) + 0.2f);
  return vec(g);
}

}  // namespace

TEST_CASE("parameter groups take their own lr and weight decay, the rest from the options") {
  Tensor a = vec({1.0f}).requires_grad_();
  Tensor b = vec({2.0f}).requires_grad_();
  nn::SGD opt({{{a}, {.lr = 0.1}}, {{b}, {.weight_decay = 0.5}}}, {.lr = 1.0, .momentum = 0});
  REQUIRE(opt.num_groups() == 2);
  CHECK(opt.lr(0) == 0.1);
  CHECK(opt.lr(1) == 1.0);
  CHECK(opt.weight_decay(0) == 0.0);
  CHECK(opt.weight_decay(1) == 0.5);
  CHECK(opt.options(1).weight_decay == 0.5);
  CHECK(opt.lr() == 0.1);  // group 0's
  CHECK(opt.params().size() == 2);
  CHECK(opt.group_params(1)[0].same(b));
  a.set_grad(vec({1.0f}));
  b.set_grad(vec({1.0f}));
  opt.step();
  // a: 1 - 0.1 * 1 = 0.9; b: g = 1 + 0.5 * 2 = 2, 2 - 1.0 * 2 = 0.
  CHECK(a.item() == rel(0.9, 1e-7));
  CHECK(b.item() == 0.0);

  opt.set_lr(1, 0.25);
  CHECK(opt.lr(0) == 0.1);
  CHECK(opt.lr(1) == 0.25);
  opt.set_lr(0.5);
  CHECK(opt.lr(0) == 0.5);
  CHECK(opt.lr(1) == 0.5);
  opt.set_weight_decay(0, 0.125);
  CHECK(opt.weight_decay(0) == 0.125);
  CHECK_THROWS_WITH_AS(opt.lr(2), "SGD: group 2 does not exist (2 groups)", Error);
  CHECK_THROWS_WITH_AS(opt.set_lr(0, -1), "SGD: lr must be finite and >= 0, got -1", Error);
}

TEST_CASE("Adam with two groups in the designated-initialiser style") {
  std::vector<Tensor> trunk = {vec({1.0f, 1.0f}).requires_grad_()};
  std::vector<Tensor> head = {vec({-1.0f}).requires_grad_(), vec({3.0f}).requires_grad_()};
  nn::Adam opt({{trunk, {.lr = 1e-3}}, {head, {.lr = 1e-4, .weight_decay = 0.01}}});
  trunk[0].set_grad(vec({0.5f, -2.0f}));
  head[0].set_grad(vec({4.0f}));
  head[1].set_grad(vec({-0.5f}));
  opt.step();
  // Adam's first step moves each element by lr against the sign of its gradient (+ wd p, which
  // keeps the signs here).
  CHECK(values(trunk[0]) == std::vector<float>{1.0f - 1e-3f, 1.0f + 1e-3f});
  CHECK(head[0].item() == rel(-1.0 - 1e-4, 1e-6));
  CHECK(head[1].item() == rel(3.0 + 1e-4, 1e-6));
  CHECK(opt.options(1).beta1 == 0.9);  // not set by the group: the options' value
}

TEST_CASE("parameter groups are validated") {
  Tensor a = zeros({2}).requires_grad_();
  Tensor b = zeros({3}).requires_grad_();
  CHECK_THROWS_WITH_AS(nn::Adam({{{a}, {}}, {{b}, {.lr = -1}}}), "Adam: group 1: lr must be finite and >= 0, got -1",
                       Error);
  CHECK_THROWS_WITH_AS(nn::RMSprop({{{a}, {.weight_decay = -0.5}}}),
                       "RMSprop: group 0: weight_decay must be finite and >= 0, got -0.5", Error);
  CHECK_THROWS_WITH_AS(nn::SGD({{{a, b}, {}}, {{b}, {}}}),
                       "SGD: parameter 2 of shape [3] is listed twice; it would be updated twice per step", Error);
  CHECK_THROWS_WITH_AS(nn::SGD(std::vector<nn::ParamGroup>{{{}, {}}}),
                       "SGD: got an empty parameter list (does every module's visit() list its parameters?)", Error);
  // An empty group next to a full one is fine.
  nn::SGD ok({{{}, {.lr = 5}}, {{a}, {}}});
  CHECK(ok.num_groups() == 2);
  CHECK(ok.group_params(0).empty());
}

namespace {
// Runs `steps` updates of two parameters with fixed gradients (the second parameter gets no
// gradient on step 1, so the step counts differ).
void run(nn::Optimizer& opt, const std::vector<Tensor>& ps, int from, int to) {
  for (int t = from; t < to; ++t) {
    for (std::size_t k = 0; k < ps.size(); ++k) {
      if (k == 1 && t == 1) {
        ps[k].zero_grad();
        continue;
      }
      ps[k].set_grad(grad_at(t + 10 * static_cast<int>(k), ps[k].numel(), 0.5f + static_cast<float>(k)));
    }
    opt.step();
  }
}

std::vector<Tensor> fresh_params() {
  return {vec({0.5f, -1.5f, 2.0f}).requires_grad_(), vec({1.0f, -0.25f}).requires_grad_()};
}

template <typename Opt, typename Options>
void check_resume(const Options& options) {
  // Uninterrupted: 5 steps, with the lr of group 1 changed after step 2 (as a scheduler would).
  std::vector<Tensor> ps = fresh_params();
  Opt reference({{{ps[0]}, {}}, {{ps[1]}, {.lr = options.lr / 2}}}, options);
  run(reference, ps, 0, 3);
  reference.set_lr(1, options.lr / 4);
  const nn::StateDict saved = reference.state_dict();
  const std::vector<Tensor> saved_values = {ps[0].detach().clone(), ps[1].detach().clone()};
  run(reference, ps, 3, 5);

  // Resumed: new parameters holding the saved values, a new optimizer built with the original
  // options, the saved state loaded, then the same last 2 steps.
  std::vector<Tensor> qs = {saved_values[0].clone().requires_grad_(), saved_values[1].clone().requires_grad_()};
  Opt resumed({{{qs[0]}, {}}, {{qs[1]}, {.lr = options.lr / 2}}}, options);
  resumed.load_state_dict(saved);
  CHECK(resumed.lr(1) == options.lr / 4);
  CHECK(resumed.param_steps(0) == 3);
  CHECK(resumed.param_steps(1) == 2);
  CHECK(resumed.state_dict() == saved);
  run(resumed, qs, 3, 5);
  CHECK(equal(qs[0], ps[0]));
  CHECK(equal(qs[1], ps[1]));

  // Without the state the last steps differ: the test can tell a restored state from a fresh one.
  std::vector<Tensor> rs = {saved_values[0].clone().requires_grad_(), saved_values[1].clone().requires_grad_()};
  Opt fresh({{{rs[0]}, {}}, {{rs[1]}, {.lr = options.lr / 4}}}, options);
  run(fresh, rs, 3, 5);
  CHECK_FALSE(equal(rs[0], ps[0]));
}

}  // namespace

TEST_CASE("optimizer state resumes training exactly, for every optimizer") {
  SUBCASE("SGD with Nesterov momentum") {
    check_resume<nn::SGD>(nn::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
  }
  SUBCASE("Adam") { check_resume<nn::Adam>(nn::AdamOptions{.lr = 0.05, .weight_decay = 0.1}); }
  SUBCASE("AdamW") { check_resume<nn::AdamW>(nn::AdamWOptions{.lr = 0.05}); }
  SUBCASE("RMSprop") { check_resume<nn::RMSprop>(nn::RMSpropOptions{.lr = 0.01, .momentum = 0.5, .centered = true}); }
  SUBCASE("Adagrad") { check_resume<nn::Adagrad>(nn::AdagradOptions{.lr = 0.1, .lr_decay = 0.1}); }
}

TEST_CASE("optimizer state_dict layout") {
  Tensor a = vec({1.0f, 2.0f}).requires_grad_();
  Tensor b = vec({3.0f}).requires_grad_();
  nn::Adam opt({a, b}, {.lr = 0.1, .beta1 = 0.8});
  a.set_grad(vec({1.0f, -1.0f}));
  opt.step();
  opt.step();
  const nn::StateDict s = opt.state_dict();
  CHECK(s.string("optimizer") == "Adam");
  CHECK(s.integer("groups") == 1);
  CHECK(s.integer("group.0.params") == 2);
  CHECK(s.number("group.0.lr") == 0.1);
  CHECK(s.number("hyper.beta1") == 0.8);
  CHECK(s.integer("param.0.step") == 2);
  CHECK(s.integer("param.1.step") == 0);
  CHECK_FALSE(s.contains("param.1.exp_avg"));  // never updated: no buffers yet
  // exp_avg after two steps of g: 0.2 g + 0.8 (0.2 g) = 0.36 g.
  const std::vector<float> m = values(s.tensor("param.0.exp_avg"));
  CHECK(m[0] == rel(0.36, 1e-6));
  CHECK(m[1] == rel(-0.36, 1e-6));
  // A copy: stepping again does not change the saved state.
  opt.step();
  CHECK(values(s.tensor("param.0.exp_avg"))[0] == rel(0.36, 1e-6));
}

TEST_CASE("loading a mismatched optimizer state throws and changes nothing") {
  Tensor a = vec({1.0f, 2.0f}).requires_grad_();
  nn::Adam adam({a}, {.lr = 0.1});
  a.set_grad(vec({1.0f, 1.0f}));
  adam.step();
  const nn::StateDict adam_state = adam.state_dict();

  Tensor c = vec({1.0f, 2.0f, 3.0f}).requires_grad_();
  nn::Adam other({c}, {.lr = 0.7});
  c.set_grad(vec({1.0f, 1.0f, 1.0f}));
  other.step();
  const nn::StateDict before = other.state_dict();

  CHECK_THROWS_WITH_AS(other.load_state_dict(adam_state),
                       "Adam: state entry 'param.0.exp_avg' has shape [2], but parameter 0 has shape [3]", Error);
  CHECK(other.state_dict() == before);

  nn::SGD sgd({c}, {.lr = 0.1});
  CHECK_THROWS_WITH_AS(sgd.load_state_dict(adam_state), "SGD: the state was saved by Adam, this is SGD", Error);
  nn::AdamW adamw({c});
  CHECK_THROWS_WITH_AS(adamw.load_state_dict(adam_state), "AdamW: the state was saved by Adam, this is AdamW", Error);

  Tensor d = vec({0.0f}).requires_grad_();
  nn::Adam two_groups({{{c}, {}}, {{d}, {}}});
  CHECK_THROWS_WITH_AS(two_groups.load_state_dict(adam_state),
                       "Adam: the state has 1 parameter groups, this optimizer has 2", Error);

  // A bad hyperparameter is rolled back, with everything else.
  nn::StateDict bad = before;
  bad.set("hyper.beta1", 1.5);
  bad.set("group.0.lr", 0.01);
  CHECK_THROWS_WITH_AS(other.load_state_dict(bad), "Adam: beta1 must be in [0, 1), got 1.5", Error);
  CHECK(other.state_dict() == before);
  CHECK(other.lr() == 0.7);

  nn::StateDict extra = before;
  extra.set("param.5.step", 1);
  CHECK_THROWS_WITH_AS(other.load_state_dict(extra),
                       "Adam: state entry 'param.5.step' is for parameter 5, but this optimizer has 1 parameters",
                       Error);
  nn::StateDict unknown = before;
  unknown.set("param.0.momentum_buffer", zeros({3}));
  CHECK_THROWS_WITH_AS(other.load_state_dict(unknown),
                       "Adam: state entry 'param.0.momentum_buffer': Adam has no buffer 'momentum_buffer'", Error);
  nn::StateDict wrong_kind = before;
  wrong_kind.set("param.0.step", 1.5);
  CHECK_THROWS_WITH_AS(other.load_state_dict(wrong_kind), "Adam: entry 'param.0.step' is a number, not an integer",
                       Error);
  CHECK(other.state_dict() == before);
}
