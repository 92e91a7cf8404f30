// The README demo: one multi-task network learns two tasks from Fashion-MNIST images at once, the
// 10-way item class and its 4-way group (tops, bottoms, footwear, bags).
//
//   build/examples/fashion_mtl [--model mmoe|omoe|shared_bottom] [--epochs 8] [--threads 2] ...  (--help)
//
// The Trainer does the loop; the history and its pictures go to --out (default runs/fashion_mtl).
//
// --report 1 prints after every epoch which experts each task's gate uses (on held-out images) and
// how the tasks' gradients on the shared parameters agree (on one training batch).
// --bf16 1 trains and evaluates under AutocastGuard(Precision::bf16): the matrix products in bf16
// with float32 sums, everything else float32 (core/autocast.h).
#include <cstdio>
#include <memory>

#include <CLI/CLI.hpp>

#include "common.h"
#include "ladon.h"

using namespace ladon;

namespace {

std::unique_ptr<mtl::MultiTaskModel> make_model(const std::string& kind, const std::vector<mtl::TaskSpec>& tasks) {
  if (kind == "mmoe") return std::make_unique<mtl::MMoE>(mtl::MoEOptions{784, 6, {192}, tasks});
  if (kind == "omoe") return std::make_unique<mtl::OMoE>(mtl::MoEOptions{784, 6, {192}, tasks});
  if (kind == "shared_bottom") return std::make_unique<mtl::SharedBottom>(mtl::SharedBottomOptions{784, {512}, tasks});
  throw Error("fashion_mtl: unknown --model '" + kind + "' (mmoe, omoe or shared_bottom)");
}

void print_report(mtl::MultiTaskModel& model, const data::Dataset& held_out, const data::Dataset& train_batch) {
  std::vector<std::string> names;
  for (const mtl::TaskSpec& t : model.tasks()) names.push_back(t.name);
  if (auto* moe = dynamic_cast<mtl::GatedMixture*>(&model)) {
    NoGradGuard no_grad;
    model.eval();
    (*moe)(held_out.x);
    model.train();
    std::vector<mtl::GateStats> stats;
    for (std::size_t t = 0; t < names.size(); ++t) stats.push_back(mtl::gate_stats(moe->gate_weights(t)));
    std::printf("gate weights per expert (held-out images):\n%s", mtl::format_gate_table(names, stats).c_str());
  }
  const std::vector<Tensor> out = model(train_batch.x);
  std::vector<Tensor> losses;
  for (std::size_t t = 0; t < out.size(); ++t) losses.push_back(mtl::task_loss(model.tasks()[t], out[t], train_batch.y[t]));
  const mtl::GradientConflicts conflicts = mtl::gradient_conflicts(losses, model.shared_parameters());
  std::printf("task gradients on the shared parameters:\n%s", mtl::format_conflict_table(names, conflicts).c_str());
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"fashion_mtl: multi-task training on Fashion-MNIST (item class + group)"};
  app.option_defaults()->always_capture_default();
  std::string kind = "mmoe", data_dir = "/usr/share/datasets/fashion-mnist", out = "runs/fashion_mtl";
  std::int64_t epochs = 10, batch = 128, seed = 1;
  double lr = 0.001;
  int threads = 0;
  bool report = false, quiet = false, bf16 = false;
  app.add_option("--model", kind, "architecture")->check(CLI::IsMember({"mmoe", "omoe", "shared_bottom"}));
  app.add_option("--epochs", epochs, "passes over the training images")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "images per step")->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "Adam learning rate");
  app.add_option("--threads", threads, "worker threads (0: all cores)");
  app.add_option("--seed", seed, "initialisation seed");
  app.add_option("--report", report, "after each epoch: gate use per task and task-gradient agreement (0 or 1)");
  app.add_option("--data", data_dir, "folder with the Fashion-MNIST IDX files");
  app.add_option("--out", out, "folder for the metrics history, pictures and checkpoints");
  app.add_option("--bf16", bf16, "matrix products in bf16 with float32 sums (0 or 1)");
  app.add_flag("--quiet", quiet, "no progress line");
  CLI11_PARSE(app, argc, argv);
  const AutocastGuard precision(bf16 ? Precision::bf16 : Precision::fp32);

  set_num_threads(threads);
  manual_seed(static_cast<std::uint64_t>(seed));
  const data::FashionMnist fm = data::fashion_mnist(data_dir);
  const std::vector<mtl::TaskSpec> tasks = {{"item", 10, {64}}, {"group", 4, {64}}};
  std::unique_ptr<mtl::MultiTaskModel> model = make_model(kind, tasks);
  nn::Adam optimizer(model->parameters(), {.lr = lr});
  mtl::StaticWeighting balancer = mtl::StaticWeighting::equal(tasks.size());
  std::printf("model %s: %lld parameters, %lld training images, %d threads, %s products\n", kind.c_str(),
              static_cast<long long>(model->num_parameters()), static_cast<long long>(fm.train.size()), num_threads(),
              precision_name(autocast_precision()));

  // Validation curves on the first 2000 test images (only watched: nothing is selected on them).
  data::Loader loader(fm.train, {.batch = batch, .shuffle = true, .seed = 7});
  train::Trainer trainer(*model, balancer, optimizer, loader,
                         {.epochs = epochs, .out = out, .progress = {.quiet = quiet}});
  trainer.set_validation(data::slice(fm.test, 0, 2000));
  if (report)
    trainer.on_epoch([&](train::Trainer& t) {
      t.progress().finish();
      print_report(*model, data::slice(fm.test, 0, 1000), data::slice(fm.train, 0, 256));
    });
  const train::PlotResult pictures = trainer.fit();
  std::printf("trained in %.1f s\n", trainer.progress().elapsed());
  examples::print_results(examples::evaluate(*model, fm.test));
  std::printf("history (metrics.csv, metrics.jsonl) and pictures: %s\n", pictures.message.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
