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

namespace {

// A multi-task model assembled from mtl parts: the sparse layer is the trunk, one tower per task.
class SparseTrunkModel : public mtl::MultiTaskModel {
 public:
  SparseTrunkModel(std::vector<mtl::TaskSpec> tasks, const mtl::SparseMoEOptions& options, Generator& gen)
      : MultiTaskModel(std::move(tasks)), moe(options, gen) {
    for (const mtl::TaskSpec& t : tasks_) towers_.push_back(mtl::mlp(options.out, t.tower_hidden, t.out, false, gen));
  }

  std::vector<Tensor> forward(const Tensor& x) override {
    const Tensor shared = relu(moe(x));
    std::vector<Tensor> outputs;
    for (nn::Sequential& tower : towers_) outputs.push_back(tower(shared));
    return outputs;
  }

  void visit(Visitor& v) override {
    v("moe", moe);
    for (std::size_t t = 0; t < towers_.size(); ++t) v("towers." + tasks_[t].name, towers_[t]);
  }

  mtl::SparseMoE moe;

 private:
  std::vector<nn::Sequential> towers_;
};

}  // namespace

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
  SparseTrunkModel model({{"item", 10, {64}}, {"group", 4, {64}}},
                         {.in = 784,
                          .out = 256,
                          .experts = flags.integer("experts"),
                          .k = flags.integer("k"),
                          .expert_hidden = {256},
                          .capacity_factor = flags.real("capacity"),
                          .balance_weight = 0.01},
                         gen);
  nn::Adam optimizer(model.parameters(), {.lr = flags.real("lr")});
  std::printf("sparse MoE trunk: %lld experts, top-%lld, capacity factor %.2f, %lld parameters\n",
              static_cast<long long>(model.moe.num_experts()), static_cast<long long>(model.moe.k()),
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
      const Tensor aux = model.moe.aux_loss();  // importance, load and balance losses of this batch
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
                mtl::format_router_table(model.moe.stats()).c_str());
  }
  std::printf("trained in %.1f s\n", progress.elapsed());
  examples::print_results(examples::evaluate(model, fm.test));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
