#include <doctest/doctest.h>

#include <cmath>

#include "ladon.h"
#include "tests/helpers.h"
#include "mtl/architectures.h"
#include "mtl/loss_weighting.h"

using namespace ladon;
using testing::parameter;
using testing::set_values;

namespace {

const std::vector<mtl::TaskSpec> kTwoTasks = {{"a", 3, {4}}, {"b", 1, {}, mtl::TaskKind::regression}};
}  // namespace

TEST_CASE("MMoE: shapes, parameter names, and gates that are distributions") {
  Generator gen(1);
  mtl::MMoE model({.in = 5, .experts = 3, .expert_hidden = {6, 4}, .tasks = kTwoTasks}, gen);
  const Tensor x = randn({7, 5}, gen);
  const auto out = model(x);
  REQUIRE(out.size() == 2);
  CHECK(out[0].shape() == Shape{7, 3});
  CHECK(out[1].shape() == Shape{7, 1});
  std::vector<std::string> names;
  for (auto& [n, t] : model.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"experts.0.weight", "experts.0.bias", "experts.1.weight", "experts.1.bias",
                                          "gates.a.0.weight", "gates.a.0.bias", "gates.b.0.weight",
                                          "gates.b.0.bias", "towers.a.0.weight", "towers.a.0.bias",
                                          "towers.a.2.weight", "towers.a.2.bias", "towers.b.0.weight",
                                          "towers.b.0.bias"});
  for (std::size_t t = 0; t < 2; ++t) {
    const Tensor g = model.gate_weights(t);
    CHECK(g.shape() == Shape{7, 3});
    CHECK(allclose(sum(g, {1}), ones({7}), 1e-5, 1e-6));
  }
  CHECK_FALSE(equal(model.gate_weights(0), model.gate_weights(1)));
  CHECK_THROWS_WITH_AS(model(randn({7, 4}, gen)), "MMoE: expects input [batch, 5], got [7, 4]", Error);
}

TEST_CASE("MMoE costs n*d more parameters per extra task gate than OMoE") {
  // The paper's count: each extra gate is one n x d matrix (plus, here, an n-vector of biases).
  mtl::MMoE mmoe({.in = 100, .experts = 8, .expert_hidden = {16}, .tasks = {{"a", 1, {8}, mtl::TaskKind::regression}, {"b", 1, {8}, mtl::TaskKind::regression}}});
  mtl::OMoE omoe({.in = 100, .experts = 8, .expert_hidden = {16}, .tasks = {{"a", 1, {8}, mtl::TaskKind::regression}, {"b", 1, {8}, mtl::TaskKind::regression}}});
  CHECK(mmoe.num_parameters() - omoe.num_parameters() == 8 * 100 + 8);
  // Experts: 100*16*8 weights + 16*8 biases; towers: (16*8+8) + (8+1) each; gate 100*8+8 per task.
  CHECK(omoe.num_parameters() == (100 * 16 * 8 + 16 * 8) + 2 * (16 * 8 + 8 + 8 + 1) + (100 * 8 + 8));
}

TEST_CASE("MMoE output worked out by hand") {
  // in = 2, two experts of width 1, identity-like towers (one Linear 1 -> 1).
  mtl::MMoE model({.in = 2, .experts = 2, .expert_hidden = {1}, .tasks = {{"a", 1, {}, mtl::TaskKind::regression}, {"b", 1, {}, mtl::TaskKind::regression}}});
  set_values(parameter(model, "experts.0.weight"), {1, 0, 0, 1});  // [in=2, experts*h=2]: expert0 = relu(x0), expert1 = relu(x1)
  set_values(parameter(model, "experts.0.bias"), {0, 0});
  // Task a's gate logits (x0, 0); task b's all zero -> uniform.
  set_values(parameter(model, "gates.a.0.weight"), {1, 0, 0, 0});
  set_values(parameter(model, "gates.a.0.bias"), {0, 0});
  set_values(parameter(model, "gates.b.0.weight"), {0, 0, 0, 0});
  set_values(parameter(model, "gates.b.0.bias"), {0, 0});
  set_values(parameter(model, "towers.a.0.weight"), {2});
  set_values(parameter(model, "towers.a.0.bias"), {1});
  set_values(parameter(model, "towers.b.0.weight"), {1});
  set_values(parameter(model, "towers.b.0.bias"), {0});
  const Tensor x = tensor({std::log(3.0f), 2.0f}, {1, 2});
  const auto out = model(x);
  // Task a: gates softmax(ln3, 0) = (3/4, 1/4); mix = 3/4*ln3 + 1/4*2; y = 2*mix + 1.
  const double mix_a = 0.75 * std::log(3.0) + 0.25 * 2.0;
  CHECK(out[0].item() == doctest::Approx(2 * mix_a + 1).epsilon(1e-6));
  // Task b: uniform gates; y = (ln3 + 2) / 2.
  CHECK(out[1].item() == doctest::Approx((std::log(3.0) + 2.0) / 2).epsilon(1e-6));
  CHECK(allclose(model.gate_weights(0), tensor({0.75f, 0.25f}, {1, 2}), 1e-6, 1e-7));
}

TEST_CASE("ExpertBank's fused GEMMs equal each expert computed on its own") {
  Generator gen(5);
  mtl::ExpertBank bank(3, 4, {5, 2}, gen);
  const Tensor x = randn({6, 3}, gen);
  const Tensor out = bank.forward(x);  // [6, 4, 2]
  auto named = bank.named_parameters();
  const Tensor w0 = named[0].second, b0 = named[1].second, w1 = named[2].second, b1 = named[3].second;
  for (std::int64_t e = 0; e < 4; ++e) {
    const Tensor h = relu(matmul(x, w0.narrow(1, e * 5, 5)) + b0.narrow(0, e * 5, 5));
    const Tensor y = relu(matmul(h, w1.narrow(0, e, 1).squeeze(0)) + b1.narrow(0, e, 1).squeeze(0));
    CHECK(allclose(out.narrow(1, e, 1).squeeze(1), y, 1e-5, 1e-6));
  }
}

TEST_CASE("gradients flow through every multi-task architecture") {
  Generator gen(2);
  const Tensor x = randn({4, 3}, gen);
  mtl::MMoE mmoe({.in = 3, .experts = 2, .expert_hidden = {4}, .tasks = kTwoTasks}, gen);
  mtl::OMoE omoe({.in = 3, .experts = 2, .expert_hidden = {4, 3}, .tasks = kTwoTasks}, gen);
  mtl::SharedBottom shared({.in = 3, .trunk_hidden = {5, 4}, .tasks = kTwoTasks}, gen);
  for (mtl::MultiTaskModel* model : std::vector<mtl::MultiTaskModel*>{&mmoe, &omoe, &shared}) {
    CAPTURE(model->named_parameters()[0].first);
    // Whole-model gradient check with respect to the input.
    const auto f = [model](const std::vector<Tensor>& in) {
      const auto out = (*model)(in[0]);
      return sum(out[0]) + sum(out[1] * out[1]);
    };
    // A small step: ReLU kinks inside the model must not fall between x - eps and x + eps.
    const GradcheckResult r = gradcheck(f, {x}, {.eps = 1e-3, .atol = 1e-3, .rtol = 2e-2});
    INFO(r.message);
    CHECK(r.ok);
    // Every parameter receives a gradient.
    model->zero_grad();
    f({x}).backward();
    for (auto& [name, p] : model->named_parameters()) {
      CAPTURE(name);
      CHECK(p.grad().defined());
    }
  }
}

TEST_CASE("adding and removing tasks keeps the experts and the other tasks' outputs") {
  Generator gen(8);
  mtl::MMoE model({.in = 3, .experts = 2, .expert_hidden = {4}, .tasks = {{"a", 2, {}}, {"b", 1, {}, mtl::TaskKind::regression}}}, gen);
  const Tensor x = randn({5, 3}, gen);
  const auto before = model(x);
  model.add_task({"c", 3, {2}}, gen);
  CHECK(model.num_tasks() == 3);
  const auto after = model(x);
  CHECK(equal(after[0], before[0]));
  CHECK(equal(after[1], before[1]));
  CHECK(after[2].shape() == Shape{5, 3});
  CHECK(parameter(model, "gates.c.0.weight").shape() == Shape{2, 3});  // a fresh gate of its own
  model.remove_task("a");
  const auto removed = model(x);
  REQUIRE(removed.size() == 2);
  CHECK(equal(removed[0], before[1]));
  CHECK(equal(removed[1], after[2]));
  CHECK(model.tasks()[0].name == "b");
  for (auto& [name, p] : model.named_parameters()) CHECK(name.find(".a.") == std::string::npos);
  CHECK_THROWS_WITH_AS(model.remove_task("a"), "remove_task: no task named 'a'", Error);
  CHECK_THROWS_WITH_AS(model.add_task({"b", 1, {}, mtl::TaskKind::regression}), "add_task: a task named 'b' exists already", Error);
  mtl::OMoE omoe({.in = 3, .experts = 2, .expert_hidden = {4}, .tasks = {{"a", 2, {}}}}, gen);
  omoe.add_task({"b", 1, {}, mtl::TaskKind::regression}, gen);
  CHECK(parameter(omoe, "gate.0.weight").shape() == Shape{2, 3});  // one shared gate stays one gate
}

TEST_CASE("SharedBottom: a new task gets a tower on the trained trunk; removing one drops its tower") {
  Generator gen(9);
  mtl::SharedBottom model({.in = 3, .trunk_hidden = {4}, .tasks = {{"a", 2, {}}, {"b", 1, {}, mtl::TaskKind::regression}}}, gen);
  const Tensor x = randn({5, 3}, gen);
  const auto before = model(x);
  const Tensor trunk_weight = parameter(model, "trunk.0.weight").clone();
  model.add_task({"c", 3, {2}}, gen);
  const auto after = model(x);
  REQUIRE(after.size() == 3);
  CHECK(equal(after[0], before[0]));
  CHECK(equal(after[1], before[1]));
  CHECK(after[2].shape() == Shape{5, 3});
  CHECK(parameter(model, "towers.c.0.weight").shape() == Shape{2, 4});  // reads the 4-wide trunk
  CHECK(model.owner_task("towers.c.2.bias") == 2);
  model.remove_task("a");
  const auto removed = model(x);
  REQUIRE(removed.size() == 2);
  CHECK(equal(removed[0], before[1]));
  CHECK(equal(removed[1], after[2]));
  CHECK(equal(parameter(model, "trunk.0.weight"), trunk_weight));
  CHECK_THROWS_WITH_AS(model.add_task({"c", 1, {}, mtl::TaskKind::regression}), "add_task: a task named 'c' exists already", Error);
  CHECK_THROWS_WITH_AS(model.add_task({"d", 0, {}}), doctest::Contains("add_task: multiclass task 'd' needs out >= 2 classes, got 0"), Error);
  model.remove_task("b");
  CHECK_THROWS_WITH_AS(model.remove_task("c"), "remove_task: cannot remove the only task 'c'", Error);
}
