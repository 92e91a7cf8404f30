// A sparsely-gated mixture of experts as the shared trunk of the two Fashion-MNIST tasks: each image
// is routed to its top-k experts only (noisy top-k gating, with a capacity per expert), and the
// router's auxiliary losses keep the experts evenly loaded. After every epoch the router table
// shows how the test images were routed: assignments per expert, load imbalance, and the fraction
// dropped by capacity.
//
//   build/examples/fashion_sparse_moe [--epochs 3] [--experts 8] [--k 2] [--capacity 1.25]
#include <cstdio>

#include "common.h"
#include "ladon.h"

using namespace ladon;

int main(int argc, char** argv) try {
  const examples::Flags flags(argc, argv,
                              {{"epochs", "3"},
                               {"batch", "128"},
                               {"lr", "0.001"},
                               {"experts", "8"},
                               {"k", "2"},
                               {"capacity", "1.25"},
                               {"threads", "0"},
                               {"data", "/usr/share/datasets/fashion-mnist"}},
                              "fashion_sparse_moe: a noisy top-k mixture of experts shared by two tasks");
  set_num_threads(static_cast<int>(flags.integer("threads")));
  const data::FashionMnist fm = data::fashion_mnist(flags.str("data"));
  Generator gen(11);
  // The sparse layer is the shared trunk, one tower per task.
  const mtl::SparseMoEOptions options{.in = 784,
                                      .out = 256,
                                      .experts = flags.integer("experts"),
                                      .k = flags.integer("k"),
                                      .expert_hidden = {256},
                                      .capacity_factor = flags.real("capacity"),
                                      .balance_weight = 0.01};
  mtl::SharedBottom model(nn::Sequential(mtl::SparseMoE(options, gen), nn::ReLU()), options.out,
                          {{"item", 10, {64}}, {"group", 4, {64}}}, gen);
  auto& moe = dynamic_cast<mtl::SparseMoE&>(model.trunk<nn::Sequential>()[0]);
  nn::Adam optimizer(model.parameters(), {.lr = flags.real("lr")});
  std::printf("sparse MoE trunk: %lld experts, top-%lld, capacity factor %.2f, %lld parameters\n",
              static_cast<long long>(moe.num_experts()), static_cast<long long>(moe.k()),
              flags.real("capacity"), static_cast<long long>(model.num_parameters()));

  const long epochs = flags.integer("epochs");
  data::Loader loader(fm.train, {.batch = flags.integer("batch"), .shuffle = true, .seed = 7});
  const data::Dataset probe = data::slice(fm.test, 0, 1000);
  examples::Progress progress(epochs * loader.num_batches());
  long step = 0, samples = 0;
  for (long epoch = 1; epoch <= epochs; ++epoch) {
    double task_loss = 0, aux_loss = 0;
    long batches = 0;
    for (const data::Batch& batch : loader) {
      const std::vector<Tensor> out = model(batch.x);
      const Tensor tasks = nn::cross_entropy(out[0], batch.y[0]) + nn::cross_entropy(out[1], batch.y[1]);
      const Tensor aux = moe.aux_loss();  // importance, load and balance losses of this batch
      optimizer.zero_grad();
      (tasks + aux).backward();
      optimizer.step();
      task_loss += tasks.item();
      aux_loss += aux.item();
      ++step, ++batches;
      samples += batch.x.size(0);
      char text[160];
      std::snprintf(text, sizeof text, "epoch %ld/%ld  batch %ld/%lld  task loss %.4f  router loss %.4f", epoch, epochs,
                    batches, static_cast<long long>(loader.num_batches()), task_loss / static_cast<double>(batches),
                    aux_loss / static_cast<double>(batches));
      progress.update(step, samples, text);
    }
    progress.finish();
    {
      NoGradGuard no_grad;
      model.eval();
      model(probe.x);
      model.train();
    }
    std::printf("router on %lld test images after epoch %ld:\n%s", static_cast<long long>(probe.size()), epoch,
                mtl::format_router_table(moe.stats()).c_str());
  }
  std::printf("trained in %.1f s\n", progress.elapsed());
  examples::print_results(examples::evaluate(model, fm.test));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
