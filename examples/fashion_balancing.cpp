// Compares task-balancing methods on the same MMoE and data: the two Fashion-MNIST tasks (item,
// group) trained with equal weights, uncertainty weighting, GradNorm, DWA, random loss weighting,
// and the gradient methods PCGrad, MGDA (and its upper bound, MGDA-UB) and CAGrad, every one through
// the same balancer.backward(losses, model) call. Prints the per-task test accuracy of each method,
// one row per method.
//
//   build/examples/fashion_balancing [--epochs 3] [--methods M,M,...]
//   (default equal, uncertainty, gradnorm, dwa, random, pcgrad, mgda, mgda_ub, cagrad; also gls, imtl_l, stch,
//   famo, famo_next, upgrad, dualproj, imtl_g, aligned_mtl, nash_mtl, gradvac, graddrop, db_mtl)
#include <cstdio>
#include <sstream>

#include "common.h"
#include "ladon.h"

using namespace ladon;

namespace {

const std::vector<mtl::TaskSpec> kTasks = {{"item", 10, {64}}, {"group", 4, {64}}};

std::vector<mtl::TaskResult> run(const std::string& method, const data::FashionMnist& fm, long epochs, double lr) {
  Generator gen(11);
  mtl::MMoE model({.in = 784, .experts = 6, .expert_hidden = {128}, .tasks = kTasks}, gen);
  data::Loader loader(fm.train, {.batch = 128, .shuffle = true, .seed = 7});
  std::unique_ptr<mtl::Balancer> balancer;
  if (method == "equal") balancer = std::make_unique<mtl::StaticWeighting>(mtl::StaticWeighting::equal(2));
  else if (method == "uncertainty") balancer = std::make_unique<mtl::UncertaintyWeighting>(model.tasks());
  else if (method == "gradnorm") balancer = std::make_unique<mtl::GradNorm>(2, model.shared_parameters());
  else if (method == "dwa")
    balancer = std::make_unique<mtl::DynamicWeightAverage>(2, mtl::DWAOptions{.steps_per_epoch = loader.num_batches()});
  else if (method == "random") balancer = std::make_unique<mtl::RandomLossWeighting>(2, 3);
  else if (method == "pcgrad") balancer = std::make_unique<mtl::PCGrad>(2, 3);
  else if (method == "mgda") balancer = std::make_unique<mtl::MGDA>(2);
  else if (method == "mgda_ub") balancer = std::make_unique<mtl::MGDA>(2, mtl::MGDAOptions{.upper_bound = true});
  else if (method == "cagrad") balancer = std::make_unique<mtl::CAGrad>(2, 0.5);
  else if (method == "upgrad") balancer = std::make_unique<mtl::UPGrad>(2);
  else if (method == "dualproj") balancer = std::make_unique<mtl::DualProj>(2);
  else if (method == "imtl_g") balancer = std::make_unique<mtl::IMTLG>(2);
  else if (method == "aligned_mtl") balancer = std::make_unique<mtl::AlignedMTL>(2);
  else if (method == "gls") balancer = std::make_unique<mtl::GeometricLossStrategy>(2);
  else if (method == "imtl_l") balancer = std::make_unique<mtl::IMTLL>(2);
  else if (method == "stch")
    balancer = std::make_unique<mtl::STCH>(2, mtl::STCHOptions{.steps_per_epoch = loader.num_batches(), .warmup_epochs = 1});
  else if (method == "famo") balancer = std::make_unique<mtl::FAMO>(2);
  else if (method == "famo_next")
    balancer = std::make_unique<mtl::FAMO>(2, mtl::FAMOOptions{.update = mtl::FAMOUpdate::next_batch});
  else if (method == "nash_mtl") balancer = std::make_unique<mtl::NashMTL>(2);
  else if (method == "gradvac") balancer = std::make_unique<mtl::GradVac>(2, mtl::GradVacOptions{}, 3);
  else if (method == "graddrop") balancer = std::make_unique<mtl::GradDrop>(2, mtl::GradDropOptions{}, 3);
  else if (method == "db_mtl") balancer = std::make_unique<mtl::DBMTL>(2);
  else throw Error("fashion_balancing: unknown method '" + method + "'");

  nn::Adam optimizer(model.parameters(), {.lr = lr});
  for (long epoch = 0; epoch < epochs; ++epoch)
    for (const data::Batch& batch : loader) {
      const auto out = model(batch.x);
      optimizer.zero_grad();
      balancer->backward({nn::cross_entropy(out[0], batch.y[0]), nn::cross_entropy(out[1], batch.y[1])}, model);
      optimizer.step();
      if (balancer->needs_losses_after_step()) {  // FAMO: the batch's losses after the step
        NoGradGuard no_grad;
        const auto after = model(batch.x);
        balancer->after_step({nn::cross_entropy(after[0], batch.y[0]), nn::cross_entropy(after[1], batch.y[1])});
      }
    }
  return examples::evaluate(model, fm.test);
}

}  // namespace

int main(int argc, char** argv) try {
  const examples::Flags flags(argc, argv,
                              {{"epochs", "3"},
                               {"lr", "0.001"},
                               {"threads", "0"},
                               {"methods", "equal,uncertainty,gradnorm,dwa,random,pcgrad,mgda,mgda_ub,cagrad"},
                               {"data", "/usr/share/datasets/fashion-mnist"}},
                              "fashion_balancing: task-balancing methods compared on Fashion-MNIST");
  set_num_threads(static_cast<int>(flags.integer("threads")));
  const data::FashionMnist fm = data::fashion_mnist(flags.str("data"));
  std::printf("MMoE, 6 experts of 128, %ld epochs; test accuracy per task\n", flags.integer("epochs"));
  std::printf("%-12s  %-8s  %-8s  %s\n", "method", "item", "group", "seconds");
  std::stringstream methods(flags.str("methods"));
  for (std::string method; std::getline(methods, method, ',');) {
    const train::Progress clock(0, {}, {.quiet = true});
    const auto acc = run(method, fm, flags.integer("epochs"), flags.real("lr"));
    std::printf("%-12s  %.4f    %.4f    %.0f\n", method.c_str(), acc[0].value, acc[1].value, clock.elapsed());
    std::fflush(stdout);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
