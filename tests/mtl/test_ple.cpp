#include <doctest/doctest.h>

#include "ladon.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::parameter;

namespace {
const std::vector<mtl::TaskSpec> kTasks = {{"a", 2, {3}}, {"b", 1, {}, mtl::TaskKind::regression}};
}  // namespace

TEST_CASE("CGC: each task's gate sees only its own experts and the shared ones") {
  Generator gen(3);
  mtl::CGC cgc({.in = 4, .shared_experts = 2, .task_experts = 3, .expert_hidden = {5}, .tasks = kTasks}, gen);
  const Tensor x = randn({6, 4}, gen);
  const auto out = cgc(x);
  CHECK(out[0].shape() == Shape{6, 2});
  CHECK(out[1].shape() == Shape{6, 1});
  CHECK(cgc.gate_weights(0).shape() == Shape{6, 5});
  CHECK(allclose(sum(cgc.gate_weights(1), {1}), ones({6}), 1e-5, 1e-6));
  // Perturbing task b's own experts leaves task a's output unchanged: a never sees them.
  float* w = parameter(cgc, "levels.0.experts.b.0.weight").data<float>();
  for (int i = 0; i < 10; ++i) w[i] += 1.0f;
  const auto after = cgc(x);
  CHECK(equal(after[0], out[0]));
  CHECK_FALSE(equal(after[1], out[1]));
}

TEST_CASE("PLE: the shared gate carries every task's experts to the next level") {
  Generator gen(4);
  // Linear towers: a ReLU tower could be dead on a tiny batch and hide the dependency checked below.
  const std::vector<mtl::TaskSpec> tasks = {{"a", 2, {}}, {"b", 1, {}, mtl::TaskKind::regression}};
  mtl::PLE ple({.in = 4, .levels = 2, .shared_experts = 1, .task_experts = 2, .expert_hidden = {5}, .tasks = tasks},
               gen);
  std::vector<std::string> names;
  for (auto& [n, t] : ple.named_parameters()) names.push_back(n);
  const auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  CHECK(has("levels.0.shared_gate.0.weight"));
  CHECK_FALSE(has("levels.1.shared_gate.0.weight"));  // the last level has only task gates
  CHECK(parameter(ple, "levels.0.shared_gate.0.weight").shape() == Shape{2 * 2 + 1, 4});
  CHECK(parameter(ple, "levels.1.gates.a.0.weight").shape() == Shape{2 + 1, 5});
  const Tensor x = randn({3, 4}, gen);
  const auto out = ple(x);
  // Unlike CGC, task b's level-0 experts now reach task a through the shared branch.
  float* w = parameter(ple, "levels.0.experts.b.0.weight").data<float>();
  for (int i = 0; i < 10; ++i) w[i] += 1.0f;
  CHECK_FALSE(equal(ple(x)[0], out[0]));
  // Every parameter gets a gradient.
  sum(out[0]).backward();
  const auto out2 = ple(x);
  (sum(out2[0]) + sum(out2[1])).backward();
  for (auto& [n, p] : ple.named_parameters()) {
    CAPTURE(n);
    CHECK(p.grad().defined());
  }
  CHECK_THROWS_WITH_AS(mtl::PLE({.in = 4, .levels = 2, .shared_experts = 0, .tasks = kTasks}),
                       "PLE: levels above one pass the shared branch on, so they need shared_experts > 0", Error);
}

TEST_CASE("shared and task-specific parameters are split by name") {
  mtl::PLE ple({.in = 4, .levels = 2, .shared_experts = 1, .task_experts = 2, .expert_hidden = {5}, .tasks = kTasks});
  CHECK(ple.owner_task("levels.0.experts.b.0.weight") == 1);
  CHECK(ple.owner_task("levels.1.gates.a.0.bias") == 0);
  CHECK(ple.owner_task("towers.a.2.weight") == 0);
  CHECK(ple.owner_task("levels.0.shared_gate.0.weight") == -1);
  CHECK(ple.owner_task("levels.0.shared_experts.0.weight") == -1);
  std::int64_t total = 0;
  for (const Tensor& p : ple.shared_parameters()) total += p.numel();
  for (std::size_t t = 0; t < 2; ++t)
    for (const Tensor& p : ple.task_parameters(t)) total += p.numel();
  CHECK(total == ple.num_parameters());
  mtl::MMoE mmoe({.in = 3, .experts = 2, .expert_hidden = {4}, .tasks = kTasks});
  CHECK(mmoe.shared_parameters().size() == 2);  // the experts' weight and bias: each gate belongs to its task
}

TEST_CASE("cross-stitch: columns mixed by near-identity units, by hand") {
  mtl::CrossStitch cs({.in = 2, .hidden = {1}, .tasks = {{"a", 1, {}, mtl::TaskKind::regression}, {"b", 1, {}, mtl::TaskKind::regression}}});
  // Column a: relu(x0), column b: relu(x1); towers are identity.
  auto set = [&](const std::string& name, std::vector<float> v) {
    for (auto& [n, t] : cs.named_parameters())
      if (n == name) std::copy(v.begin(), v.end(), t.data<float>());
  };
  set("columns.a.0.weight", {1, 0});
  set("columns.a.0.bias", {0});
  set("columns.b.0.weight", {0, 1});
  set("columns.b.0.bias", {0});
  set("towers.a.0.weight", {1});
  set("towers.a.0.bias", {0});
  set("towers.b.0.weight", {1});
  set("towers.b.0.bias", {0});
  CHECK(cs.stitch(0).to_vector<float>() == std::vector<float>{0.9f, 0.1f, 0.1f, 0.9f});
  const auto out = cs(tensor({10, 20}, {1, 2}));
  CHECK(out[0].item() == doctest::Approx(0.9 * 10 + 0.1 * 20));
  CHECK(out[1].item() == doctest::Approx(0.1 * 10 + 0.9 * 20));
  CHECK(cs.owner_task("columns.b.0.weight") == 1);
  CHECK(cs.owner_task("stitch.0") == -1);
  (sum(out[0]) + sum(out[1])).backward();
  CHECK(cs.stitch(0).grad().defined());
}
