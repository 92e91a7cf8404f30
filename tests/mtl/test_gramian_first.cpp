// The Gramian-first path of the gradient methods (GradientBalancer::set_max_gradient_bytes): the
// Gramian summed block by block from partial backwards, the combination by one more backward. It
// must give the full path's weights and gradients (to float rounding) and hold fewer bytes at once.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include "ladon.h"

using namespace ladon;

namespace {

constexpr std::int64_t kWidth = 128, kLayers = 4, kBatch = 8;

// A four-layer trunk of 128 x 128 (P = 4 x (128 x 128 + 128) = 66,048 shared floats, in four equal
// weight-and-bias blocks) with one linear head per task.
mtl::SharedBottom trunk_model(std::size_t tasks, std::uint64_t seed) {
  std::vector<mtl::TaskSpec> specs;
  for (std::size_t t = 0; t < tasks; ++t) {
    std::string name = "t";
    name += std::to_string(t);
    specs.push_back({name, 1, {}, mtl::TaskKind::regression});
  }
  Generator gen(seed);
  return mtl::SharedBottom({.in = kWidth, .trunk_hidden = std::vector<std::int64_t>(kLayers, kWidth), .tasks = specs},
                           gen);
}

std::vector<Tensor> task_losses(mtl::SharedBottom& model, const Tensor& x, const std::vector<Tensor>& y) {
  const std::vector<Tensor> out = model(x);
  std::vector<Tensor> losses;
  for (std::size_t t = 0; t < out.size(); ++t) losses.push_back(nn::mse_loss(out[t], y[t]));
  return losses;
}

// The bytes one block of the test model's T rows takes: a budget that admits exactly one layer.
std::int64_t one_layer_budget(std::size_t tasks) {
  return static_cast<std::int64_t>(tasks) * (kWidth * kWidth + kWidth) * static_cast<std::int64_t>(sizeof(float));
}

std::int64_t shared_numel(mtl::MultiTaskModel& model) {
  std::int64_t n = 0;
  for (const auto& p : model.owned_parameters())
    if (p.task < 0) n += p.parameter.numel();
  return n;
}

using Make = std::function<std::unique_ptr<mtl::GradientBalancer>(std::size_t tasks)>;

struct Case {
  const char* name;
  Make make;
};

const std::vector<Case> kCases = {
    {"PCGrad", [](std::size_t t) { return std::make_unique<mtl::PCGrad>(t, 7); }},
    {"MGDA", [](std::size_t t) { return std::make_unique<mtl::MGDA>(t); }},
    {"MGDA l2",
     [](std::size_t t) {
       return std::make_unique<mtl::MGDA>(t, mtl::MGDAOptions{.normalization = mtl::GradNormalization::l2});
     }},
    {"CAGrad", [](std::size_t t) { return std::make_unique<mtl::CAGrad>(t, 0.5); }},
    {"UPGrad", [](std::size_t t) { return std::make_unique<mtl::UPGrad>(t); }},
    {"DualProj", [](std::size_t t) { return std::make_unique<mtl::DualProj>(t); }},
    {"IMTLG", [](std::size_t t) { return std::make_unique<mtl::IMTLG>(t); }},
    {"AlignedMTL", [](std::size_t t) { return std::make_unique<mtl::AlignedMTL>(t); }},
    {"NashMTL", [](std::size_t t) { return std::make_unique<mtl::NashMTL>(t); }},
    {"NashMTL every 2",
     [](std::size_t t) { return std::make_unique<mtl::NashMTL>(t, mtl::NashMTLOptions{.update_every = 2}); }},
    {"GradVac", [](std::size_t t) { return std::make_unique<mtl::GradVac>(t, mtl::GradVacOptions{}, 7); }},
};

}  // namespace

TEST_CASE("Gramian-first: the same weights and gradients as the full rows, step after step, for every method") {
  constexpr std::size_t kTasks = 3;
  Generator data(11);
  const Tensor x = randn({kBatch, kWidth}, data);
  std::vector<Tensor> y;
  for (std::size_t t = 0; t < kTasks; ++t) y.push_back(randn({kBatch, 1}, data));
  for (const Case& c : kCases) {
    CAPTURE(c.name);
    mtl::SharedBottom full_model = trunk_model(kTasks, 3), blocked_model = trunk_model(kTasks, 3);
    std::unique_ptr<mtl::GradientBalancer> full = c.make(kTasks), blocked = c.make(kTasks);
    blocked->set_max_gradient_bytes(one_layer_budget(kTasks));
    nn::SGD full_opt(full_model.parameters(), {.lr = 0.05}), blocked_opt(blocked_model.parameters(), {.lr = 0.05});
    // Three steps, so the stateful methods (PCGrad's and GradVac's streams, GradVac's targets,
    // Nash-MTL's warm start and interval) are compared on their later steps too.
    for (int step = 0; step < 3; ++step) {
      CAPTURE(step);
      full_opt.zero_grad();
      blocked_opt.zero_grad();
      const double full_loss = full->backward(task_losses(full_model, x, y), full_model).item();
      const double blocked_loss = blocked->backward(task_losses(blocked_model, x, y), blocked_model).item();
      CHECK(blocked_loss == doctest::Approx(full_loss).epsilon(1e-5));
      REQUIRE(blocked->weights().size() == kTasks);
      for (std::size_t t = 0; t < kTasks; ++t)
        CHECK(blocked->weights()[t] == doctest::Approx(full->weights()[t]).epsilon(1e-4));
      const auto fp = full_model.named_parameters(), bp = blocked_model.named_parameters();
      REQUIRE(fp.size() == bp.size());
      for (std::size_t k = 0; k < fp.size(); ++k) {
        CAPTURE(fp[k].first);
        REQUIRE(bp[k].second.grad().defined());
        const std::vector<float> a = fp[k].second.grad().to_vector<float>(), b = bp[k].second.grad().to_vector<float>();
        double scale = 0, diff = 0;
        for (std::size_t i = 0; i < a.size(); ++i)
          scale = std::max(scale, static_cast<double>(std::fabs(a[i]))),
          diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
        CHECK(diff <= 1e-5 * std::max(scale, 1e-3));
      }
      full_opt.step();
      blocked_opt.step();
    }
  }
}

TEST_CASE("Gramian-first: blocks of whole tensors within the budget, and a tensor over it alone") {
  constexpr std::size_t kTasks = 2;
  mtl::SharedBottom model = trunk_model(kTasks, 1);
  Generator data(5);
  const Tensor x = randn({kBatch, kWidth}, data);
  const std::vector<Tensor> y = {randn({kBatch, 1}, data), randn({kBatch, 1}, data)};
  // A budget below one weight matrix still works: every tensor is a block of its own.
  mtl::UPGrad tiny(kTasks), whole(kTasks);
  tiny.set_max_gradient_bytes(64);
  CHECK(tiny.max_gradient_bytes() == 64);
  (void)whole.backward(task_losses(model, x, y), model);
  const std::vector<double> want = whole.weights();
  model.zero_grad();
  (void)tiny.backward(task_losses(model, x, y), model);
  for (std::size_t t = 0; t < kTasks; ++t) CHECK(tiny.weights()[t] == doctest::Approx(want[t]).epsilon(1e-4));
  // A budget the whole rows fit in takes the full path (no extra backward), and 0 is no limit.
  tiny.set_max_gradient_bytes(0);
  CHECK(tiny.max_gradient_bytes() == 0);
  CHECK_THROWS_WITH_AS(tiny.set_max_gradient_bytes(-1),
                       "UPGrad: max_gradient_bytes must be non-negative (0: no limit), got -1", Error);
}

TEST_CASE("Gramian-first: the allocator's peak during backward holds one layer's T rows, not all T x P") {
  // T = 4 tasks: the full path holds the [T, P] rows, a task's gradient being copied in, and d
  // (measured: 6.2 P); the blocked one T rows of one layer (T x P / 4 = P) and a task's gradient of
  // that layer, then the P floats of the final backward (measured: 1.5 P).
  constexpr std::size_t kTasks = 4;
  Generator data(2);
  const Tensor x = randn({kBatch, kWidth}, data);
  std::vector<Tensor> y;
  for (std::size_t t = 0; t < kTasks; ++t) y.push_back(randn({kBatch, 1}, data));
  const auto peak_of_backward = [&](std::int64_t budget) {
    mtl::SharedBottom model = trunk_model(kTasks, 9);
    mtl::UPGrad balancer(kTasks);
    balancer.set_max_gradient_bytes(budget);
    const std::vector<Tensor> losses = task_losses(model, x, y);
    reset_peak_bytes();
    const std::size_t before = allocator_stats().live_bytes;
    (void)balancer.backward(losses, model);
    return static_cast<double>(allocator_stats().peak_bytes - before);
  };
  mtl::SharedBottom probe = trunk_model(kTasks, 9);
  const double P = static_cast<double>(shared_numel(probe)) * sizeof(float);  // bytes of one full gradient
  const double full = peak_of_backward(0), blocked = peak_of_backward(one_layer_budget(kTasks));
  CAPTURE(full / P);
  CAPTURE(blocked / P);
  CHECK(full >= (kTasks + 2) * P);
  CHECK(blocked <= 2 * P);
}
