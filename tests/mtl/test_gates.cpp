#include <doctest/doctest.h>

#include <cmath>

#include "ladon.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::parameter;
using testing::set_values;

namespace {
void check_vec(const std::vector<float>& got, const std::vector<double>& want, double tol = 1e-6) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(tol));
}
}  // namespace

TEST_CASE("gate temperature: softmax(z / T), by hand") {
  // One input, three experts, logits z = (2 ln 3, 0, 0) at x = 1.
  for (const double t : {1.0, 2.0, 0.5}) {
    CAPTURE(t);
    mtl::Gate gate(1, 3, {.temperature = t});
    set_values(parameter(gate, "0.weight"), {2 * std::log(3.0f), 0, 0});
    set_values(parameter(gate, "0.bias"), {0, 0, 0});
    const std::vector<float> w = gate(ones({1, 1})).to_vector<float>();
    // z / T = (2 ln 3 / T, 0, 0): weights (3^(2/T), 1, 1) / (3^(2/T) + 2).
    const double top = std::pow(3.0, 2.0 / t);
    check_vec(w, {top / (top + 2), 1 / (top + 2), 1 / (top + 2)});
  }
  // T = 1: 9/11; T = 2 flattens to 3/5; T = 0.5 sharpens to 81/83.
  mtl::Gate flat(1, 3, {.temperature = 2.0});
  set_values(parameter(flat, "0.weight"), {2 * std::log(3.0f), 0, 0});
  set_values(parameter(flat, "0.bias"), {0, 0, 0});
  check_vec(flat(ones({1, 1})).to_vector<float>(), {0.6, 0.2, 0.2});
  CHECK_THROWS_WITH_AS(mtl::Gate(1, 3, {.temperature = 0.0}), "Gate: temperature must be positive, got 0", Error);
  CHECK_THROWS_WITH_AS(mtl::MMoE({.in = 2, .experts = 2, .tasks = {{"a", 1, {}, mtl::TaskKind::regression}}, .gate = {.temperature = -1}}),
                       "Gate: temperature must be positive, got -1", Error);
  CHECK_THROWS_WITH_AS(mtl::Gate(2, 3, {.hidden = {4, 0}}), "Gate: hidden sizes must be positive, got [4, 0]", Error);
}

TEST_CASE("MLP gate: ReLU between its layers, by hand") {
  // h = relu(x, -x); logits = h: x = ln 2 gives softmax(ln 2, 0) = (2/3, 1/3), x = -ln 2 the mirror.
  mtl::Gate gate(1, 2, {.hidden = {2}});
  std::vector<std::string> names;
  for (auto& [n, t] : gate.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"});
  set_values(parameter(gate, "0.weight"), {1, -1});
  set_values(parameter(gate, "0.bias"), {0, 0});
  set_values(parameter(gate, "1.weight"), {1, 0, 0, 1});
  set_values(parameter(gate, "1.bias"), {0, 0});
  const float ln2 = std::log(2.0f);
  check_vec(gate(tensor({ln2, -ln2}, {2, 1})).to_vector<float>(), {2.0 / 3, 1.0 / 3, 1.0 / 3, 2.0 / 3});
}

TEST_CASE("MMoE with MLP gates and a temperature: shapes, gradients, distributions") {
  Generator gen(3);
  mtl::MMoE model({.in = 3,
                   .experts = 4,
                   .expert_hidden = {5},
                   .tasks = {{"a", 2, {}}, {"b", 1, {}, mtl::TaskKind::regression}},
                   .gate = {.temperature = 0.5, .hidden = {6}}},
                  gen);
  CHECK(parameter(model, "gates.a.0.weight").shape() == Shape{6, 3});
  CHECK(parameter(model, "gates.b.1.weight").shape() == Shape{4, 6});
  const Tensor x = randn({5, 3}, gen);
  const auto f = [&model](const std::vector<Tensor>& in) {
    const auto out = model(in[0]);
    return sum(out[0]) + sum(out[1] * out[1]);
  };
  const GradcheckResult r = gradcheck(f, {x}, {.eps = 1e-3, .atol = 1e-3, .rtol = 2e-2});
  INFO(r.message);
  CHECK(r.ok);
  model.zero_grad();
  f({x}).backward();
  for (auto& [name, p] : model.named_parameters()) {
    CAPTURE(name);
    CHECK(p.grad().defined());
  }
  CHECK(allclose(sum(model.gate_weights(1), {1}), ones({5}), 1e-5, 1e-6));
}

TEST_CASE("forward_gates: the fused GEMM equals each gate on its own") {
  Generator gen(4);
  const Tensor x = randn({6, 3}, gen);
  for (const double second_temperature : {2.0, 0.25}) {  // 2.0 == first: fused; 0.25: one by one
    std::vector<mtl::Gate> gates;
    gates.emplace_back(3, 4, mtl::GateOptions{.temperature = 2.0}, gen);
    gates.emplace_back(3, 4, mtl::GateOptions{.temperature = second_temperature}, gen);
    const Tensor together = mtl::forward_gates(gates, x);
    REQUIRE(together.shape() == Shape{6, 2, 4});
    for (std::int64_t g = 0; g < 2; ++g)
      CHECK(allclose(together.narrow(1, g, 1).squeeze(1), gates[g](x), 1e-6, 1e-7));
    sum(together * together).backward();
    CHECK(gates[1].parameters()[0].grad().defined());
  }
}

TEST_CASE("MMoE gates belong to their task, OMoE's one gate is shared") {
  const std::vector<mtl::TaskSpec> tasks = {{"a", 2, {3}}, {"b", 1, {}, mtl::TaskKind::regression}};
  mtl::MMoE mmoe({.in = 3, .experts = 2, .expert_hidden = {4}, .tasks = tasks, .gate = {.hidden = {5}}});
  CHECK(mmoe.owner_task("gates.a.0.weight") == 0);
  CHECK(mmoe.owner_task("gates.b.1.bias") == 1);
  CHECK(mmoe.owner_task("experts.0.weight") == -1);
  // Task a owns its gate (2 layers: 5*3+5 + 2*5+2 = 32) and tower (4*3+3 + 3*2+2 = 23).
  std::int64_t a = 0;
  for (const Tensor& p : mmoe.task_parameters(0)) a += p.numel();
  CHECK(a == 32 + 23);
  std::int64_t shared = 0;
  for (const Tensor& p : mmoe.shared_parameters()) shared += p.numel();
  CHECK(shared == 3 * 2 * 4 + 2 * 4);  // experts only
  mtl::OMoE omoe({.in = 3, .experts = 2, .expert_hidden = {4}, .tasks = tasks});
  CHECK(omoe.owner_task("gate.0.weight") == -1);
  std::int64_t omoe_shared = 0;
  for (const Tensor& p : omoe.shared_parameters()) omoe_shared += p.numel();
  CHECK(omoe_shared == (3 * 2 * 4 + 2 * 4) + (2 * 3 + 2));  // experts and the gate
}

TEST_CASE("PLE takes gate options for its task and shared gates") {
  mtl::PLE ple({.in = 4,
                .levels = 2,
                .shared_experts = 1,
                .task_experts = 2,
                .expert_hidden = {5},
                .tasks = {{"a", 2, {}}, {"b", 1, {}, mtl::TaskKind::regression}},
                .gate = {.temperature = 2.0, .hidden = {3}}});
  CHECK(parameter(ple, "levels.0.gates.a.0.weight").shape() == Shape{3, 4});
  CHECK(parameter(ple, "levels.1.gates.b.1.weight").shape() == Shape{2 + 1, 3});
  CHECK(parameter(ple, "levels.0.shared_gate.1.weight").shape() == Shape{2 * 2 + 1, 3});
  CHECK(ple.owner_task("levels.1.gates.b.1.weight") == 1);
  ple(randn({2, 4}));
  CHECK(allclose(sum(ple.gate_weights(0), {1}), ones({2}), 1e-5, 1e-6));
}

TEST_CASE("dropping the expert no task uses, by hand") {
  Generator gen(6);
  mtl::MMoE model({.in = 2, .experts = 3, .expert_hidden = {2, 3}, .tasks = {{"a", 1, {}, mtl::TaskKind::regression}, {"b", 2, {}}}}, gen);
  // Both gates: zero weights and bias (0, 0, -20), so expert 2 gets e^-20 / (2 + e^-20), about 1e-9.
  for (const char* task : {"a", "b"}) {
    set_values(parameter(model, std::string("gates.") + task + ".0.weight"), {0, 0, 0, 0, 0, 0});
    set_values(parameter(model, std::string("gates.") + task + ".0.bias"), {0, 0, -20});
  }
  const Tensor x = randn({8, 2}, gen);
  const std::vector<Tensor> before = model(x);
  const std::vector<float> first_weight = parameter(model, "experts.0.weight").to_vector<float>();  // [2, 3*2]
  const std::vector<float> second_weight = parameter(model, "experts.1.weight").to_vector<float>();  // [3, 2, 3]
  const std::vector<mtl::GateStats> stats = {mtl::gate_stats(model.gate_weights(0)),
                                             mtl::gate_stats(model.gate_weights(1))};
  const mtl::ExpertDropReport report = model.drop_unused_experts(stats);
  CHECK(report.dropped == std::vector<std::int64_t>{2});
  CHECK(report.experts_before == 3);
  CHECK(report.experts_after == 2);
  CHECK(model.num_experts() == 2);
  // One expert: 2*2+2 + 2*3+3 = 15 parameters; its row in each of two gates: 2+1 each.
  CHECK(report.parameters_before - report.parameters_after == 15 + 2 * 3);
  CHECK(report.parameters_after == model.num_parameters());
  // Kept weights are copied unchanged: each input row keeps its first 2*2 columns, the deeper
  // layer its first two experts.
  const std::vector<float> kept = parameter(model, "experts.0.weight").to_vector<float>();
  CHECK(kept == std::vector<float>{first_weight[0], first_weight[1], first_weight[2], first_weight[3], first_weight[6],
                                   first_weight[7], first_weight[8], first_weight[9]});
  CHECK(parameter(model, "experts.1.weight").to_vector<float>() ==
        std::vector<float>(second_weight.begin(), second_weight.begin() + 2 * 2 * 3));
  CHECK(parameter(model, "gates.b.0.bias").to_vector<float>() == std::vector<float>{0, 0});
  // Outputs move only by the dropped expert's e^-20 share.
  const std::vector<Tensor> after = model(x);
  for (std::size_t t = 0; t < 2; ++t) CHECK(allclose(after[t], before[t], 1e-6, 1e-6));
  // Nothing unused: nothing dropped.
  const mtl::ExpertDropReport again =
      model.drop_unused_experts({mtl::gate_stats(model.gate_weights(0)), mtl::gate_stats(model.gate_weights(1))});
  CHECK(again.dropped.empty());
  CHECK(again.parameters_after == again.parameters_before);
  CHECK_THROWS_WITH_AS(model.drop_unused_experts({stats[0]}), "drop_unused_experts: 1 gate statistics for 2 tasks",
                       Error);
  CHECK_THROWS_WITH_AS(model.drop_unused_experts(stats),
                       "drop_unused_experts: gate statistics over 3 experts for a model with 2", Error);
}

TEST_CASE("dropping experts also trims an MLP gate's last layer, and only when every task agrees") {
  Generator gen(7);
  mtl::MMoE model({.in = 2, .experts = 3, .expert_hidden = {2}, .tasks = {{"a", 1, {}, mtl::TaskKind::regression}, {"b", 1, {}, mtl::TaskKind::regression}},
                   .gate = {.hidden = {4}}},
                  gen);
  mtl::GateStats ignores_1, ignores_2;
  ignores_1.mean_weight = {0.5, 0.001, 0.499};
  ignores_2.mean_weight = {0.5, 0.499, 0.001};
  // Task a ignores expert 1 but task b uses it, and the other way round for expert 2: keep all.
  CHECK(model.drop_unused_experts({ignores_1, ignores_2}).dropped.empty());
  const mtl::ExpertDropReport report = model.drop_unused_experts({ignores_1, ignores_1});
  CHECK(report.dropped == std::vector<std::int64_t>{1});
  // Expert: 2*2+2; each gate's last layer loses one row of 4 weights and a bias.
  CHECK(report.parameters_before - report.parameters_after == 6 + 2 * 5);
  CHECK(parameter(model, "gates.a.1.weight").shape() == Shape{2, 4});
  CHECK(parameter(model, "gates.a.0.weight").shape() == Shape{4, 2});
  CHECK(model(randn({3, 2}, gen))[0].shape() == Shape{3, 1});
  CHECK(model.gate_weights(1).shape() == Shape{3, 2});
}
