// A small CNN trunk shared by the two Fashion-MNIST tasks (item class and group): two blocks of
// conv + batch-norm + ReLU + max-pool, then a dense layer, then one tower per task. A checkpoint
// of everything (model, optimizer, schedule, random streams, position) is written after every
// epoch by the Trainer; --resume 1 continues from it exactly.
//
//   build/examples/fashion_cnn_mtl [--epochs 10] [--out runs/fashion_cnn] [--resume 1] [--bf16 1]  (--help)
//
// --bf16 1 trains and evaluates under AutocastGuard(Precision::bf16): the convolutions' and dense
// layers' products in bf16 with float32 sums, everything else (batch norm, losses, Adam) float32.
#include <cstdio>

#include <CLI/CLI.hpp>

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
  CLI::App app{"fashion_cnn_mtl: a CNN trunk shared by two Fashion-MNIST tasks"};
  app.option_defaults()->always_capture_default();
  std::string data_dir = "/usr/share/datasets/fashion-mnist", out = "runs/fashion_cnn";
  std::int64_t epochs = 10, batch = 128, seed = 1, patience = 0;
  double lr = 0.002;
  int threads = 0;
  bool resume = false, quiet = false, bf16 = false;
  app.add_option("--epochs", epochs, "passes over the training images")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "images per step")->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "Adam learning rate (cosine decay over the epochs)");
  app.add_option("--threads", threads, "worker threads (0: all cores)");
  app.add_option("--seed", seed, "initialisation and dropout seed");
  app.add_option("--patience", patience, "stop after this many epochs without a better item accuracy (0: never)");
  app.add_option("--out", out, "folder for the history, pictures and checkpoints (last.ckpt, best.ckpt)");
  app.add_option("--resume", resume, "continue from OUT/last.ckpt (0 or 1)");
  app.add_option("--data", data_dir, "folder with the Fashion-MNIST IDX files");
  app.add_option("--bf16", bf16, "matrix products in bf16 with float32 sums (0 or 1)");
  app.add_flag("--quiet", quiet, "no progress line");
  CLI11_PARSE(app, argc, argv);

  set_num_threads(threads);
  const AutocastGuard precision(bf16 ? Precision::bf16 : Precision::fp32);
  Generator gen(static_cast<std::uint64_t>(seed));
  const data::FashionMnist fm = data::fashion_mnist(data_dir);
  const std::vector<mtl::TaskSpec> tasks = {{"item", 10, {}}, {"group", 4, {}}};
  mtl::SharedBottom model(cnn_trunk(gen), 256, tasks, gen);
  nn::Adam optimizer(model.parameters(), {.lr = lr});
  nn::WarmupCosineLR schedule(optimizer, {.total_steps = epochs});  // cosine decay over the epochs
  mtl::StaticWeighting balancer({1.0, 0.5});
  std::printf("CNN trunk, %lld parameters, %d threads, %s\n", static_cast<long long>(model.num_parameters()),
              num_threads(), precision_name(autocast_precision()));

  // Validation on the first 2000 test images picks the best checkpoint (OUT/best.ckpt).
  data::Loader loader(fm.train, {.batch = batch, .shuffle = true, .seed = 3});
  train::Trainer trainer(model, balancer, optimizer, loader,
                         {.epochs = epochs,
                          .monitor = {.task = "item", .metric = "accuracy"},
                          .patience = patience,
                          .out = out,
                          .progress = {.quiet = quiet}});
  trainer.set_validation(data::slice(fm.test, 0, 2000));
  trainer.set_scheduler(schedule);
  if (resume) {
    trainer.resume(trainer.path("last.ckpt"));
    std::printf("resumed from %s at epoch %lld, step %lld\n", trainer.path("last.ckpt").c_str(),
                static_cast<long long>(trainer.epoch()), static_cast<long long>(trainer.step()));
  }
  const train::PlotResult pictures = trainer.fit();
  std::printf("trained in %.1f s; best validation item accuracy %.4f at step %lld\n", trainer.progress().elapsed(),
              trainer.best(), static_cast<long long>(trainer.best_step()));
  examples::print_results(examples::evaluate(model, fm.test));
  std::printf("history and pictures: %s\n", pictures.message.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
