// SparseMoE: routing, sparse expert computation, auxiliary losses and capacity, each against values
// worked out by hand or against a plain per-token loop.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ladon.h"
#include "tests/helpers.h"
#include "mtl/sparse_moe.h"

using namespace ladon;
using testing::parameter;

namespace {

Tensor idx(std::vector<std::int64_t> v) {
  const auto n = static_cast<std::int64_t>(v.size());
  return tensor(std::move(v), {n});
}

// An expert MLP (Linear, ReLU, Linear) evaluated on one row, in double, from its parameters.
std::vector<double> run_expert(nn::Module& expert, const std::vector<float>& x) {
  const std::vector<float> w0 = parameter(expert, "0.weight").to_vector<float>(),
                           b0 = parameter(expert, "0.bias").to_vector<float>(),
                           w1 = parameter(expert, "2.weight").to_vector<float>(),
                           b1 = parameter(expert, "2.bias").to_vector<float>();
  const std::size_t in = x.size(), hid = b0.size(), out = b1.size();
  std::vector<double> hidden(hid), y(out);
  for (std::size_t j = 0; j < hid; ++j) {
    double s = b0[j];
    for (std::size_t i = 0; i < in; ++i) s += w0[j * in + i] * x[i];
    hidden[j] = std::max(s, 0.0);
  }
  for (std::size_t j = 0; j < out; ++j) {
    double s = b1[j];
    for (std::size_t i = 0; i < hid; ++i) s += w1[j * hid + i] * hidden[i];
    y[j] = s;
  }
  return y;
}

// Expert indices of one logit row, largest first (ties to the lower index).
std::vector<std::size_t> ranking(const std::vector<double>& logits) {
  std::vector<std::size_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return logits[a] > logits[b]; });
  return order;
}

double softplus(double z) { return std::log1p(std::exp(z)); }
double phi(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

double cv2(const std::vector<double>& v) {
  double m = 0, var = 0;
  for (double x : v) m += x / static_cast<double>(v.size());
  for (double x : v) var += (x - m) * (x - m) / static_cast<double>(v.size());
  return var / (m * m + 1e-10);
}

const double kLn3 = std::log(3.0);

}  // namespace

TEST_CASE("sparse moe: top-k selection and renormalised gate weights by hand") {
  Generator gen(1);
  mtl::SparseMoE moe({.in = 2, .out = 1, .experts = 4, .k = 2, .expert_hidden = {3}, .importance_weight = 1.0}, gen);
  moe.eval();
  // Logits are the rows of W_g: token 0 -> [1, 2, 3, 0], token 1 -> [0.5, -1, 2, 4].
  moe.gate_weight = tensor({1, 2, 3, 0, 0.5f, -1, 2, 4}, {2, 4}).requires_grad_();
  moe(tensor({1, 0, 0, 1}, {2, 2}));
  const mtl::SparseMoEStats& st = moe.stats();
  const double e = std::exp(1.0);
  // Token 0 keeps experts 2 and 1 (softmax of [3, 2]), token 1 experts 3 and 2 (softmax of [4, 2]).
  const double g02 = e / (e + 1), g01 = 1 / (e + 1), g13 = e * e / (e * e + 1), g12 = 1 / (e * e + 1);
  CHECK(allclose(st.gate_weights,
                 tensor({0, static_cast<float>(g01), static_cast<float>(g02), 0,  //
                         0, 0, static_cast<float>(g12), static_cast<float>(g13)},
                        {2, 4}),
                 1e-6, 1e-7));
  CHECK(st.selected == std::vector<std::int64_t>{0, 1, 2, 1});
  CHECK(st.kept == st.selected);
  CHECK(st.utilisation == std::vector<double>{0, 0.25, 0.5, 0.25});
  CHECK(st.load_imbalance == doctest::Approx(2.0));  // expert 2 has twice the mean of 1
  CHECK(st.mean_gate[3] == doctest::Approx(g13 / 2));
  CHECK(st.dropped_fraction == 0);
  CHECK(st.capacity == 0);
  // Importance = [0, g01, g02 + g12, g13]: mean 1/2 (each token's gates sum to 1), so CV² = 4 var.
  const std::vector<double> importance = {0, g01, g02 + g12, g13};
  double var = 0;
  for (double v : importance) var += (v - 0.5) * (v - 0.5) / 4;
  CHECK(moe.losses().importance.item() == doctest::Approx(var / 0.25).epsilon(1e-5));
  CHECK(moe.losses().importance.item() == doctest::Approx(0.5710776).epsilon(1e-5));
}

TEST_CASE("sparse moe: zero-initialised router ties go to the lowest experts; noise only in training") {
  Generator gen(2);
  mtl::SparseMoE moe({.in = 3, .experts = 5, .k = 2, .expert_hidden = {4}, .noise_epsilon = 0.01, .seed = 9}, gen);
  CHECK(moe.out_features() == 3);
  CHECK(equal(moe.gate_weight, zeros({3, 5})));
  CHECK(equal(moe.noise_weight, zeros({3, 5})));
  const Tensor x = randn({6, 3}, gen);
  moe.eval();
  moe(x);
  CHECK(moe.stats().selected == std::vector<std::int64_t>{6, 6, 0, 0, 0});
  CHECK(equal(moe.stats().router_logits, zeros({6, 5})));
  moe.train();
  moe.seed_noise(5);
  const Tensor a = moe(x);
  const Tensor noisy = moe.stats().router_logits;
  // H = 0 + N(0, 1) * (softplus(0) + 0.01): the standard deviation is ln 2 + 0.01 everywhere.
  Generator same(5);
  const Tensor expected = randn({6, 5}, same) * (std::log(2.0) + 0.01);
  CHECK(allclose(noisy, expected, 1e-5, 1e-6));
  moe.seed_noise(5);
  CHECK(equal(moe(x), a));  // seeded: the same noise again
  const Tensor b = moe(x);
  CHECK_FALSE(equal(moe.stats().router_logits, noisy));  // the generator moved on
  (void)b;
}

TEST_CASE("sparse moe: output equals the dense mixture restricted to each token's top k") {
  for (bool shared : {false, true}) {
    CAPTURE(shared);
    Generator gen(3);
    mtl::SparseMoE moe({.in = 3, .out = 2, .experts = 5, .k = 2, .expert_hidden = {4}, .shared_expert = shared}, gen);
    moe.eval();
    moe.gate_weight = randn({3, 5}, gen).requires_grad_();
    const Tensor x = randn({7, 3}, gen);
    const Tensor y = moe(x);
    REQUIRE(y.shape() == Shape{7, 2});
    const std::vector<float> xs = x.to_vector<float>(), wg = moe.gate_weight.to_vector<float>(),
                             ys = y.to_vector<float>();
    for (std::size_t t = 0; t < 7; ++t) {
      const std::vector<float> row(xs.begin() + static_cast<std::ptrdiff_t>(3 * t),
                                   xs.begin() + static_cast<std::ptrdiff_t>(3 * t + 3));
      std::vector<double> logits(5, 0.0);
      for (std::size_t e = 0; e < 5; ++e)
        for (std::size_t i = 0; i < 3; ++i) logits[e] += row[i] * wg[i * 5 + e];
      const auto order = ranking(logits);
      const double z = std::exp(logits[order[0]]) + std::exp(logits[order[1]]);
      std::vector<double> expected(2, 0.0);
      for (std::size_t s = 0; s < 2; ++s) {
        const std::vector<double> out = run_expert(moe.expert(static_cast<std::int64_t>(order[s])), row);
        for (std::size_t j = 0; j < 2; ++j) expected[j] += std::exp(logits[order[s]]) / z * out[j];
      }
      if (shared) {
        const std::vector<double> out = run_expert(moe.shared(), row);
        for (std::size_t j = 0; j < 2; ++j) expected[j] += out[j];
      }
      for (std::size_t j = 0; j < 2; ++j) CHECK(ys[2 * t + j] == doctest::Approx(expected[j]).epsilon(1e-5));
    }
    // Leading dims are tokens too.
    CHECK(allclose(moe(x.reshape({1, 7, 3})), y.reshape({1, 7, 2}), 1e-6, 1e-7));
  }
}

TEST_CASE("sparse moe: importance, load, Switch balance and z-loss on hand-computable routings") {
  // W_g = ln 3 * I: token [1, 0] has logits [ln 3, 0] and router probabilities [3/4, 1/4];
  // token [0, 1] the mirror image.
  const auto make = [](Generator& gen) {
    mtl::SparseMoE moe({.in = 2,
                        .out = 2,
                        .experts = 2,
                        .k = 1,
                        .expert_hidden = {3},
                        .importance_weight = 1,
                        .load_weight = 1,
                        .balance_weight = 0.01,
                        .z_loss_weight = 1},
                       gen);
    moe.eval();
    moe.gate_weight = tensor({static_cast<float>(kLn3), 0, 0, static_cast<float>(kLn3)}, {2, 2}).requires_grad_();
    return moe;
  };
  Generator gen(4);
  mtl::SparseMoE moe = make(gen);
  SUBCASE("skewed: three tokens to expert 0, one to expert 1") {
    moe(tensor({1, 0, 1, 0, 1, 0, 0, 1}, {4, 2}));
    const mtl::SparseMoELosses& l = moe.losses();
    // k = 1: every kept gate is 1, so importance = load = counts [3, 1]: mean 2, variance 1.
    CHECK(l.importance.item() == doctest::Approx(0.25));
    CHECK(l.load.item() == doctest::Approx(0.25));
    // f = [3/4, 1/4], P = [(3 * 3/4 + 1/4) / 4, (3 * 1/4 + 3/4) / 4] = [5/8, 3/8]:
    // 0.01 * 2 * (3/4 * 5/8 + 1/4 * 3/8) = 0.01125.
    CHECK(l.balance.item() == doctest::Approx(0.01125));
    // Every token's logsumexp is log(3 + 1) = ln 4.
    CHECK(l.z.item() == doctest::Approx(std::pow(std::log(4.0), 2)));
    CHECK(l.total.item() == doctest::Approx(0.25 + 0.25 + 0.01125 + std::pow(std::log(4.0), 2)));
    CHECK(moe.aux_loss().item() == l.total.item());
    CHECK(moe.stats().load_imbalance == doctest::Approx(1.5));
  }
  SUBCASE("uniform routing: balance loss is exactly alpha, CV² is zero") {
    moe(tensor({1, 0, 0, 1}, {2, 2}));
    CHECK(moe.losses().balance.item() == doctest::Approx(0.01).epsilon(1e-6));
    CHECK(moe.losses().importance.item() == doctest::Approx(0.0));
    CHECK(moe.losses().load.item() == doctest::Approx(0.0));
    CHECK(moe.stats().load_imbalance == doctest::Approx(1.0));
  }
  SUBCASE("z-loss: mean of squared logsumexp") {
    // Logits [0, 0] (logsumexp ln 2) and [ln 3, 0] (logsumexp ln 4).
    moe(tensor({0, 0, 1, 0}, {2, 2}));
    const double ln2 = std::log(2.0), ln4 = std::log(4.0);
    CHECK(moe.losses().z.item() == doctest::Approx((ln2 * ln2 + ln4 * ln4) / 2));
    CHECK(moe.losses().z.item() == doctest::Approx(1.2011325));
  }
}

TEST_CASE("sparse moe: load loss through the normal CDF matches a per-token loop, and is differentiable") {
  Generator gen(5);
  mtl::SparseMoE moe({.in = 3,
                      .out = 2,
                      .experts = 4,
                      .k = 2,
                      .expert_hidden = {3},
                      .noise_epsilon = 0.01,
                      .importance_weight = 0,
                      .load_weight = 1},
                     gen);
  moe.gate_weight = randn({3, 4}, gen).requires_grad_();
  moe.noise_weight = (randn({3, 4}, gen) * 0.5).requires_grad_();
  const Tensor x = randn({5, 3}, gen);
  moe.seed_noise(11);
  moe(x);
  const std::vector<float> xs = x.to_vector<float>(), wg = moe.gate_weight.to_vector<float>(),
                           wn = moe.noise_weight.to_vector<float>(), h = moe.stats().router_logits.to_vector<float>();
  std::vector<double> load(4, 0.0);
  for (std::size_t t = 0; t < 5; ++t) {
    std::vector<double> noisy(h.begin() + static_cast<std::ptrdiff_t>(4 * t),
                              h.begin() + static_cast<std::ptrdiff_t>(4 * t + 4));
    const auto order = ranking(noisy);
    for (std::size_t e = 0; e < 4; ++e) {
      double clean = 0, raw = 0;
      for (std::size_t i = 0; i < 3; ++i) {
        clean += xs[3 * t + i] * wg[i * 4 + e];
        raw += xs[3 * t + i] * wn[i * 4 + e];
      }
      const bool in_top = e == order[0] || e == order[1];
      const double threshold = in_top ? noisy[order[2]] : noisy[order[1]];  // kth_excluding
      load[e] += phi((clean - threshold) / (softplus(raw) + 0.01));
    }
  }
  CHECK(moe.losses().load.item() == doctest::Approx(cv2(load)).epsilon(1e-4));
  // With the noise fixed by reseeding, every loss is a smooth function of the router weights.
  const auto f = [&moe, &x](const std::vector<Tensor>& in) {
    moe.gate_weight = in[0];
    moe.noise_weight = in[1];
    moe.seed_noise(11);
    moe(x);
    const mtl::SparseMoELosses& l = moe.losses();
    return stack({l.load, l.importance, l.balance, l.z}, 0);
  };
  const Tensor wg0 = moe.gate_weight.detach(), wn0 = moe.noise_weight.detach();
  const GradcheckResult r = gradcheck(f, {wg0, wn0}, {.eps = 1e-3, .atol = 1e-3, .rtol = 2e-2});
  INFO(r.message);
  CHECK(r.ok);
  // The load loss really depends on W_noise (through softplus at 0 too: its gradient there is 1/2).
  mtl::SparseMoE fresh({.in = 3, .experts = 4, .k = 1, .expert_hidden = {3}, .importance_weight = 0, .load_weight = 1},
                       gen);
  fresh.gate_weight = randn({3, 4}, gen).requires_grad_();
  fresh(x);
  fresh.losses().load.backward();
  REQUIRE(fresh.noise_weight.grad().defined());
  CHECK(sum(abs(fresh.noise_weight.grad())).item() > 0);
}

TEST_CASE("sparse moe: capacity drops overflow assignments, first choices before second ones") {
  SUBCASE("top-1: the third token for expert 0 overflows a capacity of 2") {
    const auto make = [](double capacity_factor) {
      Generator gen(6);
      mtl::SparseMoE moe({.in = 2,
                          .out = 2,
                          .experts = 2,
                          .k = 1,
                          .expert_hidden = {3},
                          .capacity_factor = capacity_factor,
                          .balance_weight = 0.01},
                         gen);
      moe.eval();
      moe.gate_weight = tensor({static_cast<float>(kLn3), 0, 0, static_cast<float>(kLn3)}, {2, 2}).requires_grad_();
      return moe;
    };
    mtl::SparseMoE capped = make(1.0), dropless = make(0.0);
    const Tensor x = tensor({1, 0, 0, 1, 1, 0, 2, 0.5f}, {4, 2});  // experts 0, 1, 0, 0
    const Tensor y = capped(x), full = dropless(x);
    const mtl::SparseMoEStats& st = capped.stats();
    CHECK(st.capacity == 2);  // ceil(1.0 * 4 tokens * 1 / 2 experts)
    CHECK(st.selected == std::vector<std::int64_t>{3, 1});
    CHECK(st.kept == std::vector<std::int64_t>{2, 1});
    CHECK(st.dropped_fraction == doctest::Approx(0.25));
    CHECK(equal(y.narrow(0, 0, 3), full.narrow(0, 0, 3)));
    CHECK(equal(y.narrow(0, 3, 1), zeros({1, 2})));  // token 3 got nothing from its only expert
    CHECK(sum(abs(full.narrow(0, 3, 1))).item() > 0);
    CHECK(dropless.stats().dropped_fraction == 0);
    // The balance loss sees the routing before the drop: identical with and without capacity.
    CHECK(capped.losses().balance.item() == doctest::Approx(dropless.losses().balance.item()));
    // Token 3's logits [2 ln 3, 0.5 ln 3]: probabilities [1/(1 + 3^-1.5), 1/(1 + 3^1.5)].
    const double p3 = 1 / (1 + std::pow(3.0, -1.5));
    const double p0 = (0.75 + 0.25 + 0.75 + p3) / 4;
    CHECK(capped.losses().balance.item() == doctest::Approx(0.01 * 2 * (0.75 * p0 + 0.25 * (1 - p0))));
  }
  SUBCASE("top-2: a second choice loses its slot to later tokens' first choices") {
    Generator gen(7);
    mtl::SparseMoE moe({.in = 3, .out = 2, .experts = 3, .k = 2, .expert_hidden = {3}, .capacity_factor = 1.0}, gen);
    moe.eval();
    // Token rankings: t0 (1, 0), t1 (0, 2), t2 (0, 1). Capacity ceil(1.0 * 3 * 2 / 3) = 2.
    // First choices: e1 <- t0, e0 <- t1, t2 (full). Second choices: t0 -> e0 dropped, t1 -> e2, t2 -> e1.
    moe.gate_weight = tensor({2, 3, 0, 3, 0, 2, 3, 2, 0}, {3, 3}).requires_grad_();
    const Tensor x = tensor({1, 0, 0, 0, 1, 0, 0, 0, 1}, {3, 3});
    const Tensor y = moe(x);
    const mtl::SparseMoEStats& st = moe.stats();
    CHECK(st.capacity == 2);
    CHECK(st.selected == std::vector<std::int64_t>{3, 2, 1});
    CHECK(st.kept == std::vector<std::int64_t>{2, 2, 1});
    CHECK(st.dropped_fraction == doctest::Approx(1.0 / 6));
    // Token 0 keeps only expert 1, scaled by its un-renormalised gate softmax([3, 2])[0].
    const double g = std::exp(1.0) / (std::exp(1.0) + 1);
    const std::vector<double> e1 = run_expert(moe.expert(1), {1, 0, 0});
    CHECK(y.to_vector<float>()[0] == doctest::Approx(g * e1[0]).epsilon(1e-5));
    CHECK(y.to_vector<float>()[1] == doctest::Approx(g * e1[1]).epsilon(1e-5));
  }
}

TEST_CASE("sparse moe: only the selected experts receive gradient") {
  Generator gen(8);
  mtl::SparseMoE moe(
      {.in = 2, .out = 2, .experts = 4, .k = 1, .expert_hidden = {3}, .balance_weight = 0.01, .z_loss_weight = 1e-3},
      gen);
  moe.eval();
  // Expert 0 wins on x0 > x1, expert 1 otherwise; experts 2 (logit 0) and 3 (negative) never win on positive x.
  moe.gate_weight = tensor({1, 0, 0, -5, 0, 1, 0, -5}, {2, 4}).requires_grad_();
  const Tensor x = tensor({1, 0.5f, 0.5f, 1, 0.9f, 0.2f}, {3, 2});
  const Tensor y = moe(x);
  (sum(y) + moe.aux_loss()).backward();
  CHECK(moe.stats().selected == std::vector<std::int64_t>{2, 1, 0, 0});
  for (std::int64_t e = 0; e < 4; ++e)
    for (auto& [name, p] : moe.expert(e).named_parameters()) {
      CAPTURE(e);
      CAPTURE(name);
      if (e < 2) {
        REQUIRE(p.grad().defined());
        CHECK(sum(abs(p.grad())).item() > 0);
      } else {
        CHECK_FALSE(p.grad().defined());
      }
    }
  REQUIRE(moe.gate_weight.grad().defined());
}

TEST_CASE("sparse moe: gradcheck of the whole layer in eval mode, k = 2") {
  Generator gen(9);
  mtl::SparseMoE moe({.in = 3,
                      .out = 2,
                      .experts = 4,
                      .k = 2,
                      .expert_hidden = {4},
                      .shared_expert = true,
                      .importance_weight = 1,
                      .load_weight = 1,
                      .balance_weight = 1,
                      .z_loss_weight = 1},
                     gen);
  moe.eval();
  // Logit columns far apart, so a 1e-3 step never changes any token's top 2.
  const Tensor wg = tensor({2, 0.5f, -1, -2.5f, 0.3f, 1.5f, -0.2f, 0.4f, -0.5f, 0.2f, 1, 0.1f}, {3, 4});
  const Tensor x =
      tensor({1, 0.2f, -0.3f, 0.8f, -0.1f, 0.5f, 0.9f, 0.4f, 0.1f, 1.2f, -0.3f, 0.2f, 0.6f, 0.1f, 0.7f}, {5, 3});
  {
    const std::vector<float> l = matmul(x, wg).to_vector<float>();
    for (std::size_t t = 0; t < 5; ++t) {
      std::vector<double> row(l.begin() + static_cast<std::ptrdiff_t>(4 * t),
                              l.begin() + static_cast<std::ptrdiff_t>(4 * t + 4));
      const auto order = ranking(row);
      CAPTURE(t);
      REQUIRE(row[order[1]] - row[order[2]] > 0.1);
    }
  }
  const auto f = [&moe](const std::vector<Tensor>& in) {
    moe.gate_weight = in[1];
    const Tensor y = moe(in[0]);
    const mtl::SparseMoELosses& l = moe.losses();
    return cat({y.reshape({-1}), stack({l.importance, l.balance, l.z, l.total}, 0)}, 0);
  };
  const GradcheckResult r = gradcheck(f, {x, wg}, {.eps = 1e-3, .atol = 1e-3, .rtol = 2e-2});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("sparse moe: clear errors") {
  Generator gen(10);
  CHECK_THROWS_WITH_AS(mtl::SparseMoE({.in = 3, .experts = 4, .k = 5}, gen), "SparseMoE: k = 5 exceeds the 4 experts",
                       Error);
  CHECK_THROWS_WITH_AS(mtl::SparseMoE({.in = 3, .experts = 4, .k = 0}, gen), "SparseMoE: k must be at least 1, got 0",
                       Error);
  CHECK_THROWS_WITH_AS(mtl::SparseMoE({.in = 3, .experts = 4, .k = 1, .capacity_factor = -1}, gen),
                       "SparseMoE: capacity_factor must be >= 0 (0 means dropless), got -1", Error);
  mtl::SparseMoE moe({.in = 3, .experts = 4, .k = 2}, gen);
  CHECK_THROWS_WITH_AS(moe.losses(), "SparseMoE: no forward has run yet", Error);
  CHECK_THROWS_WITH_AS(moe(zeros({2, 4})), "SparseMoE: expects input [tokens, 3] (or [..., 3]), got [2, 4]", Error);
  CHECK_THROWS_WITH_AS(moe(zeros({3})), "SparseMoE: expects input [tokens, 3] (or [..., 3]), got [3]", Error);
  CHECK_THROWS_WITH_AS(moe.shared(), "SparseMoE: no shared expert (set options.shared_expert)", Error);
  CHECK_THROWS_WITH_AS(moe.expert(4), "SparseMoE: expert 4 out of range for 4 experts", Error);
}

TEST_CASE("sparse moe: hold_experts keeps a range of experts, lists only those, and needs a dispatch") {
  Generator gen(10);
  mtl::SparseMoE moe({.in = 3, .experts = 4, .k = 2, .expert_hidden = {5}}, gen);
  const std::int64_t router = 2 * 3 * 4, per_expert = 3 * 5 + 5 + 5 * 3 + 3;
  CHECK(moe.num_parameters() == router + 4 * per_expert);
  moe.hold_experts(1, 3);
  CHECK(moe.num_parameters() == router + 2 * per_expert);
  std::vector<std::string> names;
  for (const auto& [name, p] : moe.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"gate_weight", "noise_weight", "experts.1.0.weight", "experts.1.0.bias",
                                          "experts.1.2.weight", "experts.1.2.bias", "experts.2.0.weight",
                                          "experts.2.0.bias", "experts.2.2.weight", "experts.2.2.bias"});
  CHECK(moe.holds(2));
  CHECK_FALSE(moe.holds(0));
  CHECK_THROWS_WITH_AS(moe.expert(0), "SparseMoE: expert 0 is not held by this process (it holds experts [1, 3))",
                       Error);
  CHECK_THROWS_WITH_AS(moe(zeros({2, 3})),
                       "SparseMoE: holds only experts [1, 3) of 4 and has no dispatch to run the others", Error);
  CHECK_THROWS_WITH_AS(moe.hold_experts(0, 2),
                       "SparseMoE: hold_experts(0, 2): not a range within the held experts [1, 3)", Error);
  moe.hold_experts(2, 2);  // narrowing is fine, down to none
  CHECK(moe.num_parameters() == router);
}

TEST_CASE("sparse moe: index_add scatters rows and accumulates repeats") {
  const Tensor base = tensor({1, 2, 3, 4, 5, 6}, {3, 2});
  const Tensor src = tensor({10, 20, 30, 40, 50, 60}, {3, 2});
  CHECK(index_add(base, 0, idx({2, 0, 2}), src).to_vector<float>() == std::vector<float>{31, 42, 3, 4, 65, 86});
  CHECK(index_add(base, 1, idx({1}), tensor({1, 1, 1}, {3, 1})).to_vector<float>() ==
        std::vector<float>{1, 3, 3, 5, 5, 7});
  CHECK_THROWS_WITH_AS(index_add(base, 0, idx({3}), tensor({1, 1}, {1, 2})),
                       "index_add: index 3 is out of range for dim 0 of size 3 in [3, 2]", Error);
  CHECK_THROWS_WITH_AS(index_add(base, 0, idx({0, 1}), src),
                       "index_add: source [3, 2] must be [2, 2] for base [3, 2] and 2 indices along dim 0", Error);
}

TEST_CASE("format_router_table: one row per expert, then imbalance and dropped fraction") {
  mtl::SparseMoEStats stats;
  stats.selected = {6, 2};
  stats.kept = {4, 2};
  stats.utilisation = {0.75, 0.25};
  stats.mean_gate = {0.6, 0.4};
  stats.load_imbalance = 1.5;
  stats.dropped_fraction = 0.25;
  stats.capacity = 4;
  stats.tokens = 4;
  CHECK(mtl::format_router_table(stats) ==
        "expert    routed  computed  share  mean gate\n"
        "0              6         4  0.750     0.6000\n"
        "1              2         2  0.250     0.4000\n"
        "tokens 4  capacity 4  load imbalance 1.500  dropped 0.2500\n");
  stats.kept.pop_back();
  CHECK_THROWS_WITH(mtl::format_router_table(stats), doctest::Contains("2 experts selected but 1 kept"));
}
