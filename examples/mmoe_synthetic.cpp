// Reproduces the synthetic experiment of the MMoE paper (Ma et al., KDD 2018, section 3): two
// regression tasks whose relatedness is set by p = cos(w1, w2). For each p and seed it trains
// Shared-Bottom, OMoE, MMoE (the paper's sizes), CGC and PLE, and prints the mean and spread of
// test MSE.
// Expected ordering: MMoE ~ OMoE at p = 1; at low p, MMoE < OMoE < Shared-Bottom.
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

#include "common.h"
#include "ladon.h"

using namespace ladon;

namespace {

const std::vector<mtl::TaskSpec> kTasks = {{"task1", 1, {8}, mtl::TaskKind::regression}, {"task2", 1, {8}, mtl::TaskKind::regression}};

std::unique_ptr<mtl::MultiTaskModel> make_model(const std::string& kind, Generator& gen) {
  // Paper sizes: 8 experts of 16 units, towers of 8; Shared-Bottom's 113 units match the parameter count.
  if (kind == "MMoE") return std::make_unique<mtl::MMoE>(mtl::MoEOptions{100, 8, {16}, kTasks}, gen);
  if (kind == "OMoE") return std::make_unique<mtl::OMoE>(mtl::MoEOptions{100, 8, {16}, kTasks}, gen);
  // CGC and PLE with the same 8 experts of 16: 4 shared plus 2 per task.
  if (kind == "CGC") return std::make_unique<mtl::CGC>(mtl::PLEOptions{100, 1, 4, 2, {16}, kTasks}, gen);
  if (kind == "PLE") return std::make_unique<mtl::PLE>(mtl::PLEOptions{100, 2, 4, 2, {16}, kTasks}, gen);
  if (kind != "Shared-Bottom") throw Error("mmoe_synthetic: unknown model '" + kind + "'");
  return std::make_unique<mtl::SharedBottom>(mtl::SharedBottomOptions{100, {113}, kTasks}, gen);
}

// The mean over the two tasks of each task's test MSE.
double test_mse(mtl::MultiTaskModel& model, const data::Dataset& test) {
  NoGradGuard no_grad;
  mtl::TaskMetrics metrics(model.tasks());
  metrics.add(model(test.x), test.y);
  double total = 0;
  for (const mtl::TaskResult& r : metrics.results()) total += r.value;
  return total / static_cast<double>(metrics.results().size());
}

double train_and_test(const std::string& kind, double p, std::uint64_t seed, long epochs, double lr) {
  const data::Dataset all = data::mmoe_synthetic({.samples = 12000, .dim = 100, .correlation = p, .seed = seed});
  const data::Dataset train = data::slice(all, 0, 10000), test = data::slice(all, 11000, 12000);
  Generator gen(seed * 7919 + 13);
  const auto model = make_model(kind, gen);
  nn::Adam optimizer(model->parameters(), {.lr = lr});
  data::Loader loader(train, {.batch = 128, .shuffle = true, .seed = seed});
  for (long epoch = 0; epoch < epochs; ++epoch) {
    for (const data::Batch& batch : loader) {
      const auto out = (*model)(batch.x);
      const Tensor loss = nn::mse_loss(out[0], batch.y[0]) + nn::mse_loss(out[1], batch.y[1]);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
    }
  }
  return test_mse(*model, test);
}

}  // namespace

int main(int argc, char** argv) try {
  const examples::Flags flags(argc, argv, {{"seeds", "5"},
                               {"epochs", "30"},
                               {"lr", "0.001"},
                               {"threads", "1"},
                               {"models", "Shared-Bottom,OMoE,MMoE,CGC,PLE"}},
                              "mmoe_synthetic: Shared-Bottom vs OMoE vs MMoE on the MMoE paper's synthetic tasks");
  set_num_threads(static_cast<int>(flags.integer("threads")));
  const long seeds = flags.integer("seeds"), epochs = flags.integer("epochs");
  const std::vector<double> correlations = {1.0, 0.9, 0.5, 0.0};
  std::vector<std::string> models;
  std::stringstream list(flags.str("models"));
  for (std::string m; std::getline(list, m, ',');) models.push_back(m);

  std::printf("test MSE (mean over both tasks), mean ± std over %ld seeds, %ld epochs, 10k train / 1k test\n", seeds,
              epochs);
  std::printf("%-6s", "p");
  for (const auto& m : models) std::printf("  %-22s", m.c_str());
  std::printf("\n");
  for (double p : correlations) {
    std::printf("%-6.2f", p);
    for (const auto& m : models) {
      std::vector<double> mse;
      for (long s = 1; s <= seeds; ++s) mse.push_back(train_and_test(m, p, static_cast<std::uint64_t>(s), epochs, flags.real("lr")));
      double mean = 0, var = 0;
      for (double v : mse) mean += v / static_cast<double>(mse.size());
      for (double v : mse) var += (v - mean) * (v - mean) / static_cast<double>(std::max<std::size_t>(mse.size() - 1, 1));
      char cell[64];
      std::snprintf(cell, sizeof cell, "%.4f ± %.4f", mean, std::sqrt(var));
      std::printf("  %-24s", cell);  // "±" is two bytes
      std::fflush(stdout);
    }
    std::printf("\n");
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
