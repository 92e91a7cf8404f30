#include <doctest/doctest.h>

#include <cmath>

#include "ladon.h"
#include "mtl/aggregation.h"
#include "mtl/report.h"

using namespace ladon;

TEST_CASE("mean, max and min aggregation, by hand") {
  const Tensor a = tensor({1, 5, 3, 0}, {2, 2}), b = tensor({3, 2, 3, 4}, {2, 2});
  CHECK(mtl::MeanAggregator()({a, b}).to_vector<float>() == std::vector<float>{2, 3.5f, 3, 2});
  CHECK(mtl::MaxAggregator()({a, b}).to_vector<float>() == std::vector<float>{3, 5, 3, 4});
  CHECK(mtl::MinAggregator()({a, b}).to_vector<float>() == std::vector<float>{1, 2, 3, 0});
  CHECK_THROWS_WITH_AS(mtl::MeanAggregator()({a, ones({2, 3})}),
                       "MeanAggregator: output 1 has shape [2, 3]; expected [batch, d] like output 0 [2, 2]", Error);
}

TEST_CASE("learned weights start uniform and follow their logits") {
  mtl::WeightedAggregator agg(2);
  const Tensor a = tensor({4, 0}, {1, 2}), b = tensor({0, 8}, {1, 2});
  CHECK(agg({a, b}).to_vector<float>() == std::vector<float>{2, 4});
  agg.parameters()[0].data<float>()[0] = std::log(3.0f);  // weights (3/4, 1/4)
  const std::vector<float> out = agg({a, b}).to_vector<float>();
  CHECK(out[0] == doctest::Approx(3.0));
  CHECK(out[1] == doctest::Approx(2.0));
}

TEST_CASE("attention over outputs, by hand") {
  mtl::AttentionAggregator agg(2);
  float* q = agg.parameters()[0].data<float>();
  q[0] = 1, q[1] = 0;
  const Tensor o1 = tensor({2, 0}, {1, 2}), o2 = tensor({0, 0}, {1, 2});
  // Scores (2 / sqrt 2, 0) = (sqrt 2, 0); weights e^sqrt2 / (e^sqrt2 + 1) and the rest.
  const double w1 = std::exp(std::sqrt(2.0)) / (std::exp(std::sqrt(2.0)) + 1.0);
  const std::vector<float> out = agg({o1, o2}).to_vector<float>();
  CHECK(out[0] == doctest::Approx(2 * w1));
  CHECK(out[1] == doctest::Approx(0.0));
  CHECK(agg.last_weights().to_vector<float>()[0] == doctest::Approx(w1));
}

TEST_CASE("aggregators are differentiable") {
  Generator gen(9);
  mtl::FusionAggregator fusion(2, 3, 4, 2, gen);
  mtl::AttentionAggregator attention(3, gen);
  mtl::WeightedAggregator weighted(2);
  for (mtl::Aggregator* agg : std::vector<mtl::Aggregator*>{&fusion, &attention, &weighted}) {
    const auto r = gradcheck([agg](const std::vector<Tensor>& x) { return (*agg)({x[0], x[1]}); },
                             {randn({2, 3}, gen), randn({2, 3}, gen)}, {.eps = 1e-3, .atol = 1e-3, .rtol = 2e-2});
    INFO(r.message);
    CHECK(r.ok);
  }
}

TEST_CASE("gate statistics, by hand") {
  const mtl::GateStats s = mtl::gate_stats(tensor({1, 0, 0.5f, 0.5f}, {2, 2}));
  CHECK(s.mean_weight == std::vector<double>{0.75, 0.25});
  CHECK(s.entropy == doctest::Approx(std::log(2.0) / 2));
  CHECK(s.load_imbalance == doctest::Approx(1.5));
  CHECK(s.unused_experts == 0);
  const std::string table = mtl::format_gate_table({"item"}, {s});
  CHECK(table == "task        e0     e1     entropy  imbalance\nitem        0.750  0.250    0.347       1.50\n");
}

TEST_CASE("gradient conflicts between tasks, by hand") {
  Tensor W = tensor({1, 1}).requires_grad_();
  const Tensor l1 = sum(W.narrow(0, 0, 1));                                   // g1 = (1, 0)
  const Tensor l2 = sum(W.narrow(0, 1, 1) - W.narrow(0, 0, 1));               // g2 = (-1, 1)
  const mtl::GradientConflicts c = mtl::gradient_conflicts({l1, l2}, {W});
  CHECK(c.cosine[0][1] == doctest::Approx(-1 / std::sqrt(2.0)));
  CHECK(c.cosine[0][0] == doctest::Approx(1.0));
  CHECK(c.norms[1] == doctest::Approx(std::sqrt(2.0)));
  CHECK(c.conflicts == 1);
  CHECK_FALSE(W.grad().defined());
  CHECK(mtl::format_conflict_table({"a", "b"}, c).find("conflicting pairs: 1") != std::string::npos);
}

TEST_CASE("random selection picks one head per sample in training, averages in eval") {
  mtl::RandomSelection sel(4);
  const Tensor a = zeros({200, 1}), b = ones({200, 1});
  const std::vector<float> picked = sel({a, b}).to_vector<float>();
  double ones_picked = 0;
  for (float v : picked) {
    CHECK((v == 0.0f || v == 1.0f));
    ones_picked += v;
  }
  CHECK(ones_picked > 70);  // about half of 200
  CHECK(ones_picked < 130);
  sel.eval();
  CHECK(sel({a, b}).to_vector<float>()[0] == 0.5f);
}

TEST_CASE("performance-weighted selection follows running validation scores") {
  mtl::PerformanceWeighted pw(2, 0.1, 0.5);
  CHECK(pw.weights() == std::vector<double>{0.5, 0.5});
  pw.report_score(0, 0.9);
  pw.report_score(1, 0.8);
  pw.report_score(1, 1.0);  // running 0.5 * 0.8 + 0.5 * 1.0 = 0.9: tied again
  CHECK(pw.weights()[0] == doctest::Approx(0.5));
  pw.report_score(0, 0.7);  // 0.8 vs 0.9: weights softmax((0.8, 0.9) / 0.1)
  const double w0 = 1 / (1 + std::exp(1.0));
  CHECK(pw.weights()[0] == doctest::Approx(w0));
  const std::vector<float> out = pw({full({1, 1}, 2.0), full({1, 1}, 4.0)}).to_vector<float>();
  CHECK(out[0] == doctest::Approx(2 * w0 + 4 * (1 - w0)));
}

TEST_CASE("adaptive gate learns per-sample weights over heads") {
  mtl::AdaptiveGate gate(2, 2);
  for (Tensor p : gate.parameters()) std::fill(p.data<float>(), p.data<float>() + p.numel(), 0.0f);
  const Tensor x = tensor({1, 2}, {1, 2});
  CHECK(gate(x, {full({1, 3}, 1.0), full({1, 3}, 3.0)}).to_vector<float>() == std::vector<float>{2, 2, 2});
  const auto r = gradcheck([&](const std::vector<Tensor>& in) { return gate(in[0], {in[1], in[2]}); },
                           {x, tensor({1, 2, 3}, {1, 3}), tensor({0, 1, 0}, {1, 3})});
  INFO(r.message);
  CHECK(r.ok);
}
