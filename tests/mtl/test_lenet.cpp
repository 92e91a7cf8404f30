// The Pareto-MTL LeNet (mtl/lenet.h): layer shapes, parameter names and counts, which parameters
// are shared and which are each task's, and that every balancer kind trains it (MGDA-UB through
// its 50-wide representation).
#include <doctest/doctest.h>

#include "ladon.h"

using namespace ladon;

namespace {
const std::vector<mtl::TaskSpec> kTasks = {{"top_left", 10, {}}, {"bottom_right", 10, {}}};
}  // namespace

TEST_CASE("lenet: shapes, names, counts and ownership on 28 x 28 and 36 x 36 images") {
  // 28: conv 9 -> 20, pool -> 10, conv 5 -> 6, pool -> 3: 20 * 3 * 3. 36 (Pareto MTL): 28, 14, 10, 5.
  CHECK(mtl::lenet_flatten_size(28) == 180);
  CHECK(mtl::lenet_flatten_size(36) == 500);
  CHECK(mtl::lenet_flatten_size(20) == 20);
  Generator gen(3);
  mtl::SharedBottom model = mtl::lenet({.side = 28, .tasks = kTasks}, gen);
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  for (auto& [n, t] : model.named_parameters()) names.push_back(n), shapes.push_back(t.shape());
  CHECK(names == std::vector<std::string>{"trunk.0.weight", "trunk.0.bias", "trunk.3.weight", "trunk.3.bias",
                                          "trunk.7.weight", "trunk.7.bias", "towers.top_left.0.weight",
                                          "towers.top_left.0.bias", "towers.bottom_right.0.weight",
                                          "towers.bottom_right.0.bias"});
  CHECK(shapes ==
        std::vector<Shape>{{10, 1, 9, 9}, {10}, {20, 10, 5, 5}, {20}, {50, 180}, {50}, {10, 50}, {10}, {10, 50}, {10}});
  // 820 + 5020 + 9050 shared, 510 per head.
  CHECK(model.num_parameters() == 820 + 5020 + 9050 + 2 * 510);
  CHECK(model.shared_parameters().size() == 6);
  CHECK(model.task_parameters(0).size() == 2);
  CHECK(model.owner_task("towers.bottom_right.0.weight") == 1);
  CHECK(model.owner_task("trunk.7.weight") == -1);

  const Tensor x = randn({5, 1, 28, 28}, gen);
  const auto out = model(x);
  REQUIRE(out.size() == 2);
  CHECK(out[0].shape() == Shape{5, 10});
  CHECK(out[1].shape() == Shape{5, 10});
  REQUIRE(model.representation().size() == 1);
  CHECK(model.representation()[0].shape() == Shape{5, 50});

  mtl::SharedBottom pareto = mtl::lenet({.side = 36, .tasks = kTasks}, gen);
  CHECK(pareto(randn({2, 1, 36, 36}, gen))[1].shape() == Shape{2, 10});
}

TEST_CASE("lenet: a loss weighting, a gradient method and MGDA-UB each set every gradient") {
  Generator gen(4);
  const Tensor x = randn({6, 1, 28, 28}, gen);
  const Tensor y0 = tensor(std::vector<std::int64_t>{0, 1, 2, 3, 4, 5}, {6});
  const Tensor y1 = tensor(std::vector<std::int64_t>{9, 8, 7, 6, 5, 4}, {6});
  std::vector<std::unique_ptr<mtl::Balancer>> balancers;
  balancers.push_back(std::make_unique<mtl::StaticWeighting>(mtl::StaticWeighting::equal(2)));
  balancers.push_back(std::make_unique<mtl::UPGrad>(2));
  balancers.push_back(std::make_unique<mtl::MGDA>(2, mtl::MGDAOptions{.upper_bound = true}));
  for (auto& balancer : balancers) {
    Generator init(5);
    mtl::SharedBottom model = mtl::lenet({.tasks = kTasks}, init);
    const auto out = model(x);
    balancer->backward({nn::cross_entropy(out[0], y0), nn::cross_entropy(out[1], y1)}, model);
    for (auto& [name, p] : model.named_parameters()) {
      INFO(name);
      REQUIRE(p.grad().defined());
      double norm = 0;
      for (float g : p.grad().to_vector<float>()) norm += double{g} * g;
      CHECK(norm > 0);
    }
  }
}

TEST_CASE("lenet: images too small for its layers, and bad tasks") {
  CHECK_THROWS_WITH_AS(mtl::lenet({.side = 19, .tasks = kTasks}),
                       "lenet: needs images of side >= 20 (9x9 conv, pool 2, 5x5 conv, pool 2), got 19", Error);
  CHECK_THROWS_AS(mtl::lenet({.side = 28, .tasks = {}}), Error);
}

TEST_CASE("lenet: the no-grad forward (FAMO's after-step losses) gives the recorded losses bit for bit, no graph") {
  Generator gen(11);
  mtl::SharedBottom model = mtl::lenet({.side = 28, .tasks = kTasks}, gen);
  // 37 images: several blocks of im2col columns and an odd last one.
  const Tensor x = randn({37, 1, 28, 28}, gen);
  std::vector<std::int64_t> labels(37);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>((i * 7) % 10);
  const Tensor y = tensor(labels, {37});
  const auto losses = [&](std::vector<Tensor>& kept) {
    const std::size_t live = allocator_stats().live_bytes;
    reset_peak_bytes();
    kept = model(x);
    std::vector<double> v;
    const std::size_t tasks = kept.size();
    for (std::size_t t = 0; t < tasks; ++t) {
      kept.push_back(mtl::task_loss(model.tasks()[t], kept[t], y));
      v.push_back(kept.back().item());
    }
    const AllocatorStats s = allocator_stats();
    return std::tuple{v, s.live_bytes - live, s.peak_bytes - live};
  };
  std::vector<Tensor> recorded, plain;
  const auto [with_graph, graph_live, graph_peak] = losses(recorded);
  NoGradGuard no_grad;
  const auto [without, plain_live, plain_peak] = losses(plain);
  CHECK(without == with_graph);
  for (const Tensor& t : recorded) CHECK(t.grad_fn() != nullptr);
  for (const Tensor& t : plain) {
    CHECK(t.grad_fn() == nullptr);
    CHECK_FALSE(t.requires_grad());
  }
  // The recorded forward keeps its activations (and the pools' winners) for the backward; the
  // no-grad one only its outputs and losses, and at its peak less than the recorded one holds.
  CAPTURE(graph_live);
  CAPTURE(plain_live);
  CAPTURE(plain_peak);
  CHECK(plain_live * 20 < graph_live);
  CHECK(plain_peak < graph_live);
  CHECK(plain_peak < graph_peak);
}
