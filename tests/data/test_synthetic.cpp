#include <doctest/doctest.h>

#include <cmath>

#include "data/synthetic.h"
#include "ladon.h"

using namespace ladon;
using namespace ladon::data;

namespace {

double pearson(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<float>(), y = b.to_vector<float>();
  const double n = static_cast<double>(x.size());
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < x.size(); ++i) mx += x[i], my += y[i];
  mx /= n, my /= n;
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxy / std::sqrt(sxx * syy);
}

double variance(const Tensor& a) {
  const auto x = a.to_vector<float>();
  double m = 0, s = 0;
  for (float v : x) m += v;
  m /= static_cast<double>(x.size());
  for (float v : x) s += (v - m) * (v - m);
  return s / static_cast<double>(x.size());
}

}  // namespace

TEST_CASE("data/synthetic: shapes, names and determinism by seed") {
  const Dataset a = mmoe_synthetic({.samples = 300, .dim = 20, .seed = 5});
  CHECK(a.size() == 300);
  CHECK(a.x.shape() == Shape{300, 20});
  CHECK(a.x.dtype() == Dtype::float32);
  REQUIRE(a.y.size() == 2);
  CHECK(a.y[0].shape() == Shape{300, 1});
  CHECK(a.y[1].shape() == Shape{300, 1});
  CHECK(a.task_names == std::vector<std::string>{"task1", "task2"});

  const Dataset b = mmoe_synthetic({.samples = 300, .dim = 20, .seed = 5});
  CHECK(equal(a.x, b.x));
  CHECK(equal(a.y[0], b.y[0]));
  CHECK(equal(a.y[1], b.y[1]));
  const Dataset c = mmoe_synthetic({.samples = 300, .dim = 20, .seed = 6});
  CHECK_FALSE(equal(a.x, c.x));
  CHECK_FALSE(equal(a.y[0], c.y[0]));

  // x ~ N(0, 1).
  CHECK(std::abs(mean(a.x).item()) < 0.05);
  CHECK(std::abs(variance(a.x) - 1.0) < 0.05);
}

TEST_CASE("data/synthetic: in the linear case label correlation equals p and label variance c^2") {
  for (double p : {-0.6, 0.0, 0.5, 0.9}) {
    CAPTURE(p);
    const Dataset d = mmoe_synthetic(
        {.samples = 20000, .dim = 50, .correlation = p, .scale = 2.0, .sinusoids = 0, .noise_std = 0.0, .seed = 11});
    CHECK(std::abs(pearson(d.y[0], d.y[1]) - p) < 0.03);
    CHECK(variance(d.y[0]) == doctest::Approx(4.0).epsilon(0.05));
    CHECK(variance(d.y[1]) == doctest::Approx(4.0).epsilon(0.05));
  }
}

TEST_CASE("data/synthetic: label correlation rises with p") {
  std::vector<double> corr;
  for (double p : {0.0, 0.5, 0.9, 1.0}) {
    const Dataset d = mmoe_synthetic({.correlation = p, .seed = 3});
    corr.push_back(pearson(d.y[0], d.y[1]));
  }
  MESSAGE("label correlation at p = 0, 0.5, 0.9, 1: ", corr[0], " ", corr[1], " ", corr[2], " ", corr[3]);
  CHECK(std::abs(corr[0]) < 0.1);
  CHECK(corr[0] < corr[1]);
  CHECK(corr[1] < corr[2]);
  CHECK(corr[2] < corr[3]);
  CHECK(corr[3] > 0.95);
}

TEST_CASE("data/synthetic: errors") {
  CHECK_THROWS_WITH_AS(mmoe_synthetic({.dim = 1}),
                       "mmoe_synthetic: dim must be at least 2 (two orthogonal directions), got 1", Error);
  CHECK_THROWS_WITH_AS(mmoe_synthetic({.correlation = 1.5}), "mmoe_synthetic: correlation must be in [-1, 1], got 1.5",
                       Error);
  CHECK_THROWS_WITH_AS(mmoe_synthetic({.samples = -1}), "mmoe_synthetic: samples must be non-negative, got -1", Error);
  CHECK_THROWS_WITH_AS(mmoe_synthetic({.sinusoids = -2}), "mmoe_synthetic: sinusoids must be non-negative, got -2",
                       Error);
  CHECK_THROWS_WITH_AS(mmoe_synthetic({.noise_std = -0.1}), "mmoe_synthetic: noise_std must be non-negative, got -0.1",
                       Error);
}
