// Activation layers against closed-form values and derivatives; ModuleList and ModuleDict naming.
#include <doctest/doctest.h>

#include <cmath>

#include "approx.h"
#include "ladon.h"
#include "nn/activation.h"
#include "nn/containers.h"
#include "nn/linear.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;
using ladon::testing::rel;

namespace {
// Values and d(sum)/dx of a layer at x.
std::pair<std::vector<float>, std::vector<float>> run(nn::Layer& layer, std::vector<float> x) {
  const Tensor t = tensor(x, {static_cast<std::int64_t>(x.size())}).requires_grad_();
  const Tensor y = layer(t);
  sum(y).backward();
  return {values(y), values(t.grad())};
}
}  // namespace

TEST_CASE("LeakyReLU scales the negative side") {
  nn::LeakyReLU leaky(0.1);
  auto [y, g] = run(leaky, {-2, -0.5f, 0.5f, 3});
  CHECK(y[0] == rel(-0.2, 1e-6));
  CHECK(y[1] == rel(-0.05, 1e-6));
  CHECK(y[2] == 0.5f);
  CHECK(y[3] == 3.0f);
  CHECK(g[0] == rel(0.1, 1e-6));
  CHECK(g[1] == rel(0.1, 1e-6));
  CHECK(g[2] == 1.0f);
  CHECK(g[3] == 1.0f);
}

TEST_CASE("ELU: alpha * (exp(x) - 1) below zero") {
  nn::ELU elu;
  auto [y, g] = run(elu, {-1, 0.5f, 2});
  CHECK(y[0] == rel(std::exp(-1.0) - 1, 1e-6));  // -0.6321206
  CHECK(y[1] == 0.5f);
  CHECK(y[2] == 2.0f);
  CHECK(g[0] == rel(std::exp(-1.0), 1e-6));
  CHECK(g[1] == 1.0f);
  nn::ELU elu2(2.0);
  CHECK(values(elu2(tensor({-1.0f})))[0] == rel(2 * (std::exp(-1.0) - 1), 1e-6));
  CHECK(values(elu2(tensor({-100.0f})))[0] == rel(-2.0, 1e-6));  // saturates, no overflow
}

TEST_CASE("SiLU: x * sigmoid(x)") {
  nn::SiLU silu;
  auto [y, g] = run(silu, {0, 1, -1});
  const double s1 = 1 / (1 + std::exp(-1.0));  // 0.7310586
  CHECK(y[0] == 0.0f);
  CHECK(y[1] == rel(s1, 1e-6));
  CHECK(y[2] == rel(-(1 - s1), 1e-6));
  // d/dx = s (1 + x (1 - s)).
  CHECK(g[0] == rel(0.5, 1e-6));
  CHECK(g[1] == rel(s1 * (1 + (1 - s1)), 1e-6));
}

TEST_CASE("Softplus: log(1 + exp(x)), stable at both ends, derivative sigmoid") {
  nn::Softplus softplus;
  auto [y, g] = run(softplus, {0, 1, -30, 30});
  CHECK(y[0] == rel(std::log(2.0), 1e-6));
  CHECK(y[1] == rel(std::log(1 + std::exp(1.0)), 1e-6));
  CHECK(std::abs(y[2]) < 1e-12f);  // exp(-30) = 9.4e-14, below float resolution next to 1
  CHECK(y[3] == rel(30.0, 1e-6));
  CHECK(g[0] == rel(0.5, 1e-6));  // the tie at 0 splits max's gradient: the true derivative
  CHECK(g[1] == rel(1 / (1 + std::exp(-1.0)), 1e-6));
  CHECK(std::abs(g[2]) < 1e-12f);
  CHECK(g[3] == rel(1.0, 1e-6));
  nn::Softplus sharp(2.0);
  CHECK(values(sharp(tensor({1.0f})))[0] == rel(std::log(1 + std::exp(2.0)) / 2, 1e-6));  // 1.063464
  CHECK_THROWS_WITH_AS(nn::Softplus(0.0), "Softplus: beta must be positive, got 0", Error);
}

TEST_CASE("Softmax and LogSoftmax modules") {
  const Tensor x = tensor({0.0f, static_cast<float>(std::log(3.0))}, {1, 2});
  nn::Softmax sm(1);
  nn::LogSoftmax lsm(-1);
  const std::vector<float> p = values(sm(x)), lp = values(lsm(x));
  CHECK(p[0] == rel(0.25, 1e-6));
  CHECK(p[1] == rel(0.75, 1e-6));
  CHECK(lp[0] == rel(std::log(0.25), 1e-6));
  CHECK(lp[1] == rel(std::log(0.75), 1e-6));
}

TEST_CASE("activations pass gradcheck away from their kinks") {
  using In = const std::vector<Tensor>&;
  const Tensor x = tensor({-1.5f, -0.7f, -0.2f, 0.3f, 0.9f, 1.6f}, {2, 3});
  nn::LeakyReLU leaky(0.2);
  nn::ELU elu(1.5);
  nn::SiLU silu;
  nn::Softplus softplus(1.5);
  for (nn::Layer* layer : std::vector<nn::Layer*>{&leaky, &elu, &silu, &softplus}) {
    const GradcheckResult r = gradcheck([&](In in) { return (*layer)(in[0]); }, {x});
    INFO(r.message);
    CHECK(r.ok);
  }
}

TEST_CASE("ModuleList names children by position and owns any module type") {
  nn::ModuleList list{nn::Linear(2, 3), nn::ReLU()};
  list.push_back(nn::Linear(3, 1));
  CHECK(list.size() == 3);
  std::vector<std::string> names;
  for (auto& [name, t] : list.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK(list.at<nn::Linear>(0).out_features() == 3);
  CHECK(list.parameters()[2].same(list.at<nn::Linear>(2).weight));
  CHECK_THROWS_WITH_AS(list.at<nn::Linear>(1), "ModuleList: module 1 is not of the requested type", Error);
  CHECK_THROWS_WITH_AS(list[5], "ModuleList: index 5 is out of range for 3 modules", Error);
  list.eval();
  CHECK_FALSE(list[1].is_training());
  int count = 0;
  for (auto& m : list) count += m->is_training() ? 0 : 1;
  CHECK(count == 3);
}

TEST_CASE("ModuleDict names children by key in insertion order") {
  nn::ModuleDict heads;
  nn::Linear& item = heads.insert("item", nn::Linear(4, 10));
  heads.insert("group", nn::Linear(4, 2, {.bias = false}));
  CHECK(heads.keys() == std::vector<std::string>{"item", "group"});
  CHECK(heads.contains("group"));
  CHECK_FALSE(heads.contains("price"));
  std::vector<std::string> names;
  for (auto& [name, t] : heads.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"item.weight", "item.bias", "group.weight"});
  CHECK(&heads.at<nn::Linear>("item") == &item);
  CHECK(heads.at<nn::Linear>("group")(zeros({5, 4})).shape() == Shape{5, 2});
  CHECK_THROWS_WITH_AS(heads.insert("item", nn::ReLU()), "ModuleDict: key 'item' is already present", Error);
  CHECK_THROWS_WITH_AS(heads.insert("a.b", nn::ReLU()), "ModuleDict: key 'a.b' must be non-empty and contain no '.'",
                       Error);
  CHECK_THROWS_WITH_AS(heads["price"], "ModuleDict: no module named 'price' (keys: item, group)", Error);
  heads.eval();
  CHECK_FALSE(heads["group"].is_training());
}
