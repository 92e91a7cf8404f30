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
                               {"out", "runs/fashion_sparse_moe"},
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

  data::Loader loader(fm.train, {.batch = flags.integer("batch"), .shuffle = true, .seed = 7});
  const data::Dataset probe = data::slice(fm.test, 0, 1000);
  auto balancer = mtl::StaticWeighting::equal(model.num_tasks());
  train::Trainer trainer(model, balancer, optimizer, loader, {.epochs = flags.integer("epochs"), .out = flags.str("out")});
  trainer.set_validation(probe);
  trainer.set_extra_loss([&] { return moe.aux_loss(); });  // importance, load and balance losses of this batch
  trainer.on_epoch([&](train::Trainer& t) {
    {
      NoGradGuard no_grad;
      model.eval();
      model(probe.x);
      model.train();
    }
    const mtl::SparseMoEStats& stats = moe.stats();
    for (std::size_t e = 0; e < stats.utilisation.size(); ++e)  // drawn as the expert_load picture
      t.history().add({.step = t.step(), .epoch = t.epoch(), .split = "val", .task = "",
                       .metric = "expert_load." + std::to_string(e), .value = stats.utilisation[e]});
    t.progress().message("router on " + std::to_string(probe.size()) + " test images after epoch " +
                         std::to_string(t.epoch()) + ":\n" + mtl::format_router_table(stats));
  });
  const train::PlotResult pictures = trainer.fit();
  std::printf("trained in %.1f s\n", trainer.progress().elapsed());
  examples::print_results(examples::evaluate(model, fm.test));
  std::printf("history and pictures: %s\n", pictures.message.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
