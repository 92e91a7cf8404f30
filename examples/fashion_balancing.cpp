// Compares task-balancing methods on the same MMoE and data: the two Fashion-MNIST tasks (item,
// group) trained with equal weights, uncertainty weighting, GradNorm, DWA, random loss weighting,
// and the gradient methods PCGrad, MGDA and CAGrad. Prints the per-task test accuracy of each
// method, one row per method.
//
//   build/examples/fashion_balancing [--epochs 3] [--methods equal,uncertainty,gradnorm,dwa,random,pcgrad,mgda,cagrad]
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
  std::unique_ptr<mtl::LossWeighting> balance;
  std::unique_ptr<mtl::GradientMethod> gradient_method;
  if (method == "equal") balance = std::make_unique<mtl::StaticWeighting>(mtl::StaticWeighting::equal(2));
  else if (method == "uncertainty")
    balance = std::make_unique<mtl::UncertaintyWeighting>(
        std::vector<mtl::TaskKind>{mtl::TaskKind::classification, mtl::TaskKind::classification});
  else if (method == "gradnorm") {
    // W: the expert bank's layer, the last layer every task shares.
    std::vector<Tensor> shared_layer;
    for (auto& [name, p] : model.named_parameters())
      if (name.rfind("experts.0.", 0) == 0) shared_layer.push_back(p);
    balance = std::make_unique<mtl::GradNorm>(2, shared_layer);
  } else if (method == "dwa") balance = std::make_unique<mtl::DynamicWeightAverage>(2);
  else if (method == "random") balance = std::make_unique<mtl::RandomLossWeighting>(2, 3);
  else if (method == "pcgrad") gradient_method = std::make_unique<mtl::PCGrad>(3);
  else if (method == "mgda") gradient_method = std::make_unique<mtl::MGDA>();
  else if (method == "cagrad") gradient_method = std::make_unique<mtl::CAGrad>(0.5);
  else throw Error("fashion_balancing: unknown method '" + method + "'");

  std::vector<Tensor> params = model.parameters();
  if (balance)
    for (const Tensor& p : balance->parameters()) params.push_back(p);  // learned balancer state
  nn::Adam optimizer(params, {.lr = lr});
  const std::vector<Tensor> shared = model.shared_parameters();
  data::Loader loader(fm.train, {.batch = 128, .shuffle = true, .seed = 7});
  for (long epoch = 0; epoch < epochs; ++epoch) {
    std::vector<double> epoch_loss(2, 0.0);
    for (const data::Batch& batch : loader) {
      const auto out = model(batch.x);
      const std::vector<Tensor> losses = {nn::cross_entropy(out[0], batch.y[0]), nn::cross_entropy(out[1], batch.y[1])};
      for (std::size_t t = 0; t < 2; ++t) epoch_loss[t] += losses[t].item() / static_cast<double>(loader.num_batches());
      optimizer.zero_grad();
      if (gradient_method)
        gradient_method->backward(losses, shared);
      else
        (*balance)(losses).backward();
      optimizer.step();
    }
    if (balance) balance->end_epoch(epoch_loss);
  }
  return examples::evaluate(model, fm.test);
}

}  // namespace

int main(int argc, char** argv) try {
  const examples::Flags flags(argc, argv,
                              {{"epochs", "3"},
                               {"lr", "0.001"},
                               {"threads", "0"},
                               {"methods", "equal,uncertainty,gradnorm,dwa,random,pcgrad,mgda,cagrad"},
                               {"data", "/usr/share/datasets/fashion-mnist"}},
                              "fashion_balancing: task-balancing methods compared on Fashion-MNIST");
  set_num_threads(static_cast<int>(flags.integer("threads")));
  const data::FashionMnist fm = data::fashion_mnist(flags.str("data"));
  std::printf("MMoE, 6 experts of 128, %ld epochs; test accuracy per task\n", flags.integer("epochs"));
  std::printf("%-12s  %-8s  %-8s  %s\n", "method", "item", "group", "seconds");
  std::stringstream methods(flags.str("methods"));
  for (std::string method; std::getline(methods, method, ',');) {
    const examples::Progress clock(1);
    const auto acc = run(method, fm, flags.integer("epochs"), flags.real("lr"));
    std::printf("%-12s  %.4f    %.4f    %.0f\n", method.c_str(), acc[0].value, acc[1].value, clock.elapsed());
    std::fflush(stdout);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
