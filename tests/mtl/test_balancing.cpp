// Balancers against their formulas on cases small enough to do by hand, all through the one
// interface a training loop uses: balancer.backward(task_losses, model).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "ladon.h"
#include "test_balancing_util.h"

using namespace ladon;

using ladon::testing::check_vec;
using ladon::testing::grad_of;
using ladon::testing::Tiny;

TEST_CASE("static weighting: L = sum_t alpha_t L_t, one backward") {
  Tiny m(2);
  mtl::StaticWeighting w({2.0, 0.5});
  const Tensor total = w.backward({sum(m.W) * 1.5, sum(m.W * m.W)}, m);
  // 2 * 1.5 * 4 + 0.5 * 10 = 17; dW = 2 * 1.5 + 0.5 * 2 W = (4, 6).
  CHECK(total.item() == doctest::Approx(17.0));
  CHECK(grad_of(m.W) == std::vector<float>{4, 6});
  check_vec(w.weights(), {2.0, 0.5});
  CHECK(mtl::StaticWeighting::equal(3).weights() == std::vector<double>{1, 1, 1});
  CHECK_THROWS_WITH_AS(mtl::StaticWeighting({1.0, -1.0}), "StaticWeighting: task weights must be non-negative, got -1",
                       Error);
}

TEST_CASE("every balancer checks its losses: count, shape, finiteness, the model's task count") {
  Tiny m(2);
  mtl::StaticWeighting w({1.0, 1.0});
  CHECK_THROWS_WITH_AS(w.backward({sum(m.W)}, m), "StaticWeighting: 1 task losses for 2 tasks", Error);
  CHECK_THROWS_WITH_AS(w.backward({sum(m.W), m.W}, m), "StaticWeighting: task 1 loss has shape [2]; expected a scalar",
                       Error);
  CHECK_THROWS_WITH_AS(w.backward({sum(m.W), sum(m.W) * std::numeric_limits<double>::infinity()}, m),
                       "StaticWeighting: task 1 ('t1') loss is inf", Error);
  Tiny three(3);
  mtl::PCGrad pc(2);
  CHECK_THROWS_WITH_AS(pc.backward({sum(three.W), sum(three.W)}, three), "PCGrad: built for 2 tasks, given a model with 3",
                       Error);
  CHECK_THROWS_WITH_AS(mtl::PCGrad(0), "PCGrad: needs at least one task", Error);
}

TEST_CASE("uncertainty weighting: regression and classification forms, its own parameters stepped") {
  Tiny m(2);
  std::vector<mtl::TaskSpec> tasks = m.tasks();
  tasks[1] = {"c", 3, {}};  // a classification task: factor 1
  mtl::UncertaintyWeighting u(tasks, {.lr = 0.1});
  auto losses = [&] { return std::vector<Tensor>{sum(m.W) * 0.5, sum(m.W) * 0.75}; };  // values 2 and 3
  const Tensor total = u.backward(losses(), m);
  // s = 0: 0.5 * 2 + 1 * 3 = 4 (the 0.5 s terms are 0).
  CHECK(total.item() == doctest::Approx(4.0));
  check_vec(u.weights(), {0.5, 1.0});
  // dW = 0.5 * 0.5 + 1 * 0.75 = 1 for both entries.
  CHECK(grad_of(m.W) == std::vector<float>{1, 1});
  // d/ds: 0.5 - 0.5 * 2 = -0.5 and 0.5 - 1 * 3 = -2.5: Adam's first step moves each s by +lr.
  const std::vector<float> s = u.log_vars().to_vector<float>();
  CHECK(s[0] == doctest::Approx(0.1));
  CHECK(s[1] == doctest::Approx(0.1));
  // The next step uses the new s: weights 0.5 e^-0.1 and e^-0.1.
  m.zero_grad();
  (void)u.backward(losses(), m);
  check_vec(u.weights(), {0.5 * std::exp(-0.1), std::exp(-0.1)}, 1e-6);
}

TEST_CASE("DWA: ones for two epochs, then K softmax(L(t-1)/L(t-2)/T) from the epochs it averaged") {
  Tiny m(2);
  mtl::DynamicWeightAverage dwa(2, {.steps_per_epoch = 2, .temperature = 2.0});
  auto step = [&](double a, double b) {
    m.zero_grad();
    return dwa.backward({sum(m.W) * (a / 4), sum(m.W) * (b / 4)}, m);
  };
  // Epoch 1: mean losses (1, 1); epoch 2: (0.5, 0.9).
  step(1.0, 0.5), step(1.0, 1.5);
  check_vec(dwa.weights(), {1, 1});
  step(0.5, 0.8), step(0.5, 1.0);
  check_vec(dwa.weights(), {1, 1});
  // Epoch 3 starts: w = (0.5, 0.9); 2 * softmax(0.25, 0.45).
  const Tensor total = step(1.0, 2.0);
  const double a = std::exp(0.25), b = std::exp(0.45);
  check_vec(dwa.weights(), {2 * a / (a + b), 2 * b / (a + b)});
  CHECK(total.item() == doctest::Approx(2 * a / (a + b) + 4 * b / (a + b)));
  CHECK_THROWS_WITH_AS(mtl::DynamicWeightAverage(2, {}),
                       "DynamicWeightAverage: needs steps_per_epoch > 0 (the batches in an epoch), got 0", Error);
}

TEST_CASE("DWA: a task whose epoch loss is 0 (no labels that epoch) keeps a finite weight") {
  Tiny m(2);
  mtl::DynamicWeightAverage dwa(2, {.steps_per_epoch = 1});
  for (double loss : {0.0, 0.0, 0.0}) {
    m.zero_grad();
    (void)dwa.backward({sum(m.W) * loss, sum(m.W) * 0.25}, m);
  }
  for (double w : dwa.weights()) CHECK(std::isfinite(w));
  check_vec(dwa.weights(), {1, 1});  // ratios (1, 1): both unchanged
}

TEST_CASE("random loss weighting draws a fresh point of the simplex each step; its stream is saved") {
  Tiny m(3);
  mtl::RandomLossWeighting rlw(3, 5);
  auto step = [&] {
    m.zero_grad();
    (void)rlw.backward({sum(m.W), sum(m.W), sum(m.W)}, m);
    return rlw.weights();
  };
  const auto first = step();
  const nn::StateDict saved = rlw.state_dict();
  const auto second = step();
  CHECK(first[0] + first[1] + first[2] == doctest::Approx(1.0));
  CHECK(first != second);
  for (double w : second) CHECK(w > 0);
  mtl::RandomLossWeighting restored(3, 99);
  restored.load_state_dict(saved);
  m.zero_grad();
  (void)restored.backward({sum(m.W), sum(m.W), sum(m.W)}, m);
  CHECK(restored.weights() == second);
}

TEST_CASE("GradNorm: one step of the weights, by hand") {
  Tiny m(2);
  // L1 = 2 W0 and L2 = 4 W0, so |grad_W0 L1| = 2 and |grad_W0 L2| = 4.
  auto losses = [&] {
    const Tensor w0 = m.W.narrow(0, 0, 1).reshape({});
    return std::vector<Tensor>{w0 * 2.0, w0 * 4.0};
  };
  mtl::GradNorm gn(2, {m.W}, {.alpha = 1.5, .lr = 0.025});
  const Tensor joint = gn.backward(losses(), m);
  // First step: w = (1, 1), joint = 2 + 4; the network trains on it: dW0 = 6.
  CHECK(joint.item() == doctest::Approx(6.0));
  check_vec(gn.weights(), {1, 1});
  CHECK(grad_of(m.W) == std::vector<float>{6, 0});
  // Inverse rates are 1, so both targets are mean G = 3; dL_grad/dw = sign(G - target) * norm =
  // (-2, +4); Adam's first step moves each by lr against the gradient's sign: (1.025, 0.975),
  // which already sums to T = 2. The next step applies them.
  m.zero_grad();
  (void)gn.backward(losses(), m);
  check_vec(gn.weights(), {1.025, 0.975}, 1e-5);
}

TEST_CASE("GradNorm: a shared layer the losses do not reach is an error, not a silent no-op") {
  Tiny m(2);
  const Tensor unused = tensor({1.0f}).requires_grad_();
  mtl::GradNorm gn(2, {unused});
  CHECK_THROWS_WITH_AS(gn.backward({sum(m.W), sum(m.W)}, m),
                       doctest::Contains("GradNorm: task 0's loss does not reach the shared layer"), Error);
  CHECK_THROWS_WITH_AS(mtl::GradNorm(2, {}), "GradNorm: needs the shared layer's parameters (W)", Error);
}

TEST_CASE("PCGrad's weights from the Gramian, by hand") {
  mtl::PCGrad pc(2);
  // g1 = (1, 0), g2 = (-1, 1): g1.g2 = -1 < 0.
  // g1' = g1 - (-1 / 2) g2 = g1 + 0.5 g2; g2' = g2 - (-1 / 1) g1 = g2 + g1; sum = 2 g1 + 1.5 g2 = (0.5, 1.5).
  check_vec(pc.combine(mtl::gramian({{1, 0}, {-1, 1}}), {1, 1}), {2, 1.5});
  CHECK(pc.last_conflicts() == 2);
  check_vec(pc.combine(mtl::gramian({{1, 0}, {1, 1}}), {1, 1}), {1, 1});  // no conflict: plain sum
  CHECK(pc.last_conflicts() == 0);
}

TEST_CASE("MGDA finds the min-norm point of the convex hull, with LibMTL's normalisations") {
  mtl::MGDA mgda(2);
  check_vec(mgda.combine(mtl::gramian({{1, 0}, {0, 1}}), {1, 1}), {0.5, 0.5});
  // Parallel gradients: the shorter one is the min-norm point.
  check_vec(mgda.combine(mtl::gramian({{1, 0}, {2, 0}}), {1, 1}), {1, 0});
  // g1 = (1, 0), g2 = (0, 2): min |a g1 + (1-a) g2|^2 = a^2 + 4 (1-a)^2 at a = 4/5.
  const mtl::Gramian G = mtl::gramian({{1, 0}, {0, 2}});
  check_vec(mgda.combine(G, {2, 4}), {0.8, 0.2}, 1e-4);
  // l2: unit gradients (1, 0), (0, 1): a = (1/2, 1/2), on the raw gradients (1/2, 1/4).
  check_vec(mtl::MGDA(2, {.normalization = mtl::GradNormalization::l2}).combine(G, {2, 4}), {0.5, 0.25}, 1e-4);
  // loss: g / L = (1/2, 0), (0, 1/2): a = (1/2, 1/2), on the raw gradients (1/4, 1/8).
  check_vec(mtl::MGDA(2, {.normalization = mtl::GradNormalization::loss}).combine(G, {2, 4}), {0.25, 0.125}, 1e-4);
  // loss+: g / (L |g|) = (1/2, 0), (0, 1/4): min a^2/4 + (1-a)^2/16 at a = 1/5; raw (0.1, 0.1).
  check_vec(mtl::MGDA(2, {.normalization = mtl::GradNormalization::loss_plus}).combine(G, {2, 4}), {0.1, 0.1}, 1e-4);
}

TEST_CASE("CAGrad's weights: c = 0 is the mean gradient; symmetric case by hand") {
  const mtl::Gramian G = mtl::gramian({{1, 0}, {0, 1}});
  check_vec(mtl::CAGrad(2, 0.0).combine(G, {1, 1}), {0.5, 0.5}, 1e-5);
  // Orthogonal unit gradients: w = (1/2, 1/2), g_w = g0, so d = (1 + c) g0 / (1 + c^2).
  check_vec(mtl::CAGrad(2, 0.5).combine(G, {1, 1}), {0.6, 0.6}, 1e-4);
}

TEST_CASE("Gramian methods reject empty, ragged and non-finite input") {
  CHECK_THROWS_WITH_AS(mtl::gramian({}), "gramian: needs at least one vector", Error);
  CHECK_THROWS_WITH_AS(mtl::gramian({{1, 0}, {1}}), "gramian: vector 1 has 1 entries, vector 0 has 2", Error);
  CHECK_THROWS_WITH_AS(mtl::PCGrad(2).combine({}, {}), "PCGrad: needs the Gramian of at least one task gradient",
                       Error);
  CHECK_THROWS_WITH_AS(mtl::MGDA(2).combine({{1, 0}, {0}}, {1, 1}),
                       "MGDA: the Gramian is not square: row 1 has 1 entries for 2 tasks", Error);
  CHECK_THROWS_WITH_AS(mtl::CAGrad(2).combine({{1, 0}, {0, 1}}, {1}), "CAGrad: 1 loss values for a 2-task Gramian",
                       Error);
  CHECK_THROWS_WITH_AS(mtl::min_norm_weights({}), "min_norm_weights: needs the Gramian of at least one task gradient",
                       Error);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(mtl::min_norm_weights({{1, nan}, {nan, 1}}),
                       "min_norm_weights: the Gramian has a non-finite entry G[0][1] = nan", Error);
}

TEST_CASE("a gradient method combines the shared gradient and leaves task parameters their own") {
  Tiny m(2);
  Tensor a = m.head(0), b = m.head(1);
  auto losses = [&] {
    const Tensor w0 = m.W.narrow(0, 0, 1), w1 = m.W.narrow(0, 1, 1);
    return std::vector<Tensor>{sum(a * w0), sum(b * (w1 - w0) * 0.5)};
  };
  // L1 = a * W0: g1 = (a, 0) = (1, 0), dL1/da = W0 = 1.
  // L2 = b * (W1 - W0) / 2: g2 = (-1, 1) / 2 ... scaled to (-1, 1) by b = 2 below; dL2/db = 1.
  {
    NoGradGuard no_grad;
    b.data<float>()[0] = 2.0f;
  }
  mtl::PCGrad pc(2);
  (void)pc.backward(losses(), m);
  check_vec(pc.weights(), {2, 1.5});
  CHECK(grad_of(m.W) == std::vector<float>{0.5f, 1.5f});
  CHECK(a.grad().item() == 1.0);
  CHECK(b.grad().item() == 1.0);
  // Accumulates like backward(): a second call adds.
  (void)pc.backward(losses(), m);
  CHECK(grad_of(m.W) == std::vector<float>{1.0f, 3.0f});
}

TEST_CASE("MGDA-UB weighs tasks by gradients at the model's shared representation") {
  Tiny m(2);
  (void)m(Tensor());
  // L1 = z0 and L2 = z1: orthogonal unit gradients at z, so a = (1/2, 1/2).
  const Tensor l1 = sum(m.z.narrow(0, 0, 1)), l2 = sum(m.z.narrow(0, 1, 1));
  mtl::MGDA mgda(2, {.upper_bound = true});
  (void)mgda.backward({l1, l2}, m);
  check_vec(mgda.weights(), {0.5, 0.5});
  // The network trains on 0.5 L1 + 0.5 L2: dW = 2 * (0.5, 0.5).
  CHECK(grad_of(m.W) == std::vector<float>{1, 1});
  Tiny fresh(2);
  CHECK_THROWS_WITH_AS(mgda.backward({sum(fresh.W), sum(fresh.W)}, fresh),
                       doctest::Contains("MultiTaskModel: no shared representation recorded"), Error);
}

TEST_CASE("balancer state round-trips through a checkpoint file and continues exactly") {
  auto run = [](mtl::Balancer& balancer, Tiny& m, int steps) {
    for (int i = 0; i < steps; ++i) {
      m.zero_grad();
      const Tensor w0 = m.W.narrow(0, 0, 1).reshape({}), w1 = m.W.narrow(0, 1, 1).reshape({});
      (void)balancer.backward({w0 * w0 * (1.0 + i), w1 * 0.5}, m);
    }
  };
  const std::string path = "balancer_state_test.ckpt";
  std::vector<std::unique_ptr<mtl::Balancer>> a, b;
  Tiny ma(2), mb(2);
  auto make = [&](std::vector<std::unique_ptr<mtl::Balancer>>& out, Tiny& m) {
    out.push_back(std::make_unique<mtl::UncertaintyWeighting>(m.tasks(), mtl::UncertaintyOptions{.lr = 0.05}));
    out.push_back(std::make_unique<mtl::DynamicWeightAverage>(2, mtl::DWAOptions{.steps_per_epoch = 2}));
    out.push_back(std::make_unique<mtl::RandomLossWeighting>(2, 7));
    out.push_back(std::make_unique<mtl::GradNorm>(2, std::vector<Tensor>{m.W}));
    out.push_back(std::make_unique<mtl::PCGrad>(2, 3));
    out.push_back(std::make_unique<mtl::IMTLL>(2, mtl::IMTLLOptions{.lr = 0.05}));
    out.push_back(std::make_unique<mtl::STCH>(2, mtl::STCHOptions{.steps_per_epoch = 1, .warmup_epochs = 2}));
  };
  make(a, ma);
  make(b, mb);
  for (std::size_t k = 0; k < a.size(); ++k) {
    CAPTURE(a[k]->name());
    run(*a[k], ma, 5);
    nn::Checkpoint saved;
    saved.extra["balancer"] = a[k]->state_dict();
    nn::write_checkpoint(path, saved);
    b[k]->load_state_dict(nn::read_checkpoint(path).extra.at("balancer"));
    run(*a[k], ma, 3);
    run(*b[k], mb, 3);
    CHECK(a[k]->weights() == b[k]->weights());
  }
  std::remove(path.c_str());
  // A state of another method, or of another task count, is refused before anything changes.
  CHECK_THROWS_WITH_AS(b[0]->load_state_dict(a[1]->state_dict()),
                       "UncertaintyWeighting: the state is of a DynamicWeightAverage balancer", Error);
  CHECK_THROWS_WITH_AS(mtl::PCGrad(3).load_state_dict(a[4]->state_dict()),
                       "PCGrad: the state is of 2 tasks, the balancer of 3", Error);
}

// The common two-task example of ../shared/reference/mtl-methods-2.md: g1 = (1, 0), g2 = (-2, 1),
// and TorchJD's pinned J = [[-4, 1, 1], [6, 1, 1]] as a second vector.
namespace {
const mtl::Gramian kCommon = {{1, -2}, {-2, 5}};
const mtl::Gramian kTorchJD = {{18, -22}, {-22, 38}};
const std::vector<double> kOnes = {1, 1};
}  // namespace

TEST_CASE("UPGrad: each share projected onto the dual cone, by the reference's numbers") {
  // Without regularisation: rows v = (0.5, 0.2) and (1.0, 0.5), so w = (1.5, 0.7); d = (0.1, 0.7)
  // conflicts with neither gradient (g1.d = 0.1, g2.d = 0.5).
  check_vec(mtl::UPGrad(2, {.norm_eps = 0, .reg_eps = 0}).combine(kCommon, kOnes), {1.5, 0.7}, 1e-9);
  check_vec(mtl::UPGrad(2).combine(kCommon, kOnes), {1.49940, 0.69998}, 1e-5);
  check_vec(mtl::UPGrad(2).combine(kTorchJD, kOnes), {1.1109, 0.7894}, 1e-4);
  // Tiny gradients (trace below norm_eps): the plain mean.
  check_vec(mtl::UPGrad(2).combine({{1e-6, 0}, {0, 1e-6}}, kOnes), {0.5, 0.5}, 1e-9);
  // Three tasks, none conflicting: the projections change nothing.
  check_vec(mtl::UPGrad(3, {.norm_eps = 0, .reg_eps = 0}).combine(mtl::gramian({{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}),
                                                                    {1, 1, 1}),
            {1.0 / 3, 1.0 / 3, 1.0 / 3}, 1e-12);
  CHECK_THROWS_WITH_AS(mtl::UPGrad(2, {.norm_eps = -1}),
                       "UPGrad: norm_eps and reg_eps must be non-negative, got -1 and 0.0001", Error);
}

TEST_CASE("DualProj: the mean projected onto the dual cone") {
  check_vec(mtl::DualProj(2, {.norm_eps = 0, .reg_eps = 0}).combine(kCommon, kOnes), {1.0, 0.5}, 1e-9);
  check_vec(mtl::DualProj(2).combine(kCommon, kOnes), {0.99940, 0.5}, 1e-5);
  check_vec(mtl::DualProj(2).combine(kTorchJD, kOnes), {0.6109, 0.5000}, 1e-4);
}

TEST_CASE("IMTL-G: equal projections on every unit gradient") {
  const std::vector<double> w = mtl::IMTLG(2).combine(kCommon, kOnes);
  check_vec(w, {0.690983, 0.309017}, 1e-6);
  // d = w1 g1 + w2 g2 = (0.072949, 0.309017): its projections on u1 and u2 agree.
  const double d0 = w[0] - 2 * w[1], d1 = w[1];
  CHECK(d0 == doctest::Approx((-2 * d0 + d1) / std::sqrt(5.0)));
  check_vec(mtl::IMTLG(2).combine(kTorchJD, kOnes), {0.5923, 0.4077}, 1e-4);
  // Here sum(v) = -2.04: every projection would be negative, raising all three losses; the mean instead.
  const mtl::Gramian bad = mtl::gramian({{0, -1, 0}, {2, -3, 0}, {-3, -1, 2}});
  check_vec(mtl::IMTLG(3).combine(bad, {1, 1, 1}), {1.0 / 3, 1.0 / 3, 1.0 / 3}, 1e-12);
}

TEST_CASE("Aligned-MTL: orthogonal aligned gradients of equal norm") {
  check_vec(mtl::AlignedMTL(2).combine(kCommon, kOnes), {1.171573, 0.585786}, 1e-6);
  check_vec(mtl::AlignedMTL(2, {.mean_preference = true}).combine(kCommon, kOnes), {0.585786, 0.292893}, 1e-6);
  check_vec(mtl::AlignedMTL(2, {.mean_preference = true}).combine(kTorchJD, kOnes), {0.5591, 0.4083}, 1e-4);
  check_vec(mtl::AlignedMTL(2).combine({{0, 0}, {0, 0}}, kOnes), {1, 1}, 0);  // rank 0: B = I
}

TEST_CASE("GLS: the geometric mean's weights GLS / (T L_t)") {
  Tiny m(2);
  mtl::GeometricLossStrategy gls(2);
  // L = (2, 0.5): GLS = 1, weights (0.25, 1.0).
  (void)gls.backward({sum(m.W) * 0.5, sum(m.W) * 0.125}, m);
  check_vec(gls.weights(), {0.25, 1.0}, 1e-12);
  CHECK(grad_of(m.W) == std::vector<float>{0.25f, 0.25f});  // 0.25 * 0.5 + 1 * 0.125
}

TEST_CASE("IMTL-L: e^s L - s, its scales stepped toward -log L") {
  Tiny m(2);
  mtl::IMTLL imtl(2, {.lr = 0.1});
  // L = (2, 0.5), s = 0: weights 1; d/ds = e^0 L - 1 = (1, -0.5); Adam's first step moves by -lr sign.
  (void)imtl.backward({sum(m.W) * 0.5, sum(m.W) * 0.125}, m);
  check_vec(imtl.weights(), {1, 1});
  const std::vector<float> s = imtl.scales().to_vector<float>();
  CHECK(s[0] == doctest::Approx(-0.1));
  CHECK(s[1] == doctest::Approx(0.1));
}

TEST_CASE("STCH: log losses while warming up, then smooth Tchebycheff against the nadir") {
  Tiny m(2);
  auto run = [&](mtl::STCH& stch, double a, double b) {
    m.zero_grad();
    (void)stch.backward({sum(m.W) * (a / 4), sum(m.W) * (b / 4)}, m);
    return stch.weights();
  };
  mtl::STCH stch(2, {.steps_per_epoch = 2, .warmup_epochs = 1});
  check_vec(run(stch, 1.0, 0.5), {1.0, 2.0}, 1e-9);  // 1 / L while warming up
  check_vec(run(stch, 3.0, 1.5), {1.0 / 3, 1.0 / 1.5}, 1e-9);
  // Nadir n = (2, 1); L = (1, 0.8): T softmax(log(L / n)) / L = (0.769231, 1.538462).
  check_vec(run(stch, 1.0, 0.8), {0.769231, 1.538462}, 1e-6);
  mtl::STCH sharp(2, {.steps_per_epoch = 1, .warmup_epochs = 1, .mu = 0.5});
  run(sharp, 2.0, 1.0);
  check_vec(run(sharp, 1.0, 0.8), {0.561798, 1.797753}, 1e-6);
  CHECK_THROWS_WITH_AS(mtl::STCH(2, {}), "STCH: needs steps_per_epoch > 0 (the batches in an epoch), got 0", Error);
}
