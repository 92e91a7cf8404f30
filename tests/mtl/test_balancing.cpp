// Loss balancers and gradient methods against their formulas on cases small enough to do by hand.
#include <doctest/doctest.h>

#include <cmath>

#include "ladon.h"
#include "mtl/gradient_methods.h"
#include "mtl/loss_weighting.h"

using namespace ladon;

namespace {
void check_vec(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-6) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(std::fabs(got[i] - want[i]) <= tol * std::max(1.0, std::fabs(want[i])));
  }
}
}  // namespace

TEST_CASE("uncertainty weighting: regression and classification forms") {
  mtl::UncertaintyWeighting u({mtl::TaskKind::regression, mtl::TaskKind::classification});
  Tensor l1 = scalar(2.0).requires_grad_(), l2 = scalar(3.0).requires_grad_();
  const Tensor total = u({l1, l2});
  // s = 0: 0.5 * e^0 * 2 + 0 + 1 * e^0 * 3 + 0 = 4
  CHECK(total.item() == doctest::Approx(4.0));
  total.backward();
  // d/ds: -0.5 e^{-s} L1 + 0.5 = -0.5; -e^{-s} L2 + 0.5 = -2.5
  const std::vector<float> g = u.log_vars().grad().to_vector<float>();
  CHECK(g[0] == doctest::Approx(-0.5));
  CHECK(g[1] == doctest::Approx(-2.5));
  CHECK(l1.grad().item() == doctest::Approx(0.5));
  check_vec(u.weights(), {0.5, 1.0});
  CHECK(u.parameters().size() == 1);
}

TEST_CASE("DWA: ones for two epochs, then K softmax(L(t-1)/L(t-2)/T)") {
  mtl::DynamicWeightAverage dwa(2, 2.0);
  check_vec(dwa.weights(), {1, 1});
  dwa.end_epoch({1.0, 1.0});
  check_vec(dwa.weights(), {1, 1});
  dwa.end_epoch({0.5, 0.9});
  // w = (0.5, 0.9); 2 * softmax(0.25, 0.45) = 2 * (e^.25, e^.45) / (e^.25 + e^.45)
  const double a = std::exp(0.25), b = std::exp(0.45);
  check_vec(dwa.weights(), {2 * a / (a + b), 2 * b / (a + b)});
  const Tensor total = dwa({scalar(1.0), scalar(2.0)});
  CHECK(total.item() == doctest::Approx(2 * a / (a + b) + 4 * b / (a + b)));
  CHECK_THROWS_WITH_AS(dwa.end_epoch({1.0}), "DynamicWeightAverage: 1 epoch losses for 2 tasks", Error);
}

TEST_CASE("random loss weighting draws a fresh point of the simplex each step") {
  mtl::RandomLossWeighting rlw(3, 5);
  (void)rlw({scalar(1.0), scalar(1.0), scalar(1.0)});
  const auto first = rlw.weights();
  (void)rlw({scalar(1.0), scalar(1.0), scalar(1.0)});
  const auto second = rlw.weights();
  CHECK(first[0] + first[1] + first[2] == doctest::Approx(1.0));
  CHECK(first != second);
  for (double w : second) CHECK(w > 0);
}

TEST_CASE("GradNorm: one step of the weights, by hand") {
  // Shared W = 1; L1 = 2W and L2 = 4W, so |grad_W L1| = 2 and |grad_W L2| = 4.
  Tensor W = tensor({1.0f}).requires_grad_();
  mtl::GradNorm gn(2, {W}, {.alpha = 1.5, .lr = 0.025});
  const Tensor joint = gn({W * 2.0, W * 4.0});
  // First step: w = (1, 1), joint = 2 + 4; inverse rates are 1, so both targets are mean G = 3.
  CHECK(joint.item() == doctest::Approx(6.0));
  // dL_grad/dw = sign(G - target) * norm = (-2, +4); Adam's first step moves each by lr against
  // the gradient's sign: (1.025, 0.975), which already sums to T = 2.
  check_vec(gn.weights(), {1.025, 0.975}, 1e-5);
  // The network's graph is intact for the caller's backward.
  joint.backward();
  CHECK(W.grad().item() == doctest::Approx(6.0));
}

TEST_CASE("PCGrad projects conflicting gradients, by hand") {
  mtl::PCGrad pc;
  // g1 = (1, 0), g2 = (-1, 1): g1.g2 = -1 < 0.
  // g1' = g1 - (-1 / 2) g2 = (0.5, 0.5); g2' = g2 - (-1 / 1) g1 = (0, 1); sum = (0.5, 1.5).
  check_vec(pc.combine({{1, 0}, {-1, 1}}), {0.5, 1.5});
  CHECK(pc.last_conflicts() == 2);
  check_vec(pc.combine({{1, 0}, {1, 1}}), {2, 1});  // no conflict: plain sum
  CHECK(pc.last_conflicts() == 0);
}

TEST_CASE("MGDA finds the min-norm point of the convex hull") {
  mtl::MGDA mgda;
  check_vec(mgda.combine({{1, 0}, {0, 1}}), {0.5, 0.5});
  check_vec(mgda.last_weights(), {0.5, 0.5});
  // Parallel gradients: the shorter one is the min-norm point.
  check_vec(mgda.combine({{1, 0}, {2, 0}}), {1, 0});
  check_vec(mgda.last_weights(), {1, 0});
  // g1 = (1, 0), g2 = (0, 2): min |a g1 + (1-a) g2|^2 = a^2 + 4 (1-a)^2 at a = 4/5.
  check_vec(mgda.combine({{1, 0}, {0, 2}}), {0.8, 0.4}, 1e-4);
}

TEST_CASE("CAGrad: c = 0 is the mean gradient; symmetric case by hand") {
  check_vec(mtl::CAGrad(0.0).combine({{1, 0}, {0, 1}}), {0.5, 0.5}, 1e-5);
  // Orthogonal unit gradients: w = (1/2, 1/2), g_w = g0, so d = (1 + c) g0 / (1 + c^2).
  check_vec(mtl::CAGrad(0.5).combine({{1, 0}, {0, 1}}), {0.6, 0.6}, 1e-4);
}

TEST_CASE("GradientMethod::backward: shared parameters combined, task parameters untouched") {
  Tensor W = tensor({1, 3}).requires_grad_();
  Tensor a = tensor({1}).requires_grad_(), b = tensor({1}).requires_grad_();
  // L1 = a * W0: g1 = (a, 0) = (1, 0), dL1/da = W0 = 1.
  // L2 = b * (W1 - W0): g2 = (-1, 1), dL2/db = W1 - W0 = 2.
  const Tensor l1 = sum(a * W.narrow(0, 0, 1));
  const Tensor l2 = sum(b * (W.narrow(0, 1, 1) - W.narrow(0, 0, 1)));
  mtl::PCGrad pc;
  pc.backward({l1, l2}, {W});
  CHECK(W.grad().to_vector<float>() == std::vector<float>{0.5f, 1.5f});
  CHECK(a.grad().item() == 1.0);
  CHECK(b.grad().item() == 2.0);
}

TEST_CASE("MGDA-UB weighs tasks by gradients at the shared representation") {
  Tensor W = tensor({1, 1}).requires_grad_();
  const Tensor z = W * 2.0;  // the shared representation
  // L1 = z0 and L2 = z1: orthogonal unit gradients at z, so a = (1/2, 1/2).
  const Tensor l1 = sum(z.narrow(0, 0, 1)), l2 = sum(z.narrow(0, 1, 1));
  mtl::MGDA mgda;
  mgda.backward_upper_bound({l1, l2}, z);
  check_vec(mgda.last_weights(), {0.5, 0.5});
  // The network trains on 0.5 L1 + 0.5 L2: dW = 2 * (0.5, 0.5).
  CHECK(W.grad().to_vector<float>() == std::vector<float>{1, 1});
}
