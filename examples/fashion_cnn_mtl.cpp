// A small CNN trunk shared by the two Fashion-MNIST tasks (item class and group): two blocks of
// conv + batch-norm + ReLU + max-pool, then a dense layer, then one tower per task. A checkpoint
// (model, optimizer, schedule, epoch) is written after every epoch; --resume 1 continues from it.
//
//   build/examples/fashion_cnn_mtl [--epochs 10] [--checkpoint fashion_cnn.ckpt] [--resume 1]
#include <cstdio>

#include "common.h"
#include "ladon.h"

using namespace ladon;

namespace {

nn::Sequential cnn_trunk(Generator& gen) {
  return nn::Sequential(nn::Unflatten(1, {1, 28, 28}),
                        nn::Conv2d(1, 32, 3, {.padding = 1, .bias = false}, gen), nn::BatchNorm2d(32), nn::ReLU(),
                        nn::MaxPool2d(2),  // 32 x 14 x 14
                        nn::Conv2d(32, 64, 3, {.padding = 1, .bias = false}, gen), nn::BatchNorm2d(64), nn::ReLU(),
                        nn::MaxPool2d(2),  // 64 x 7 x 7
                        nn::Flatten(), nn::Linear(64 * 7 * 7, 256, {}, gen), nn::ReLU(), nn::Dropout(0.3, 5));
}

}  // namespace

int main(int argc, char** argv) try {
  const examples::Flags flags(argc, argv,
                              {{"epochs", "10"},
                               {"batch", "128"},
                               {"lr", "0.002"},
                               {"threads", "0"},
                               {"seed", "1"},
                               {"checkpoint", "fashion_cnn.ckpt"},
                               {"resume", "0"},
                               {"data", "/usr/share/datasets/fashion-mnist"}},
                              "fashion_cnn_mtl: a CNN trunk shared by two Fashion-MNIST tasks");
  set_num_threads(static_cast<int>(flags.integer("threads")));
  Generator gen(static_cast<std::uint64_t>(flags.integer("seed")));
  const data::FashionMnist fm = data::fashion_mnist(flags.str("data"));
  const std::vector<mtl::TaskSpec> tasks = {{"item", 10, {}}, {"group", 4, {}}};
  mtl::SharedBottom model(cnn_trunk(gen), 256, tasks, gen);
  nn::Adam optimizer(model.parameters(), {.lr = flags.real("lr")});
  const long epochs = flags.integer("epochs");
  nn::WarmupCosineLR schedule(optimizer, {.total_steps = epochs});  // cosine decay over the epochs
  mtl::StaticWeighting balancer({1.0, 0.5});
  std::printf("CNN trunk, %lld parameters, %d threads\n", static_cast<long long>(model.num_parameters()), num_threads());

  const std::string checkpoint = flags.str("checkpoint");
  long first_epoch = 1;
  if (flags.integer("resume")) {
    const auto loaded = nn::load_checkpoint(checkpoint, model, {.optimizer = &optimizer, .scheduler = &schedule});
    first_epoch = static_cast<long>(loaded.metadata.integer("epoch")) + 1;
    std::printf("resumed from %s after epoch %ld\n", checkpoint.c_str(), first_epoch - 1);
  }
  data::Loader loader(fm.train, {.batch = flags.integer("batch"), .shuffle = true, .seed = 3});
  examples::Progress progress((epochs - first_epoch + 1) * loader.num_batches());
  long step = 0, samples = 0;
  for (long epoch = first_epoch; epoch <= epochs; ++epoch) {
    double item_loss = 0;
    long batches = 0;
    for (const data::Batch& batch : loader) {
      const auto out = model(batch.x);
      const Tensor loss_item = nn::cross_entropy(out[0], batch.y[0]);
      optimizer.zero_grad();
      balancer.backward({loss_item, nn::cross_entropy(out[1], batch.y[1])}, model);
      optimizer.step();
      item_loss += loss_item.item();
      ++step, ++batches;
      samples += batch.x.size(0);
      char text[128];
      std::snprintf(text, sizeof text, "epoch %ld/%ld  batch %ld/%lld  item loss %.4f", epoch, epochs, batches,
                    static_cast<long long>(loader.num_batches()), item_loss / static_cast<double>(batches));
      progress.update(step, samples, text);
    }
    schedule.step();
    nn::StateDict metadata;
    metadata.set("epoch", static_cast<std::int64_t>(epoch));
    metadata.set("train_item_loss", item_loss / static_cast<double>(batches));
    nn::save_checkpoint(checkpoint, model, {.optimizer = &optimizer, .scheduler = &schedule, .metadata = metadata});
  }
  progress.finish();
  std::printf("trained in %.1f s\n", progress.elapsed());
  examples::print_results(examples::evaluate(model, fm.test));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
