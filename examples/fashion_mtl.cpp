// The README demo: one multi-task network learns two tasks from Fashion-MNIST images at once, the
// 10-way item class and its 4-way group (tops, bottoms, footwear, bags).
//
//   build/examples/fashion_mtl [--model mmoe|omoe|shared_bottom] [--epochs 8] [--threads 2] ...
//
// --report 1 prints after every epoch which experts each task's gate uses (on held-out images) and
// how the tasks' gradients on the shared parameters agree (on one training batch).
// --bf16 1 trains and evaluates under AutocastGuard(Precision::bf16): the matrix products in bf16
// with float32 sums, everything else float32 (core/autocast.h).
#include <cstdio>
#include <memory>

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
  for (std::size_t t = 0; t < out.size(); ++t) losses.push_back(nn::cross_entropy(out[t], train_batch.y[t]));
  const mtl::GradientConflicts conflicts = mtl::gradient_conflicts(losses, model.shared_parameters());
  std::printf("task gradients on the shared parameters:\n%s", mtl::format_conflict_table(names, conflicts).c_str());
}

}  // namespace

int main(int argc, char** argv) try {
  const examples::Flags flags(argc, argv,
                              {{"model", "mmoe"},
                               {"epochs", "10"},
                               {"batch", "128"},
                               {"lr", "0.001"},
                               {"threads", "0"},
                               {"seed", "1"},
                               {"report", "0"},
                               {"bf16", "0"},
                               {"data", "/usr/share/datasets/fashion-mnist"}},
                              "fashion_mtl: multi-task training on Fashion-MNIST (item class + group)");
  set_num_threads(static_cast<int>(flags.integer("threads")));
  manual_seed(static_cast<std::uint64_t>(flags.integer("seed")));
  const AutocastGuard precision(flags.integer("bf16") ? Precision::bf16 : Precision::fp32);

  const data::FashionMnist fm = data::fashion_mnist(flags.str("data"));
  const std::vector<mtl::TaskSpec> tasks = {{"item", 10, {64}}, {"group", 4, {64}}};
  std::unique_ptr<mtl::MultiTaskModel> model = make_model(flags.str("model"), tasks);
  nn::Adam optimizer(model->parameters(), {.lr = flags.real("lr")});
  mtl::StaticWeighting balancer = mtl::StaticWeighting::equal(tasks.size());
  std::printf("model %s: %lld parameters, %lld training images, %d threads, %s products\n",
              flags.str("model").c_str(), static_cast<long long>(model->num_parameters()),
              static_cast<long long>(fm.train.size()), num_threads(), precision_name(autocast_precision()));

  const long epochs = flags.integer("epochs");
  data::Loader loader(fm.train, {.batch = flags.integer("batch"), .shuffle = true, .seed = 7});
  examples::Progress progress(epochs * loader.num_batches());
  long step = 0, samples = 0;
  for (long epoch = 1; epoch <= epochs; ++epoch) {
    std::vector<double> running(tasks.size(), 0.0);
    long batches = 0;
    for (const data::Batch& batch : loader) {
      const std::vector<Tensor> out = (*model)(batch.x);
      std::vector<Tensor> losses;
      for (std::size_t t = 0; t < tasks.size(); ++t) losses.push_back(nn::cross_entropy(out[t], batch.y[t]));
      optimizer.zero_grad();
      balancer.backward(losses, *model);
      optimizer.step();

      ++step, ++batches;
      samples += batch.x.size(0);
      char text[160];
      std::snprintf(text, sizeof text, "epoch %ld/%ld  batch %ld/%lld", epoch, epochs, batches,
                    static_cast<long long>(loader.num_batches()));
      std::string line = text;
      for (std::size_t t = 0; t < tasks.size(); ++t) {
        running[t] += losses[t].item();
        std::snprintf(text, sizeof text, "  %s loss %.4f", tasks[t].name.c_str(), running[t] / static_cast<double>(batches));
        line += text;
      }
      progress.update(step, samples, line);
    }
    if (flags.integer("report")) {
      progress.finish();
      print_report(*model, data::slice(fm.test, 0, 1000), data::slice(fm.train, 0, 256));
    }
  }
  progress.finish();
  std::printf("trained in %.1f s\n", progress.elapsed());

  examples::print_results(examples::evaluate(*model, fm.test));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
