// Optimizers: a few steps with fixed gradients against trajectories computed here in double
// arithmetic from the published update rules, then small problems that must actually converge.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "approx.h"
#include "ladon.h"
#include "nn/activation.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/optim.h"

using namespace ladon;
using testing::rel;

namespace {

using Vec = std::vector<double>;

const Vec kStart = {1.0, -2.0};
const std::vector<Vec> kGrads = {{0.5, -1.0}, {0.25, 2.0}, {-1.0, 0.5}};  // one per step

Tensor to_tensor(const Vec& v) {
  std::vector<float> f(v.begin(), v.end());
  return tensor(f, {static_cast<std::int64_t>(f.size())});
}

void check_equal(const Tensor& t, const Vec& expected) {
  const std::vector<float> v = t.to_vector<float>();
  REQUIRE(v.size() == expected.size());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == rel(expected[i], 1e-5));
}

// PyTorch's SGD, elementwise, in double.
std::vector<Vec> sgd_reference(const nn::SGDOptions& o) {
  Vec p = kStart, buf(p.size());
  std::vector<Vec> trajectory;
  for (std::size_t t = 0; t < kGrads.size(); ++t) {
    for (std::size_t i = 0; i < p.size(); ++i) {
      double g = kGrads[t][i] + o.weight_decay * p[i];
      if (o.momentum != 0) {
        buf[i] = t == 0 ? g : o.momentum * buf[i] + (1 - o.dampening) * g;
        g = o.nesterov ? g + o.momentum * buf[i] : buf[i];
      }
      p[i] -= o.lr * g;
    }
    trajectory.push_back(p);
  }
  return trajectory;
}

// Adam (Kingma & Ba, with PyTorch's placement of eps), elementwise, in double.
std::vector<Vec> adam_reference(const nn::AdamOptions& o) {
  Vec p = kStart, m(p.size()), v(p.size());
  std::vector<Vec> trajectory;
  for (std::size_t t = 1; t <= kGrads.size(); ++t) {
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double g = kGrads[t - 1][i] + o.weight_decay * p[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(o.beta1, t));
      const double v_hat = v[i] / (1 - std::pow(o.beta2, t));
      p[i] -= o.lr * m_hat / (std::sqrt(v_hat) + o.eps);
    }
    trajectory.push_back(p);
  }
  return trajectory;
}

// AdamW: p = p (1 - lr wd), then Adam's update from the raw gradient.
std::vector<Vec> adamw_reference(const nn::AdamWOptions& o) {
  Vec p = kStart, m(p.size()), v(p.size());
  std::vector<Vec> trajectory;
  for (std::size_t t = 1; t <= kGrads.size(); ++t) {
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double g = kGrads[t - 1][i];
      p[i] *= 1 - o.lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(o.beta1, t));
      const double v_hat = v[i] / (1 - std::pow(o.beta2, t));
      p[i] -= o.lr * m_hat / (std::sqrt(v_hat) + o.eps);
    }
    trajectory.push_back(p);
  }
  return trajectory;
}

// PyTorch's RMSprop, in double.
std::vector<Vec> rmsprop_reference(const nn::RMSpropOptions& o) {
  Vec p = kStart, sq(p.size()), avg(p.size()), buf(p.size());
  std::vector<Vec> trajectory;
  for (std::size_t t = 0; t < kGrads.size(); ++t) {
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double g = kGrads[t][i] + o.weight_decay * p[i];
      sq[i] = o.alpha * sq[i] + (1 - o.alpha) * g * g;
      double var = sq[i];
      if (o.centered) {
        avg[i] = o.alpha * avg[i] + (1 - o.alpha) * g;
        var -= avg[i] * avg[i];
      }
      const double d = std::sqrt(var) + o.eps;
      if (o.momentum > 0) {
        buf[i] = o.momentum * buf[i] + g / d;
        p[i] -= o.lr * buf[i];
      } else {
        p[i] -= o.lr * g / d;
      }
    }
    trajectory.push_back(p);
  }
  return trajectory;
}

// PyTorch's Adagrad, in double.
std::vector<Vec> adagrad_reference(const nn::AdagradOptions& o) {
  Vec p = kStart, sum(p.size(), o.initial_accumulator_value);
  std::vector<Vec> trajectory;
  for (std::size_t t = 1; t <= kGrads.size(); ++t) {
    const double clr = o.lr / (1 + (t - 1) * o.lr_decay);
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double g = kGrads[t - 1][i] + o.weight_decay * p[i];
      sum[i] += g * g;
      p[i] -= clr * g / (std::sqrt(sum[i]) + o.eps);
    }
    trajectory.push_back(p);
  }
  return trajectory;
}

template <typename Opt, typename Options>
void check_trajectory(const Options& options, const std::vector<Vec>& expected) {
  Tensor p = to_tensor(kStart).requires_grad_();
  Opt opt({p}, options);
  for (std::size_t t = 0; t < kGrads.size(); ++t) {
    CAPTURE(t);
    p.set_grad(to_tensor(kGrads[t]));
    opt.step();
    check_equal(p, expected[t]);
  }
}

}  // namespace

TEST_CASE("SGD first steps by hand") {
  // lr 0.1, g = [0.5, -1]: p = [1 - 0.05, -2 + 0.1]
  const Vec plain = sgd_reference({.lr = 0.1})[0];
  CHECK(plain[0] == rel(0.95, 1e-6));
  CHECK(plain[1] == rel(-1.9, 1e-6));
  // weight decay 0.1 adds 0.1 p: g = [0.6, -1.2], p = [0.94, -1.88]
  const Vec wd = sgd_reference({.lr = 0.1, .weight_decay = 0.1})[0];
  CHECK(wd[0] == rel(0.94, 1e-6));
  CHECK(wd[1] == rel(-1.88, 1e-6));
  // momentum 0.9, step 2: buf = 0.9 [0.5, -1] + [0.25, 2] = [0.7, 1.1], p = [0.95 - 0.07, -1.9 - 0.11]
  const Vec mom = sgd_reference({.lr = 0.1, .momentum = 0.9})[1];
  CHECK(mom[0] == rel(0.88, 1e-6));
  CHECK(mom[1] == rel(-2.01, 1e-6));
  // nesterov 0.9, step 1: buf = g, update g + 0.9 g = 1.9 g: p = [1 - 0.095, -2 + 0.19]
  const Vec nes = sgd_reference({.lr = 0.1, .momentum = 0.9, .nesterov = true})[0];
  CHECK(nes[0] == rel(0.905, 1e-6));
  CHECK(nes[1] == rel(-1.81, 1e-6));
  // Adam's first step moves each element by lr against the sign of its gradient (m̂ = g, v̂ = g²).
  const Vec adam = adam_reference({.lr = 0.1})[0];
  CHECK(adam[0] == rel(0.9, 1e-6));
  CHECK(adam[1] == rel(-1.9, 1e-6));
}

TEST_CASE("SGD follows the reference trajectory") {
  const std::vector<nn::SGDOptions> cases = {
      {.lr = 0.1},
      {.lr = 0.1, .weight_decay = 0.1},
      {.lr = 0.1, .momentum = 0.9},
      {.lr = 0.05, .momentum = 0.8, .dampening = 0.5},
      {.lr = 0.1, .momentum = 0.9, .nesterov = true},
      {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true},
  };
  for (std::size_t c = 0; c < cases.size(); ++c) {
    CAPTURE(c);
    check_trajectory<nn::SGD>(cases[c], sgd_reference(cases[c]));
  }
}

TEST_CASE("Adam follows the reference trajectory") {
  const std::vector<nn::AdamOptions> cases = {
      {.lr = 0.1},
      {.lr = 0.01, .beta1 = 0.5, .beta2 = 0.9, .eps = 1e-3},
      {.lr = 0.1, .weight_decay = 0.1},
  };
  for (std::size_t c = 0; c < cases.size(); ++c) {
    CAPTURE(c);
    check_trajectory<nn::Adam>(cases[c], adam_reference(cases[c]));
  }
}

TEST_CASE("AdamW, RMSprop and Adagrad first steps by hand") {
  // AdamW, lr 0.1, wd 0.1: decay first, p (1 - 0.01) = [0.99, -1.98], then Adam's first step moves
  // lr against sign(g): [0.89, -1.88]. (Adam's L2 form would give [0.9, -1.9]: g + wd p keeps the
  // signs, so the first step is the same size whatever wd is.)
  const Vec adamw = adamw_reference({.lr = 0.1, .weight_decay = 0.1})[0];
  CHECK(adamw[0] == rel(0.89, 1e-7));  // eps 1e-8 shrinks the unit step by about 1e-8
  CHECK(adamw[1] == rel(-1.88, 1e-7));
  // RMSprop lr 0.01, alpha 0.99: s = 0.01 g^2, g / sqrt(s) = 10 sign(g): p = [0.9, -1.9].
  const Vec rms = rmsprop_reference({.lr = 0.01})[0];
  CHECK(rms[0] == rel(0.9, 1e-6));
  CHECK(rms[1] == rel(-1.9, 1e-6));
  // Centered: a = 0.01 g, s - a^2 = 0.99 s, so the step grows by 1 / sqrt(0.99).
  const Vec centered = rmsprop_reference({.lr = 0.01, .centered = true})[0];
  CHECK(centered[0] == rel(1 - 0.1 / std::sqrt(0.99), 1e-6));
  // Adagrad lr 0.1: step 1 moves lr against sign(g); step 2 with g = [0.25, 2]: s = [0.3125, 5],
  // p = [0.9 - 0.025 / sqrt(0.3125), -1.9 - 0.2 / sqrt(5)].
  const std::vector<Vec> ada = adagrad_reference({.lr = 0.1});
  CHECK(ada[0][0] == rel(0.9, 1e-9));
  CHECK(ada[1][0] == rel(0.9 - 0.025 / std::sqrt(0.3125), 1e-9));
  CHECK(ada[1][1] == rel(-1.9 - 0.2 / std::sqrt(5.0), 1e-9));
  CHECK(ada[1][0] == rel(0.8552786, 1e-6));
}

TEST_CASE("AdamW follows the reference trajectory, and differs from Adam with L2") {
  const std::vector<nn::AdamWOptions> cases = {
      {.lr = 0.1},  // default weight decay 0.01
      {.lr = 0.1, .weight_decay = 0.1},
      {.lr = 0.01, .beta1 = 0.5, .beta2 = 0.9, .eps = 1e-3, .weight_decay = 0.5},
      {.lr = 0.1, .weight_decay = 0},
  };
  for (std::size_t c = 0; c < cases.size(); ++c) {
    CAPTURE(c);
    check_trajectory<nn::AdamW>(cases[c], adamw_reference(cases[c]));
  }
  CHECK(nn::AdamWOptions{}.weight_decay == 0.01);
  // Same decay, coupled vs decoupled: the trajectories part after the first step.
  const Vec w = adamw_reference({.lr = 0.1, .weight_decay = 0.1})[2];
  const Vec a = adam_reference({.lr = 0.1, .weight_decay = 0.1})[2];
  CHECK(std::abs(w[0] - a[0]) > 1e-3);
}

TEST_CASE("RMSprop follows the reference trajectory") {
  const std::vector<nn::RMSpropOptions> cases = {
      {.lr = 0.01},
      {.lr = 0.01, .alpha = 0.9, .weight_decay = 0.1},
      {.lr = 0.01, .momentum = 0.9},
      {.lr = 0.01, .alpha = 0.5, .eps = 1e-3, .centered = true},
      {.lr = 0.02, .alpha = 0.8, .weight_decay = 0.05, .momentum = 0.5, .centered = true},
  };
  for (std::size_t c = 0; c < cases.size(); ++c) {
    CAPTURE(c);
    check_trajectory<nn::RMSprop>(cases[c], rmsprop_reference(cases[c]));
  }
}

TEST_CASE("Adagrad follows the reference trajectory") {
  const std::vector<nn::AdagradOptions> cases = {
      {.lr = 0.1},
      {.lr = 0.1, .lr_decay = 0.5},
      {.lr = 0.1, .weight_decay = 0.2},
      {.lr = 0.5, .initial_accumulator_value = 0.3, .eps = 1e-3},
  };
  for (std::size_t c = 0; c < cases.size(); ++c) {
    CAPTURE(c);
    check_trajectory<nn::Adagrad>(cases[c], adagrad_reference(cases[c]));
  }
}

TEST_CASE("parameters without a gradient are skipped and keep their own step count") {
  Tensor a = to_tensor({1.0, 1.0}).requires_grad_();
  Tensor b = to_tensor({5.0}).requires_grad_();
  nn::Adam opt({a, b}, {.lr = 0.1});
  a.set_grad(to_tensor({1.0, -1.0}));
  opt.step();
  opt.step();  // same gradient twice: m̂ = g and v̂ = g², so each step moves lr against sign(g)
  check_equal(a, {0.8, 1.2});
  check_equal(b, {5.0});  // never had a gradient
  // b's first update is a first Adam step (bias correction with t = 1), not a third.
  opt.zero_grad();
  CHECK_FALSE(a.grad().defined());
  CHECK_FALSE(b.grad().defined());
  b.set_grad(to_tensor({-3.0}));
  opt.step();
  check_equal(b, {5.1});
  check_equal(a, {0.8, 1.2});

  nn::SGD sgd({a, b}, {.lr = 1.0, .momentum = 0.5});
  sgd.zero_grad();
  sgd.step();  // no gradients at all: nothing moves
  check_equal(a, {0.8, 1.2});
  check_equal(b, {5.1});
}

TEST_CASE("a parameter split across threads updates to the same bits as on one thread, for every optimizer") {
  // 200,003 floats: several chunks of the split and a ragged last one.
  const std::int64_t n = 200003;
  Generator gen(5);
  const Tensor start = randn({n}, gen), grad0 = randn({n}, gen), grad1 = randn({n}, gen);
  auto run = [&](int threads, auto make) {
    set_num_threads(threads);
    Tensor p = start.clone().requires_grad_();
    auto opt = make(p);
    for (const Tensor& g : {grad0, grad1}) {
      p.set_grad(g.clone());
      opt.step();
    }
    set_num_threads(0);
    return p.to_vector<float>();
  };
  auto sgd = [](Tensor& p) { return nn::SGD({p}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01}); };
  auto adam = [](Tensor& p) { return nn::Adam({p}, {.lr = 0.01, .weight_decay = 0.01}); };
  auto rmsprop = [](Tensor& p) { return nn::RMSprop({p}, {.lr = 0.01, .momentum = 0.5, .centered = true}); };
  auto adagrad = [](Tensor& p) { return nn::Adagrad({p}, {.lr = 0.1, .weight_decay = 0.01}); };
  const std::vector<float> moved = run(1, adam);
  CHECK(moved != start.to_vector<float>());
  CHECK(run(2, sgd) == run(1, sgd));
  CHECK(run(2, adam) == moved);
  CHECK(run(2, rmsprop) == run(1, rmsprop));
  CHECK(run(2, adagrad) == run(1, adagrad));
}

TEST_CASE("a non-contiguous gradient is read in the parameter's element order") {
  Tensor w = zeros({2, 3}).requires_grad_();
  nn::SGD opt({w}, {.lr = 1.0});
  w.set_grad(tensor({1, 2, 3, 4, 5, 6}, {3, 2}).t());  // [[1, 3, 5], [2, 4, 6]]
  opt.step();
  CHECK(w.to_vector<float>() == std::vector<float>{-1, -3, -5, -2, -4, -6});
}

TEST_CASE("optimizer options and parameters are validated") {
  Tensor p = zeros({2}).requires_grad_();
  CHECK_THROWS_WITH_AS(nn::SGD({p}, {.lr = -1}), "SGD: lr must be finite and >= 0, got -1", Error);
  CHECK_THROWS_WITH_AS(nn::SGD({p}, {.lr = 0.1, .nesterov = true}),
                       "SGD: nesterov needs momentum > 0 and dampening = 0, got momentum = 0, dampening = 0", Error);
  CHECK_THROWS_WITH_AS(nn::SGD({p}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                       "SGD: nesterov needs momentum > 0 and dampening = 0, got momentum = 0.9, dampening = 0.1",
                       Error);
  CHECK_THROWS_WITH_AS(nn::SGD({p}, {.momentum = -0.5}), "SGD: momentum must be finite and >= 0, got -0.5", Error);
  CHECK_THROWS_WITH_AS(nn::Adam({p}, {.lr = std::nan("")}), "Adam: lr must be finite and >= 0, got nan", Error);
  CHECK_THROWS_WITH_AS(nn::Adam({p}, {.beta1 = 1.0}), "Adam: beta1 must be in [0, 1), got 1", Error);
  CHECK_THROWS_WITH_AS(nn::Adam({p}, {.beta2 = -0.1}), "Adam: beta2 must be in [0, 1), got -0.1", Error);
  CHECK_THROWS_WITH_AS(nn::Adam({p}, {.eps = -1}), "Adam: eps must be finite and >= 0, got -1", Error);
  CHECK_THROWS_WITH_AS(nn::Adam({p}, {.weight_decay = -1}), "Adam: weight_decay must be finite and >= 0, got -1",
                       Error);
  // ">= 0" alone lets +inf through: every such hyperparameter must also be finite.
  const double inf = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(nn::SGD({p}, {.lr = inf}), "SGD: lr must be finite and >= 0, got inf", Error);
  CHECK_THROWS_WITH_AS(nn::SGD({p}, {.momentum = inf}), "SGD: momentum must be finite and >= 0, got inf", Error);
  CHECK_THROWS_WITH_AS(nn::Adam({p}, {.eps = inf}), "Adam: eps must be finite and >= 0, got inf", Error);
  CHECK_THROWS_WITH_AS(nn::AdamW({p}, {.weight_decay = inf}), "AdamW: weight_decay must be finite and >= 0, got inf",
                       Error);
  CHECK_THROWS_WITH_AS(nn::RMSprop({p}, {.momentum = inf}), "RMSprop: momentum must be finite and >= 0, got inf",
                       Error);
  CHECK_THROWS_WITH_AS(nn::Adagrad({p}, {.lr_decay = inf}), "Adagrad: lr_decay must be finite and >= 0, got inf",
                       Error);
  CHECK_THROWS_WITH_AS(nn::Adagrad({p}, {.initial_accumulator_value = inf}),
                       "Adagrad: initial_accumulator_value must be finite and >= 0, got inf", Error);
  CHECK_THROWS_WITH_AS(nn::Adam({{{p}, {.lr = inf}}}), "Adam: group 0: lr must be finite and >= 0, got inf", Error);

  CHECK_THROWS_WITH_AS(nn::Adam(std::vector<Tensor>{}),
                       "Adam: got an empty parameter list (does every module's visit() list its parameters?)", Error);
  CHECK_THROWS_WITH_AS(nn::SGD({p, p}),
                       "SGD: parameter 1 of shape [2] is listed twice; it would be updated twice per step", Error);
  CHECK_THROWS_WITH_AS(nn::SGD({zeros({3, 2}).t()}), "SGD: parameter 0 of shape [2, 3] is not contiguous", Error);
  CHECK_THROWS_WITH_AS(nn::SGD({p * 2.0}),
                       "SGD: parameter 0 of shape [2] is not a leaf (it was computed from other tensors); optimize "
                       "the tensors it came from",
                       Error);
  CHECK_THROWS_WITH_AS(nn::SGD({zeros({2}, Dtype::int64)}), "SGD: parameter 0 of shape [2] is int64, not float32",
                       Error);

  nn::SGD opt({p}, {.lr = 0.1});
  CHECK(opt.lr() == 0.1);
  opt.set_lr(0.5);
  CHECK(opt.options().lr == 0.5);
  CHECK_THROWS_WITH_AS(opt.set_lr(-2), "SGD: lr must be finite and >= 0, got -2", Error);
  CHECK_THROWS_WITH_AS(opt.set_lr(inf), "SGD: lr must be finite and >= 0, got inf", Error);
  CHECK_THROWS_WITH_AS(opt.set_weight_decay(0, inf), "SGD: weight_decay must be finite and >= 0, got inf", Error);
  CHECK(opt.lr() == 0.5);
  CHECK(opt.params().size() == 1);
  CHECK(opt.params()[0].same(p));
}

TEST_CASE("SGD with momentum and Adam fit a linear regression") {
  // y = 2x - 1 on 16 points in [-1, 1]: the least-squares optimum is exact, loss 0.
  const Tensor x = arange(-1.0, 1.0, 0.125).reshape({16, 1});
  const Tensor y = x * 2.0 - 1.0;
  for (int which = 0; which < 2; ++which) {
    CAPTURE(which);
    Generator gen(4);
    nn::Linear model(1, 1, {}, gen);
    std::unique_ptr<nn::Optimizer> opt;
    if (which == 0)
      opt = std::make_unique<nn::SGD>(model.parameters(), nn::SGDOptions{.lr = 0.1, .momentum = 0.9});
    else
      opt = std::make_unique<nn::Adam>(model.parameters(), nn::AdamOptions{.lr = 0.05});
    const double initial = nn::mse_loss(model(x), y).item();
    double loss = initial;
    for (int step = 0; step < 300; ++step) {
      Tensor l = nn::mse_loss(model(x), y);
      loss = l.item();
      opt->zero_grad();
      l.backward();
      opt->step();
    }
    CHECK(initial > 0.5);
    CHECK(loss < 1e-5);
    CHECK(model.weight.item() == rel(2.0, 1e-2));
    CHECK(model.bias.item() == rel(-1.0, 1e-2));
  }
}

TEST_CASE("Adam trains a small MLP to separate XOR") {
  const Tensor x = tensor({0, 0, 0, 1, 1, 0, 1, 1}, {4, 2});
  const Tensor y = tensor(std::vector<std::int64_t>{0, 1, 1, 0}, {4});
  Generator gen(6);
  nn::Sequential model{nn::Linear(2, 8, {}, gen), nn::Tanh(), nn::Linear(8, 2, {}, gen)};
  nn::Adam opt(model.parameters(), {.lr = 0.05});
  double loss = 0;
  for (int step = 0; step < 300; ++step) {
    Tensor l = nn::cross_entropy(model(x), y);
    loss = l.item();
    opt.zero_grad();
    l.backward();
    opt.step();
  }
  CHECK(loss < 0.05);
  CHECK(equal(argmax(model(x), 1), y));
}
