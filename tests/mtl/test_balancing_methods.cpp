// Nash-MTL, GradVac, GradDrop, DB-MTL and FAMO against the worked numbers of
// ../shared/reference/mtl-methods-2.md (sections 4, 5, 6, 8, 10), through the one Balancer interface.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>

#include "ladon.h"
#include "test_balancing_util.h"

using namespace ladon;
using ladon::testing::check_vec;
using ladon::testing::grad_of;
using ladon::testing::Tiny;

namespace {
// The reference's common two-task example: g1 = (1, 0), g2 = (-2, 1).
const mtl::Gramian kCommon = {{1, -2}, {-2, 5}};
const std::vector<double> kOnes = {1, 1};

Tensor entry(const Tensor& w, std::int64_t k) { return w.narrow(0, k, 1).reshape({}); }

// With heads a = b = 1 on Tiny's W = (1, 3): L1 = a W0 (g1 = (1, 0)), L2 = b (W1 - 2 W0) (g2 = (-2, 1)),
// each times `scale`; dL1/da = W0 = 1 and dL2/db = W1 - 2 W0 = 1.
std::vector<Tensor> common_losses(Tiny& m, double scale = 1.0) {
  const Tensor w0 = entry(m.W, 0), w1 = entry(m.W, 1);
  return {sum(m.head(0) * w0) * scale, sum(m.head(1) * (w1 - w0 * 2.0)) * scale};
}

// alpha_t (G alpha)_t for each t.
std::vector<double> bargaining_products(const mtl::Gramian& G, const std::vector<double>& a) {
  std::vector<double> out(a.size(), 0.0);
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (std::size_t j = 0; j < a.size(); ++j) out[i] += G[i][j] * a[j];
    out[i] *= a[i];
  }
  return out;
}
}  // namespace

TEST_CASE("Nash-MTL: alpha_t (G alpha)_t = 1, by the reference's numbers") {
  mtl::NashMTL nash(2);
  const std::vector<double> a = nash.combine(kCommon, kOnes);
  check_vec(a, {3.077684, 1.376382}, 1e-6);
  check_vec(bargaining_products(kCommon, a), {1, 1}, 1e-6);  // up to the 1e-8 I added to G / |G|_F
  CHECK(nash.last_newton_steps() > 0);
  // Warm-started from that solution, the same Gramian needs no Newton step.
  check_vec(nash.combine(kCommon, kOnes), a, 1e-12);
  CHECK(nash.last_newton_steps() == 0);
  // Three tasks, no worked numbers: the defining equations hold.
  const mtl::Gramian G3 = mtl::gramian({{1, 0.5, -1, 2}, {-2, 1, 0, 0.5}, {0.3, 0.3, 3, -1}});
  mtl::NashMTL three(3);
  check_vec(bargaining_products(G3, three.combine(G3, {1, 1, 1})), {1, 1, 1}, 1e-6);  // G^ + 1e-8 I
  CHECK(three.last_newton_steps() < 20);
  // A zero Gramian (no gradient) keeps the last alpha; a zero task gradient gets a large, finite weight.
  check_vec(nash.combine({{0, 0}, {0, 0}}, kOnes), a, 0);
  for (double w : mtl::NashMTL(2).combine(mtl::gramian({{1, 0}, {0, 0}}), kOnes)) CHECK(std::isfinite(w));
}

TEST_CASE("Nash-MTL: alpha-weighted heads and the shared update clipped to max_norm, as NashRef") {
  Tiny m(2);
  mtl::NashMTL nash(2);
  (void)nash.backward(common_losses(m), m);
  check_vec(nash.weights(), {3.077684, 1.376382}, 1e-6);
  // d = (0.324920, 1.376382), |d| = sqrt(2): clipped to norm 1.
  const std::vector<float> d = grad_of(m.W);
  check_vec({d[0], d[1]}, {0.229753, 0.973248}, 1e-5);
  CHECK(m.head(0).grad().item() == doctest::Approx(3.077684).epsilon(1e-6));
  CHECK(m.head(1).grad().item() == doctest::Approx(1.376382).epsilon(1e-6));
  // TorchJD's pinned J = [[-4, 1, 1], [6, 1, 1]]: the update (0.0542, 0.7061, 0.7061).
  Tiny j(2, {1, 1, 1});
  auto w = [&](std::int64_t k) { return entry(j.W, k); };
  (void)nash.backward({w(0) * -4.0 + w(1) + w(2), w(0) * 6.0 + w(1) + w(2)}, j);
  const std::vector<float> u = grad_of(j.W);
  check_vec({u[0], u[1], u[2]}, {0.0542, 0.7061, 0.7061}, 1e-4);
  // Without clipping the shared gradient is d itself.
  Tiny free(2);
  mtl::NashMTL unclipped(2, {.max_norm = 0});
  (void)unclipped.backward(common_losses(free), free);
  const std::vector<float> raw = grad_of(free.W);
  check_vec({raw[0], raw[1]}, {0.324920, 1.376382}, 1e-5);
}

TEST_CASE("Nash-MTL: weights recomputed every update_every calls, reused between") {
  Tiny m(2);
  mtl::NashMTL nash(2, {.update_every = 2});
  (void)nash.backward(common_losses(m), m);
  const std::vector<double> first = nash.weights();
  // Call 1 reuses alpha on losses twice as large: one backward, the heads get 2 alpha, and the
  // shared update 2 d is clipped to the same unit vector.
  m.zero_grad();
  (void)nash.backward(common_losses(m, 2.0), m);
  CHECK(nash.weights() == first);
  CHECK(m.head(0).grad().item() == doctest::Approx(2 * first[0]).epsilon(1e-6));
  const std::vector<float> d = grad_of(m.W);
  check_vec({d[0], d[1]}, {0.229753, 0.973248}, 1e-5);
  // Call 2 recomputes: G is 4 times larger, so alpha halves.
  m.zero_grad();
  (void)nash.backward(common_losses(m, 2.0), m);
  check_vec(nash.weights(), {first[0] / 2, first[1] / 2}, 1e-6);
  CHECK_THROWS_WITH_AS(mtl::NashMTL(2, {.update_every = 0}), "NashMTL: update_every must be at least 1, got 0", Error);
  CHECK_THROWS_WITH_AS(mtl::NashMTL(2, {.max_norm = -1}),
                       "NashMTL: max_norm must be non-negative (0: no clipping), got -1", Error);
  CHECK_THROWS_WITH_AS(mtl::NashMTL(3).combine(kCommon, kOnes), "NashMTL: a 2-task Gramian for 3 tasks", Error);
}

TEST_CASE("GradVac: the EMA targets of the cosines, two steps by the reference's numbers") {
  mtl::GradVac vac(2, {.beta = 0.5});
  // Step 1 (targets 0, PCGrad's projection): g'1 = g1 + 0.4 g2, g'2 = g2 + 2 g1; d = (0.2, 1.4).
  check_vec(vac.combine(kCommon, kOnes), {3.0, 1.4}, 1e-7);
  CHECK(vac.target(0, 1) == doctest::Approx(-0.447214).epsilon(1e-6));
  CHECK(vac.target(1, 0) == doctest::Approx(-0.447214).epsilon(1e-6));
  // Step 2: c = 0.3 and 1.5, d = (-0.1, 1.3); targets -0.670820.
  check_vec(vac.combine(kCommon, kOnes), {2.5, 1.3}, 1e-6);
  CHECK(vac.target(0, 1) == doctest::Approx(-0.670820).epsilon(1e-6));
  // Gradients that agree more than the target are left alone: the plain sum.
  mtl::GradVac agree(2);
  check_vec(agree.combine(mtl::gramian({{1, 0}, {1, 1}}), kOnes), {1, 1}, 1e-12);
  CHECK(agree.target(0, 1) == doctest::Approx(0.5 * std::sqrt(0.5)));
  CHECK_THROWS_WITH_AS(mtl::GradVac(2, {.beta = 0}), "GradVac: beta must be in (0, 1], got 0", Error);
  CHECK_THROWS_WITH_AS(mtl::GradVac(2).combine({{1}}, {1}), "GradVac: a 1-task Gramian for 2 tasks", Error);
}

TEST_CASE("GradDrop: sign purity and the masks, by the reference's numbers") {
  mtl::GradDrop drop(2);
  // H = (0.5, -1), r1 = (1, 0.5), r2 = (-3, 0.5), U = (0.6, 0.3): P = (0.25, 0), masks (0, 1) and (1, 1).
  const Tensor h = tensor({0.5f, -1.0f}, {1, 2});
  const std::vector<Tensor> r = {tensor({1.0f, 0.5f}, {1, 2}), tensor({-3.0f, 0.5f}, {1, 2})};
  CHECK(drop.drop(h, r, {0.6, 0.3}).to_vector<float>() == std::vector<float>{-3, 1});
  // Leak 1 keeps everything: the plain sum.
  CHECK(mtl::GradDrop(2, {.leak = 1}).drop(h, r, {0.6, 0.3}).to_vector<float>() == std::vector<float>{-2, 1});
  // U below P = 0.25 at the first feature keeps the positive side there.
  CHECK(drop.drop(h, r, {0.1, 0.3}).to_vector<float>() == std::vector<float>{1, 1});
  // Two rows: the sign sums run over the batch, the draw is one per feature.
  const Tensor h2 = tensor({1.0f, -1.0f}, {2, 1});
  const std::vector<Tensor> r2 = {tensor({2.0f, 1.0f}, {2, 1}), tensor({-1.0f, -1.0f}, {2, 1})};
  // s1 = 2 - 1 = 1, s2 = -1 + 1 = 0: P = 1 keeps task 1, drops task 2 (s = 0 has no sign).
  CHECK(drop.drop(h2, r2, {0.99}).to_vector<float>() == std::vector<float>{2, 1});
  CHECK_THROWS_WITH_AS(drop.drop(tensor({1.0f, 2.0f}), r, {0.5}),
                       "GradDrop: the representation has shape [2]; expected float32 [batch, features...]", Error);
  CHECK_THROWS_WITH_AS(drop.drop(h, {r[0]}, {0.5, 0.5}), "GradDrop: 1 task gradients for 2 tasks", Error);
  CHECK_THROWS_WITH_AS(drop.drop(h, {r[0], h2}, {0.5, 0.5}),
                       "GradDrop: task 1's gradient has shape [2, 1], the representation [1, 2]", Error);
  CHECK_THROWS_WITH_AS(drop.drop(h, r, {0.5}), "GradDrop: 1 uniform draws for 2 features", Error);
  CHECK_THROWS_WITH_AS(mtl::GradDrop(2, {.leak = 2}), "GradDrop: leak must be in [0, 1], got 2", Error);
}

TEST_CASE("GradDrop through a model: masked representation gradient to the trunk, heads their own") {
  // z = 2 W = (2, 6, 4) as one sample; every H > 0, so s_t = r_t.
  Tiny m(2, {1, 3, 2}, /*batch_dim=*/true);
  (void)m(Tensor());
  auto z = [&](std::int64_t k) { return m.z.narrow(1, k, 1).reshape({}); };
  // r1 = a (1, -1, 1), r2 = b (2, -0.5, -1): feature 0 all positive (kept), 1 all negative (kept),
  // 2 conflicting with P = 1/2: task 1's part survives when U < 1/2, task 2's otherwise.
  const std::vector<Tensor> losses = {sum(m.head(0) * (z(0) - z(1) + z(2))),
                                      sum(m.head(1) * (z(0) * 2.0 - z(1) * 0.5 - z(2)))};
  mtl::GradDrop drop(2, {}, 21);
  (void)drop.backward(losses, m);
  Generator same(21);
  const double u2 = (same.uniform(), same.uniform(), same.uniform());  // one draw per feature, in order
  const float third = u2 < 0.5 ? 1.0f : -1.0f;
  CHECK(grad_of(m.W) == std::vector<float>{2 * 3.0f, 2 * -1.5f, 2 * third});  // dz/dW = 2
  CHECK(m.head(0).grad().item() == doctest::Approx(2 - 6 + 4));                  // dL1/da, unmasked
  CHECK(m.head(1).grad().item() == doctest::Approx(4 - 3 - 4));
  check_vec(drop.weights(), kOnes, 0);
  Tiny flat(2);
  (void)flat(Tensor());
  CHECK_THROWS_WITH_AS(drop.backward({sum(flat.z), sum(flat.z)}, flat),
                       "GradDrop: representation 0 has shape [2]; expected [batch, features...]", Error);
}

TEST_CASE("DB-MTL: log losses, EMA of their gradients, every task at the largest norm") {
  Tiny m(2);
  // L1 = exp(a W0 - 1), L2 = exp(b (W1 - 2 W0) - 1): both 1, with grad log L = the common g's.
  auto losses = [&] {
    const Tensor w0 = entry(m.W, 0), w1 = entry(m.W, 1);
    return std::vector<Tensor>{exp(sum(m.head(0) * w0) - 1.0), exp(sum(m.head(1) * (w1 - w0 * 2.0)) - 1.0)};
  };
  mtl::DBMTL db(2, {.beta = 0.9});
  const Tensor objective = db.backward(losses(), m);
  CHECK(objective.item() == doctest::Approx(2 * std::log(1 + 1e-8)));
  // Step 1: m = 0.1 h, a = (2.236068, 1), update (0.023607, 0.1).
  check_vec(db.weights(), {2.236068, 1.0}, 1e-6);
  std::vector<float> d = grad_of(m.W);
  check_vec({d[0], d[1]}, {0.023607, 0.1}, 1e-6);
  // The heads get their own grad log L, unweighted: W0 = 1 and W1 - 2 W0 = 1.
  CHECK(m.head(0).grad().item() == doctest::Approx(1.0));
  CHECK(m.head(1).grad().item() == doctest::Approx(1.0));
  // Step 2: m = 0.19 h, update (0.044853, 0.19).
  m.zero_grad();
  (void)db.backward(losses(), m);
  d = grad_of(m.W);
  check_vec({d[0], d[1]}, {0.044853, 0.19}, 1e-6);
  // Its averages belong to one model's shared parameters.
  Tiny wider(2, {1, 2, 3});
  CHECK_THROWS_WITH_AS(db.backward({sum(wider.W), sum(wider.W)}, wider),
                       "DBMTL: its gradient averages are [2, 2] but the model's task gradients are [2, 3]", Error);
  CHECK_THROWS_WITH_AS(db.backward({sum(m.W) * -1.0, sum(m.W)}, m),
                       "DBMTL: task 0 ('t0') loss is -4; the log-loss balance needs non-negative losses", Error);
  CHECK_THROWS_WITH_AS(mtl::DBMTL(2, {.beta = 1}), "DBMTL: beta must be in [0, 1), got 1", Error);
}

TEST_CASE("FAMO: weights z_t / (c D_t); the logits stepped from the loss change after the step") {
  Tiny m(2);
  auto losses = [&] { return std::vector<Tensor>{sum(m.W) * 0.5, sum(m.W) * 0.125}; };  // (2, 0.5)
  mtl::FAMO famo(2);
  CHECK(famo.needs_losses_after_step());
  (void)famo.backward(losses(), m);
  // xi = 0: z = (0.5, 0.5), c = 1.25, weights (0.2, 0.8); dW = 0.2 * 0.5 + 0.8 * 0.125.
  check_vec(famo.weights(), {0.2, 0.8}, 1e-7);
  CHECK(grad_of(m.W) == std::vector<float>{0.2f, 0.2f});
  // Losses after the step (1.9, 0.4): d/dxi = (-0.042963, 0.042963); Adam's first step: (0.025, -0.025).
  famo.after_step({scalar(1.9f), scalar(0.4f)});
  const std::vector<float> xi = famo.logits().to_vector<float>();
  CHECK(xi[0] == doctest::Approx(0.025));
  CHECK(xi[1] == doctest::Approx(-0.025));
  m.zero_grad();
  (void)famo.backward(losses(), m);
  check_vec(famo.weights(), {0.20812, 0.79188}, 1e-5);

  CHECK_THROWS_WITH_AS(famo.backward(losses(), m),
                       doctest::Contains("FAMO: backward() was called again without after_step()"), Error);
  CHECK_THROWS_WITH_AS(famo.after_step({scalar(1.0f)}), "FAMO: 1 task losses after the step for 2 tasks", Error);
  CHECK_THROWS_WITH_AS(famo.after_step({scalar(1.0f), scalar(std::numeric_limits<float>::quiet_NaN())}),
                       "FAMO: task 1 loss after the step is nan", Error);
  CHECK_THROWS_WITH_AS(mtl::FAMO(2).after_step({scalar(1.0f), scalar(1.0f)}),
                       "FAMO: after_step() was called without a backward() before it", Error);
  mtl::StaticWeighting equal = mtl::StaticWeighting::equal(2);
  CHECK_FALSE(equal.needs_losses_after_step());
  CHECK_THROWS_WITH_AS(equal.after_step({scalar(1.0f), scalar(1.0f)}),
                       "StaticWeighting: after_step() was called, but this balancer does not use the losses after the step",
                       Error);
  mtl::FAMO bounded(2, {.min_losses = {3, 0}});
  CHECK_THROWS_WITH_AS(bounded.backward(losses(), m),
                       "FAMO: task 0 loss is 2, not above its lower bound 3 (set min_losses to a true lower bound)", Error);
  CHECK_THROWS_WITH_AS(mtl::FAMO(2, {.min_losses = {1}}), "FAMO: 1 min_losses for 2 tasks", Error);
}

TEST_CASE("FAMO next_batch: the logits stepped from the next backward's losses, before it weighs; no after_step") {
  Tiny m(2);
  auto losses = [&](double a, double b) { return std::vector<Tensor>{sum(m.W) * (a / 4), sum(m.W) * (b / 4)}; };
  mtl::FAMO famo(2, {.update = mtl::FAMOUpdate::next_batch});
  CHECK_FALSE(famo.needs_losses_after_step());
  (void)famo.backward(losses(2, 0.5), m);
  check_vec(famo.weights(), {0.2, 0.8}, 1e-7);  // as same_batch: xi = 0 until an update
  CHECK(famo.logits().to_vector<float>() == std::vector<float>{0.0f, 0.0f});
  // The next batch's losses (1.9, 0.4) are the after-losses of the step between: the same Adam
  // step as same_batch's (0.025, -0.025), then z = (0.512497, 0.487503) weighs them: c = z0 / 1.9
  // + z1 / 0.4 = 1.488492, weights (0.181214, 0.818786).
  m.zero_grad();
  (void)famo.backward(losses(1.9, 0.4), m);
  const std::vector<float> xi = famo.logits().to_vector<float>();
  CHECK(xi[0] == doctest::Approx(0.025));
  CHECK(xi[1] == doctest::Approx(-0.025));
  check_vec(famo.weights(), {0.181214, 0.818786}, 1e-5);
  CHECK_THROWS_WITH_AS(famo.after_step({scalar(1.0f), scalar(1.0f)}),
                       "FAMO: after_step() was called, but this balancer does not use the losses after the step",
                       Error);
  // A checkpoint between two backwards keeps the last losses: the resumed run weighs as the first.
  mtl::FAMO resumed(2, {.update = mtl::FAMOUpdate::next_batch});
  resumed.load_state_dict(famo.state_dict());
  m.zero_grad();
  (void)famo.backward(losses(1.5, 0.45), m);
  m.zero_grad();
  (void)resumed.backward(losses(1.5, 0.45), m);
  CHECK(resumed.weights() == famo.weights());
  CHECK(resumed.logits().to_vector<float>() == famo.logits().to_vector<float>());
  // The two updates' states do not mix.
  CHECK_THROWS_WITH_AS(mtl::FAMO(2).load_state_dict(famo.state_dict()),
                       "FAMO: the state is of a next_batch FAMO, the balancer updates from the same batch", Error);
  CHECK_THROWS_WITH_AS(resumed.load_state_dict(mtl::FAMO(2).state_dict()),
                       "FAMO: the state is of a same_batch FAMO, the balancer updates from the next batch", Error);
}

TEST_CASE("new balancers' state round-trips through a checkpoint file and continues exactly") {
  // Losses through the representation z = 2 W ([1, 2]) so GradDrop's masks apply; the second one
  // conflicts with the first at feature 0, so its draws matter.
  auto run = [](mtl::Balancer& balancer, Tiny& m, int steps) {
    for (int i = 0; i < steps; ++i) {
      m.zero_grad();
      (void)m(Tensor());
      const Tensor z0 = m.z.narrow(1, 0, 1).reshape({}), z1 = m.z.narrow(1, 1, 1).reshape({});
      (void)balancer.backward({z0 * z0 * (0.25 * (1 + i)), (z1 - z0) * (0.25 + 0.1 * i)}, m);
      if (balancer.needs_losses_after_step())
        balancer.after_step({scalar(static_cast<float>(0.9 * (1 + i))), scalar(static_cast<float>(0.1 + 0.04 * i))});
    }
  };
  const std::string path = "balancer_methods_state_test.ckpt";
  auto make = [](std::vector<std::unique_ptr<mtl::Balancer>>& out) {
    out.push_back(std::make_unique<mtl::NashMTL>(2, mtl::NashMTLOptions{.update_every = 2}));
    out.push_back(std::make_unique<mtl::GradVac>(2, mtl::GradVacOptions{}, 5));
    out.push_back(std::make_unique<mtl::GradDrop>(2, mtl::GradDropOptions{}, 6));
    out.push_back(std::make_unique<mtl::DBMTL>(2, mtl::DBMTLOptions{.sigma = 0.5}));
    out.push_back(std::make_unique<mtl::FAMO>(2));
    out.push_back(std::make_unique<mtl::FAMO>(2, mtl::FAMOOptions{.update = mtl::FAMOUpdate::next_batch}));
  };
  std::vector<std::unique_ptr<mtl::Balancer>> a, b;
  make(a);
  make(b);
  for (std::size_t k = 0; k < a.size(); ++k) {
    CAPTURE(a[k]->name());
    Tiny ma(2, {1, 3}, true), mb(2, {1, 3}, true);
    run(*a[k], ma, 5);
    nn::Checkpoint saved;
    saved.extra["balancer"] = a[k]->state_dict();
    nn::write_checkpoint(path, saved);
    b[k]->load_state_dict(nn::read_checkpoint(path).extra.at("balancer"));
    run(*a[k], ma, 3);
    run(*b[k], mb, 3);
    CHECK(a[k]->weights() == b[k]->weights());
    CHECK(grad_of(ma.W) == grad_of(mb.W));
  }
  std::remove(path.c_str());
  CHECK_THROWS_WITH_AS(mtl::NashMTL(2, {.update_every = 3}).load_state_dict(a[0]->state_dict()),
                       "NashMTL: the state updates every 2 calls, the balancer every 3", Error);
  nn::StateDict broken = a[3]->state_dict();
  broken.set("averages", zeros({3, 2}));
  CHECK_THROWS_WITH_AS(b[3]->load_state_dict(broken),
                       "DBMTL: the state's gradient averages are [3, 2]; expected [2, shared parameters]", Error);
  CHECK_THROWS_WITH_AS(mtl::FAMO(3).load_state_dict(a[4]->state_dict()), "FAMO: the state is of 2 tasks, the balancer of 3",
                       Error);
}
