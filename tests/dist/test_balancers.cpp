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

void check_matches_one_process(const std::string& name, const Make& make) {
  CAPTURE(name);
  dist::Communicator& world = dist::world();
  mtl::MMoE model = make_model(), reference = make_model();
  std::unique_ptr<mtl::Balancer> balancer = make(model), ref_balancer = make(reference);
  dist::MpiCollective collective(world);
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

}  // namespace

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
