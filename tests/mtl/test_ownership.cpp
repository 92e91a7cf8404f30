// Which parameters belong to which task is structure (TaskHeads), never the spelling of names;
// task names are validated when a model is built; a task's kind decides its loss and metric.
#include <doctest/doctest.h>

#include <cmath>

#include "helpers.h"
#include "ladon.h"

using namespace ladon;
using ladon::testing::parameter;

namespace {
std::vector<mtl::TaskSpec> two(const std::string& a, const std::string& b) {
  return {{a, 3, {4}}, {b, 1, {}, mtl::TaskKind::regression}};
}

Tensor classes(std::int64_t n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = (i * 7) % 3;
  return tensor(std::move(v), {n});
}

std::vector<std::string> shared_names(mtl::MultiTaskModel& model) {
  std::vector<std::string> out;
  for (const auto& p : model.owned_parameters())
    if (p.task < 0) out.push_back(p.name);
  return out;
}

// A model of a user's own: an embedding-like shared table, then per-task heads in TaskHeads.
class UserModel : public mtl::MultiTaskModel {
 public:
  explicit UserModel(std::vector<mtl::TaskSpec> tasks) : MultiTaskModel(std::move(tasks)), towers_(3, tasks_) {}
  std::vector<Tensor> forward(const Tensor& x) override {
    const Tensor z = relu(matmul(x, table_));
    set_representation({z});
    return towers_.forward(z);
  }
  void visit(Visitor& v) override {
    v("table", table_);
    v("towers", towers_);
  }
  Tensor table_ = randn({2, 3}).requires_grad_();
  mtl::TaskTowers towers_;
};

// A container that is not a TaskHeads but whose children happen to be named like tasks.
struct NamedLikeTasks : nn::Module {
  nn::Linear a{2, 2}, b{2, 2};
  void visit(Visitor& v) override {
    v("a", a);
    v("b", b);
  }
};
class LookAlike : public mtl::MultiTaskModel {
 public:
  LookAlike() : MultiTaskModel({{"a", 2, {}}, {"b", 2, {}}}) {}
  std::vector<Tensor> forward(const Tensor& x) override { return {part.a(x), part.b(x)}; }
  void visit(Visitor& v) override { v("towers", part); }
  NamedLikeTasks part;
};
}  // namespace

TEST_CASE("tasks named like parameter parts do not claim shared parameters") {
  Generator gen(3);
  mtl::MMoE digits({.in = 4, .experts = 2, .expert_hidden = {3}, .tasks = two("0", "1")}, gen);
  // The expert bank's parameters are experts.0.weight and experts.0.bias: shared, whatever the task names.
  CHECK(shared_names(digits) == std::vector<std::string>{"experts.0.weight", "experts.0.bias"});
  CHECK(digits.owner_task("gates.1.0.weight") == 1);
  CHECK(digits.owner_task("towers.0.0.weight") == 0);
  CHECK_THROWS_WITH_AS(digits.owner_task("nothing"), "owner_task: the model has no parameter named 'nothing'", Error);
  // A module is a task's only when it sits in TaskHeads: look-alike names under "towers" stay shared.
  LookAlike look;
  CHECK(look.shared_parameters().size() == 4);
  CHECK(look.task_parameters(0).empty());
}

TEST_CASE("task names change nothing: the same model and data give the same MGDA weights") {
  auto mgda_weights = [](const std::string& a, const std::string& b) {
    Generator gen(5);
    mtl::MMoE model({.in = 4, .experts = 3, .expert_hidden = {5}, .tasks = two(a, b)}, gen);
    const Tensor x = randn({16, 4}, gen);
    const Tensor y0 = classes(16), y1 = randn({16, 1}, gen);
    const auto out = model(x);
    mtl::MGDA mgda(2);
    (void)mgda.backward({mtl::task_loss(model.tasks()[0], out[0], y0), mtl::task_loss(model.tasks()[1], out[1], y1)},
                        model);
    return mgda.weights();
  };
  const auto reference = mgda_weights("item", "group");
  CHECK(mgda_weights("0", "1") == reference);
  CHECK(mgda_weights("ctr_v2", "experts") == reference);
}

TEST_CASE("task names are validated when a model is built") {
  auto build = [](std::vector<mtl::TaskSpec> tasks) {
    return mtl::MMoE({.in = 2, .experts = 2, .expert_hidden = {2}, .tasks = std::move(tasks)});
  };
  CHECK_THROWS_WITH_AS(build(two("ctr.v2", "cvr")),
                       "MultiTaskModel: task name 'ctr.v2' contains '.', which separates the parts of parameter names",
                       Error);
  CHECK_THROWS_WITH_AS(build(two("a", "a")), "MultiTaskModel: two tasks are named 'a'", Error);
  CHECK_THROWS_WITH_AS(build(two("", "a")), "MultiTaskModel: a task needs a name", Error);
  CHECK_THROWS_WITH_AS(build({}), "MultiTaskModel: needs at least one task", Error);
  CHECK_THROWS_WITH_AS(build({{"click", 1, {}}}),
                       "MultiTaskModel: multiclass task 'click' needs out >= 2 classes, got 1 (one output: set .kind "
                       "= TaskKind::binary or TaskKind::regression)",
                       Error);
  CHECK_THROWS_WITH_AS(build({{"click", 2, {}, mtl::TaskKind::binary}}),
                       "MultiTaskModel: binary task 'click' has one logit (out = 1), got 2", Error);
  CHECK_THROWS_WITH_AS(build({{"a", 2, {0}}}), "MultiTaskModel: task 'a' has a tower layer of size 0", Error);
  mtl::MMoE ok = build(two("a", "b"));
  CHECK_THROWS_WITH_AS(ok.add_task({"c.d", 2, {}}), doctest::Contains("add_task: task name 'c.d' contains '.'"), Error);
}

TEST_CASE("a user-written model declares ownership with TaskHeads, like the built-in ones") {
  UserModel model(two("click", "dwell"));
  CHECK(shared_names(model) == std::vector<std::string>{"table"});
  CHECK(model.task_parameters(0).size() == 4);  // towers.click: two Linear layers
  CHECK(model.owner_task("towers.dwell.0.bias") == 1);
  const auto out = model(randn({5, 2}));
  CHECK(model.representation()[0].shape() == Shape{5, 3});
  CHECK(out[1].shape() == Shape{5, 1});
}

TEST_CASE("every architecture records a representation that all its shared parameters reach the losses through") {
  // With one representation tensor, cutting the graph there must give the shared parameters their
  // whole gradient (chain rule). PLE's levels and a deeper cross-stitch record one per level
  // (checked below by count): later ones depend on earlier ones, so the cut is their union.
  Generator gen(2);
  const auto tasks = two("a", "b");
  std::vector<std::unique_ptr<mtl::MultiTaskModel>> models;
  models.push_back(std::make_unique<mtl::SharedBottom>(mtl::SharedBottomOptions{.in = 4, .trunk_hidden = {5}, .tasks = tasks}, gen));
  models.push_back(std::make_unique<mtl::OMoE>(mtl::MoEOptions{.in = 4, .experts = 2, .expert_hidden = {3}, .tasks = tasks}, gen));
  models.push_back(std::make_unique<mtl::MMoE>(mtl::MoEOptions{.in = 4, .experts = 2, .expert_hidden = {3}, .tasks = tasks}, gen));
  models.push_back(std::make_unique<mtl::PLE>(mtl::PLEOptions{.in = 4, .levels = 1, .expert_hidden = {3}, .tasks = tasks}, gen));
  models.push_back(std::make_unique<mtl::CGC>(mtl::PLEOptions{.in = 4, .expert_hidden = {3}, .tasks = tasks}, gen));
  models.push_back(std::make_unique<mtl::CrossStitch>(mtl::CrossStitchOptions{.in = 4, .hidden = {3}, .tasks = tasks}, gen));
  const Tensor x = randn({6, 4}, gen);
  const Tensor y0 = classes(6), y1 = randn({6}, gen);
  for (auto& model : models) {
    const auto out = (*model)(x);
    const std::vector<Tensor> losses = {mtl::task_loss(model->tasks()[0], out[0], y0),
                                        mtl::task_loss(model->tasks()[1], out[1], y1)};
    // Cut the graph at the representation: the shared parameters' gradient through it equals
    // their gradient through the whole graph (chain rule), so nothing shared bypasses it.
    const std::vector<Tensor> z = model->representation();
    const std::vector<Tensor> shared = model->shared_parameters();
    REQUIRE(!shared.empty());
    const Tensor total = losses[0] + losses[1];
    const std::vector<Tensor> direct = grad({total}, shared, {.retain_graph = true});
    const std::vector<Tensor> dz = grad({total}, z, {.retain_graph = true});
    const std::vector<Tensor> through = grad(z, shared, {.seeds = dz});
    REQUIRE(z.size() == 1);
    for (std::size_t k = 0; k < shared.size(); ++k) CHECK(allclose(direct[k], through[k], 1e-4, 1e-6));
  }
  mtl::PLE ple({.in = 4, .levels = 3, .expert_hidden = {3}, .tasks = tasks}, gen);
  (void)ple(x);
  CHECK(ple.representation().size() == 3);
  mtl::CrossStitch stitch({.in = 4, .hidden = {3, 3}, .tasks = tasks}, gen);
  (void)stitch(x);
  CHECK(stitch.representation().size() == 2);
}

TEST_CASE("SharedBottom takes any layer as its trunk, and gives it back by type") {
  struct Doubler : nn::Layer {
    Tensor forward(const Tensor& x) override { return x * 2.0; }
  };
  mtl::SharedBottom model(Doubler(), 3, two("a", "b"));
  const auto out = model(randn({2, 3}));
  CHECK(out[0].shape() == Shape{2, 3});
  CHECK(model.shared_parameters().empty());
  (void)model.trunk<Doubler>();
  CHECK_THROWS_WITH_AS(model.trunk<nn::Linear>(), "SharedBottom: the trunk is not of the requested type", Error);
  CHECK_THROWS_WITH_AS(mtl::SharedBottom(Doubler(), 0, two("a", "b")),
                       "SharedBottom: the trunk's output width must be positive, got 0", Error);
}

TEST_CASE("a task's kind picks its loss and its metric: a perfect binary classifier scores accuracy 1") {
  const mtl::TaskSpec click{"click", 1, {}, mtl::TaskKind::binary};
  const Tensor logits = tensor({3.0f, -2.0f, 5.0f, -4.0f}, {4, 1});
  const Tensor labels = tensor({1.0f, 0.0f, 1.0f, 0.0f}, {4});
  // BCE with logits: mean of log(1 + e^-|x|) here, since every prediction is on the right side.
  const double want = (std::log1p(std::exp(-3.0)) + std::log1p(std::exp(-2.0)) + std::log1p(std::exp(-5.0)) +
                       std::log1p(std::exp(-4.0))) / 4;
  CHECK(mtl::task_loss(click, logits, labels).item() == doctest::Approx(want));
  mtl::TaskMetrics metrics({click});
  metrics.add({logits}, {labels});
  CHECK(metrics.results()[0].metric == "accuracy");
  CHECK(metrics.results()[0].value == 1.0);
  CHECK_THROWS_WITH_AS(metrics.add({logits}, {tensor({1.0f, 0.5f, 1.0f, 0.0f}, {4})}),
                       "TaskMetrics: binary task 'click' target 0.5 is not 0 or 1", Error);
  const mtl::TaskSpec price{"price", 2, {}, mtl::TaskKind::regression};
  CHECK(mtl::task_loss(price, tensor({1.0f, 2.0f}, {1, 2}), tensor({0.0f, 0.0f}, {1, 2})).item() ==
        doctest::Approx(2.5));
}
