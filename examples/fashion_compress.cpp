// Compressing a trained multi-task model and what it costs: an MMoE is trained briefly on the two
// Fashion-MNIST tasks, then the experts no task's gate uses are dropped, the smallest weights of
// the experts and towers are pruned to a target sparsity, and the model is fine-tuned with the
// pruning masks held. Prints parameters and test accuracy after each stage. Fine-tuning is also
// more training, so compare its accuracy with an uncompressed model trained as many epochs.
//
//   build/examples/fashion_compress [--epochs 2] [--sparsity 0.8] [--finetune 1] [--threads 2]
#include <algorithm>
#include <cstdio>

#include "common.h"
#include "ladon.h"

using namespace ladon;

namespace {

// One epoch of equal-weight training; with a pruner, its masks are re-applied after every step so
// pruned weights stay zero.
void train_epoch(mtl::MMoE& model, data::Loader& loader, nn::Adam& optimizer, mtl::MagnitudePruner* pruner) {
  for (const data::Batch& batch : loader) {
    const std::vector<Tensor> out = model(batch.x);
    const Tensor loss = nn::cross_entropy(out[0], batch.y[0]) + nn::cross_entropy(out[1], batch.y[1]);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    if (pruner) pruner->apply();
  }
}

std::int64_t nonzero_parameters(mtl::MMoE& model) {
  std::int64_t n = 0;
  for (const Tensor& p : model.parameters()) {
    const float* v = p.data<float>();
    n += std::count_if(v, v + p.numel(), [](float w) { return w != 0.0f; });
  }
  return n;
}

void print_row(const char* stage, mtl::MMoE& model, const data::Dataset& test) {
  const std::vector<mtl::TaskResult> acc = examples::evaluate(model, test);
  std::printf("%-16s  %7lld  %10lld  %7lld  %.4f  %.4f\n", stage, static_cast<long long>(model.num_experts()),
              static_cast<long long>(model.num_parameters()), static_cast<long long>(nonzero_parameters(model)),
              acc[0].value, acc[1].value);
}

}  // namespace

int main(int argc, char** argv) try {
  const examples::Flags flags(argc, argv,
                              {{"epochs", "2"},
                               {"sparsity", "0.8"},
                               {"finetune", "1"},
                               {"threads", "0"},
                               {"data", "/usr/share/datasets/fashion-mnist"}},
                              "fashion_compress: drop unused experts, prune, fine-tune; the accuracy cost");
  set_num_threads(static_cast<int>(flags.integer("threads")));
  const data::FashionMnist fm = data::fashion_mnist(flags.str("data"));
  Generator gen(5);
  mtl::MMoE model({.in = 784, .experts = 8, .expert_hidden = {128}, .tasks = {{"item", 10, {64}}, {"group", 4, {64}}}},
                  gen);
  data::Loader loader(fm.train, {.batch = 128, .shuffle = true, .seed = 7});
  {
    nn::Adam optimizer(model.parameters(), {.lr = 1e-3});
    for (long epoch = 0; epoch < flags.integer("epochs"); ++epoch) train_epoch(model, loader, optimizer, nullptr);
  }
  std::printf("%-16s  %7s  %10s  %7s  %-6s  %s\n", "stage", "experts", "parameters", "nonzero", "item", "group");
  print_row("trained", model, fm.test);

  // Gate statistics on held-out images: an expert goes when every task's gate gives it less than
  // 1% of a uniform share.
  {
    NoGradGuard no_grad;
    model.eval();
    model(data::slice(fm.test, 0, 2000).x);
    model.train();
  }
  const mtl::ExpertDropReport dropped =
      model.drop_unused_experts({mtl::gate_stats(model.gate_weights(0)), mtl::gate_stats(model.gate_weights(1))});
  print_row("experts dropped", model, fm.test);

  std::vector<Tensor> prunable;  // experts and towers; the gates are small and steer everything
  for (auto& [name, p] : model.named_parameters())
    if (name.rfind("experts.", 0) == 0 || name.rfind("towers.", 0) == 0) prunable.push_back(p);
  mtl::MagnitudePruner pruner(prunable, flags.real("sparsity"));
  pruner.prune();
  print_row("pruned", model, fm.test);

  nn::Adam optimizer(model.parameters(), {.lr = 5e-4});  // the parameters changed: a fresh optimizer
  for (long epoch = 0; epoch < flags.integer("finetune"); ++epoch) train_epoch(model, loader, optimizer, &pruner);
  print_row("fine-tuned", model, fm.test);

  std::printf("dropped %zu of %lld experts; experts and towers pruned to %.0f%% zeros\n", dropped.dropped.size(),
              static_cast<long long>(dropped.experts_before), 100 * flags.real("sparsity"));
  examples::print_results(examples::evaluate(model, fm.test));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
