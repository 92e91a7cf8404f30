// Balancers under data parallelism: with dist::MpiCollective, N ranks on a split batch apply the
// weights (and shared-gradient combination) one process computes on the whole batch.
#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>

#include "helpers.h"

using namespace ladon;
using namespace ladon::testing;

namespace {

std::vector<mtl::TaskSpec> three_tasks() {
  return {{.name = "a", .out = 3, .tower_hidden = {6}, .kind = mtl::TaskKind::multiclass},
          {.name = "b", .out = 1, .tower_hidden = {6}, .kind = mtl::TaskKind::regression},
          {.name = "c", .out = 1, .tower_hidden = {4}, .kind = mtl::TaskKind::binary}};
}

mtl::MMoE make_model() {
  Generator gen(41);
  return mtl::MMoE({.in = 5, .experts = 3, .expert_hidden = {8}, .tasks = three_tasks()}, gen);
}

struct Batch {
  Tensor x;
  std::vector<Tensor> y;
};

// Global batch `step`: 8 rows, a class, a value and a 0/1 label per row.
Batch global_batch(int step) {
  Generator gen(700 + static_cast<std::uint64_t>(step));
  Batch b;
  b.x = randn({8, 5}, gen);
  std::vector<std::int64_t> classes;
  std::vector<float> labels;
  for (int i = 0; i < 8; ++i) {
    classes.push_back(static_cast<std::int64_t>(gen.below(3)));
    labels.push_back(gen.uniform() < 0.5 ? 1.0f : 0.0f);
  }
  b.y = {tensor(classes, {8}), randn({8}, gen), tensor(labels, {8})};
  return b;
}

Batch rows_of(const Batch& b, const dist::Communicator& comm) {
  Batch mine{my_rows(b.x, comm), {}};
  for (const Tensor& y : b.y) mine.y.push_back(my_rows(y, comm));
  return mine;
}

std::vector<Tensor> losses_of(mtl::MMoE& model, const Batch& b) {
  const std::vector<Tensor> out = model(b.x);
  std::vector<Tensor> losses;
  for (std::size_t t = 0; t < out.size(); ++t) losses.push_back(mtl::task_loss(model.tasks()[t], out[t], b.y[t]));
  return losses;
}

using Make = std::function<std::unique_ptr<mtl::Balancer>(mtl::MMoE&)>;

void check_matches_one_process(const std::string& name, const Make& make, dist::MpiCollectiveOptions options = {}) {
  CAPTURE(name);
  CAPTURE(options.reduce_scatter);
  dist::Communicator& world = dist::world();
  mtl::MMoE model = make_model(), reference = make_model();
  std::unique_ptr<mtl::Balancer> balancer = make(model), ref_balancer = make(reference);
  dist::MpiCollective collective(world, options);
  balancer->set_collective(&collective);
  dist::DataParallel dp(model, world);
  nn::SGD opt(model.parameters(), {.lr = 0.1});
  nn::SGD ref_opt(reference.parameters(), {.lr = 0.1});
  for (int step = 0; step < 4; ++step) {
    const Batch b = global_batch(step);
    opt.zero_grad();
    const double joint = balancer->backward(losses_of(model, rows_of(b, world)), model).item();
    dp.synchronize();  // the task-specific gradients; the shared ones are already global
    opt.step();
    ref_opt.zero_grad();
    const double ref_joint = ref_balancer->backward(losses_of(reference, b), reference).item();
    ref_opt.step();
    if (balancer->needs_losses_after_step()) {  // FAMO: the losses of the same batch after the step
      NoGradGuard no_grad;
      balancer->after_step(losses_of(model, rows_of(b, world)));
      ref_balancer->after_step(losses_of(reference, b));
    }

    CHECK(joint == doctest::Approx(ref_joint).epsilon(1e-5));
    const std::vector<double>& w = balancer->weights();
    const std::vector<double>& ref_w = ref_balancer->weights();
    REQUIRE(w.size() == ref_w.size());
    for (std::size_t t = 0; t < w.size(); ++t) CHECK(w[t] == doctest::Approx(ref_w[t]).epsilon(1e-4));
    // Bit for bit the same on every rank: decided once from the same averaged numbers.
    CHECK(same_on_every_rank(std::vector<float>(w.begin(), w.end()), world));
  }
  // Float32 rounding only (sums over rows split differently), over 4 steps.
  CHECK(max_abs_diff(flat_parameters(model), flat_parameters(reference)) < 2e-5);
  CHECK(same_on_every_rank(flat_parameters(model), world));
}

// The reduce-scatter variant against the allreduce path, both on these ranks, step by step.
void check_reduce_scatter_matches_allreduce(const std::string& name, const Make& make) {
  CAPTURE(name);
  dist::Communicator& world = dist::world();
  mtl::MMoE a = make_model(), b = make_model();
  std::unique_ptr<mtl::Balancer> ba = make(a), bb = make(b);
  dist::MpiCollective allreduce(world), scattered(world, {.reduce_scatter = true});
  ba->set_collective(&allreduce);
  bb->set_collective(&scattered);
  dist::DataParallel dpa(a, world), dpb(b, world);
  nn::SGD opta(a.parameters(), {.lr = 0.1}), optb(b.parameters(), {.lr = 0.1});
  double weights = 0, grads = 0;
  for (int step = 0; step < 4; ++step) {
    const Batch batch = rows_of(global_batch(step), world);
    opta.zero_grad();
    optb.zero_grad();
    ba->backward(losses_of(a, batch), a);
    bb->backward(losses_of(b, batch), b);
    // The combined shared gradient, before the data-parallel averaging of the task-specific ones.
    const auto sa = a.shared_parameters(), sb = b.shared_parameters();
    for (std::size_t k = 0; k < sa.size(); ++k)
      grads = std::max(grads, max_abs_diff(sa[k].grad().to_vector<float>(), sb[k].grad().to_vector<float>()));
    for (std::size_t t = 0; t < ba->weights().size(); ++t)
      weights = std::max(weights, std::fabs(ba->weights()[t] - bb->weights()[t]) / std::max(1.0, std::fabs(ba->weights()[t])));
    CHECK(same_on_every_rank(std::vector<float>(bb->weights().begin(), bb->weights().end()), world));
    dpa.synchronize();
    dpb.synchronize();
    opta.step();
    optb.step();
  }
  // Bound: the Gramian's entries are sums of the same float32 products in another order (blocks
  // per rank, then across ranks), a relative 1e-6 or so; the weights follow it, and the gradients
  // (|g| < 1) differ by float32 rounding of the combination.
  CHECK(weights < 1e-5);
  CHECK(grads < 1e-6);
  CHECK(max_abs_diff(flat_parameters(a), flat_parameters(b)) < 1e-6);
  CHECK(same_on_every_rank(flat_parameters(b), world));
}

}  // namespace

TEST_CASE("MpiCollective reduce-scatter: each rank's columns averaged, by hand; blocks gathered back") {
  dist::Communicator& world = dist::world();
  const int W = world.size(), r = world.rank();
  dist::MpiCollective collective(world, {.reduce_scatter = true});
  // 2 rows of 5 columns; rank r holds r + 10 t + j at row t, column j.
  std::vector<float> values;
  for (int t = 0; t < 2; ++t)
    for (int j = 0; j < 5; ++j) values.push_back(static_cast<float>(r + 10 * t + j));
  const mtl::Collective::Columns mine = collective.average_columns(values, 2);
  CHECK(mine.sharded);
  CHECK(mine.begin == r * 5 / W);
  CHECK(mine.end == (r + 1) * 5 / W);
  const float mean_rank = static_cast<float>(W - 1) / 2;
  for (int t = 0; t < 2; ++t)
    for (std::int64_t j = mine.begin; j < mine.end; ++j)
      CHECK(values[static_cast<std::size_t>(t * 5 + j)] == mean_rank + static_cast<float>(10 * t + j));
  std::vector<float> v(5, -1.0f);
  for (std::int64_t j = mine.begin; j < mine.end; ++j) v[static_cast<std::size_t>(j)] = static_cast<float>(100 * j);
  collective.gather_columns(v, mine);
  CHECK(v == std::vector<float>{0, 100, 200, 300, 400});
  CHECK_THROWS_WITH_AS(collective.average_columns(values, 3), "MpiCollective::average_columns: 10 values are not 3 rows",
                       Error);
}

TEST_CASE("balancers: the reduce-scatter variant matches the allreduce path and one process") {
  std::vector<std::pair<std::string, Make>> methods = {
      {"pcgrad", [](mtl::MMoE& m) { return std::make_unique<mtl::PCGrad>(m.num_tasks(), 9); }},
      {"cagrad", [](mtl::MMoE& m) { return std::make_unique<mtl::CAGrad>(m.num_tasks(), 0.5); }},
      {"upgrad", [](mtl::MMoE& m) { return std::make_unique<mtl::UPGrad>(m.num_tasks()); }},
  };
  for (auto normalization : {mtl::GradNormalization::none, mtl::GradNormalization::l2, mtl::GradNormalization::loss_plus})
    methods.emplace_back("mgda " + std::to_string(static_cast<int>(normalization)), [normalization](mtl::MMoE& m) {
      return std::make_unique<mtl::MGDA>(m.num_tasks(), mtl::MGDAOptions{.normalization = normalization});
    });
  for (const auto& [name, make] : methods) {
    check_matches_one_process(name, make, {.reduce_scatter = true});
    check_reduce_scatter_matches_allreduce(name, make);
  }
}

TEST_CASE("balancers under data parallelism match one process on the whole batch") {
  check_matches_one_process("equal", [](mtl::MMoE& m) {
    return std::make_unique<mtl::StaticWeighting>(mtl::StaticWeighting::equal(m.num_tasks()));
  });
  check_matches_one_process("uncertainty", [](mtl::MMoE& m) {
    return std::make_unique<mtl::UncertaintyWeighting>(m.tasks(), mtl::UncertaintyOptions{.lr = 0.05});
  });
  check_matches_one_process("dwa", [](mtl::MMoE& m) {
    return std::make_unique<mtl::DynamicWeightAverage>(m.num_tasks(), mtl::DWAOptions{.steps_per_epoch = 1});
  });
  check_matches_one_process("random weights", [](mtl::MMoE& m) {
    return std::make_unique<mtl::RandomLossWeighting>(m.num_tasks(), 5);  // one seed for all ranks
  });
  check_matches_one_process("gradnorm", [](mtl::MMoE& m) {
    return std::make_unique<mtl::GradNorm>(m.num_tasks(), m.shared_parameters(), mtl::GradNormOptions{.lr = 0.05});
  });
  check_matches_one_process("pcgrad", [](mtl::MMoE& m) { return std::make_unique<mtl::PCGrad>(m.num_tasks(), 9); });
  check_matches_one_process("cagrad", [](mtl::MMoE& m) { return std::make_unique<mtl::CAGrad>(m.num_tasks(), 0.5); });
  check_matches_one_process("nash_mtl", [](mtl::MMoE& m) {
    return std::make_unique<mtl::NashMTL>(m.num_tasks(), mtl::NashMTLOptions{.update_every = 2});
  });
  check_matches_one_process("gradvac", [](mtl::MMoE& m) {
    return std::make_unique<mtl::GradVac>(m.num_tasks(), mtl::GradVacOptions{}, 9);
  });
  check_matches_one_process("graddrop", [](mtl::MMoE& m) {
    return std::make_unique<mtl::GradDrop>(m.num_tasks(), mtl::GradDropOptions{}, 9);  // one seed for all ranks
  });
  check_matches_one_process("db_mtl", [](mtl::MMoE& m) { return std::make_unique<mtl::DBMTL>(m.num_tasks()); });
  check_matches_one_process("famo", [](mtl::MMoE& m) { return std::make_unique<mtl::FAMO>(m.num_tasks()); });
  for (auto normalization : {mtl::GradNormalization::none, mtl::GradNormalization::l2, mtl::GradNormalization::loss,
                             mtl::GradNormalization::loss_plus}) {
    CAPTURE(static_cast<int>(normalization));
    check_matches_one_process("mgda", [normalization](mtl::MMoE& m) {
      return std::make_unique<mtl::MGDA>(m.num_tasks(), mtl::MGDAOptions{.normalization = normalization});
    });
    check_matches_one_process("mgda-ub", [normalization](mtl::MMoE& m) {
      return std::make_unique<mtl::MGDA>(m.num_tasks(),
                                         mtl::MGDAOptions{.normalization = normalization, .upper_bound = true});
    });
  }
}

TEST_CASE("balancers: the Gramian-first path under data parallelism matches one process") {
  // A 64-byte budget: every shared tensor is a block of its own, each block's rows averaged over the
  // ranks, and the final backward's gradient averaged too.
  const auto blocked = [](std::unique_ptr<mtl::GradientBalancer> b) {
    b->set_max_gradient_bytes(64);
    return b;
  };
  check_matches_one_process("pcgrad, Gramian-first",
                            [&](mtl::MMoE& m) { return blocked(std::make_unique<mtl::PCGrad>(m.num_tasks(), 9)); });
  check_matches_one_process("upgrad, Gramian-first",
                            [&](mtl::MMoE& m) { return blocked(std::make_unique<mtl::UPGrad>(m.num_tasks())); });
  check_matches_one_process("mgda l2, Gramian-first", [&](mtl::MMoE& m) {
    return blocked(
        std::make_unique<mtl::MGDA>(m.num_tasks(), mtl::MGDAOptions{.normalization = mtl::GradNormalization::l2}));
  });
  check_matches_one_process("nash_mtl, Gramian-first", [&](mtl::MMoE& m) {
    return blocked(std::make_unique<mtl::NashMTL>(m.num_tasks(), mtl::NashMTLOptions{.update_every = 2}));
  });
}

TEST_CASE("PCGrad under data parallelism: the same random orders and projections on every rank") {
  dist::Communicator& world = dist::world();
  mtl::MMoE model = make_model();
  mtl::PCGrad pcgrad(model.num_tasks(), 17);
  dist::MpiCollective collective(world);
  pcgrad.set_collective(&collective);
  std::vector<float> conflicts;
  for (int step = 0; step < 6; ++step) {
    model.zero_grad();
    pcgrad.backward(losses_of(model, rows_of(global_batch(step), world)), model);
    conflicts.push_back(static_cast<float>(pcgrad.last_conflicts()));
  }
  CHECK(same_on_every_rank(conflicts, world));
  CHECK(collective.ranks() == world.size());
}
