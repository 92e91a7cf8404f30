// Small helpers shared by the example programs: flag parsing and test metrics per task. The
// progress line is the library's (train/progress.h).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ladon.h"

namespace examples {

// --name value flags with defaults, parsed by CLI11; --help lists them with their defaults and
// unknown flags are an error. For the examples whose flags are all strings with defaults; the
// Trainer examples declare typed CLI11 options directly.
class Flags {
 public:
  Flags(int argc, char** argv, std::map<std::string, std::string> defaults, std::string usage)
      : values_(std::move(defaults)) {
    CLI::App app{std::move(usage)};
    for (auto& [k, v] : values_) app.add_option("--" + k, v)->capture_default_str();
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      std::exit(app.exit(e));  // prints the help (exit 0) or the error and a hint (exit 1)
    }
  }
  std::string str(const std::string& k) const { return values_.at(k); }
  long integer(const std::string& k) const { return std::stol(values_.at(k)); }
  double real(const std::string& k) const { return std::stod(values_.at(k)); }

 private:
  std::map<std::string, std::string> values_;
};

// Test metrics per task over a whole split (accuracy for classes, MSE for regression; auxiliary
// tasks left out), in batches, in eval mode and without recording a graph.
inline std::vector<ladon::mtl::TaskResult> evaluate(ladon::mtl::MultiTaskModel& model, const ladon::data::Dataset& split,
                                                    std::int64_t batch = 250) {
  ladon::NoGradGuard no_grad;
  model.eval();
  ladon::mtl::TaskMetrics metrics(model.tasks());
  for (const ladon::data::Batch& b : ladon::data::Loader(split, {.batch = batch})) metrics.add(model(b.x), b.y);
  model.train();
  return metrics.results();
}

// The examples' last lines, "test <task> <metric> <value>": scripts and the README read them.
inline void print_results(const std::vector<ladon::mtl::TaskResult>& results) {
  for (const ladon::mtl::TaskResult& r : results)
    std::printf("test %s %s %.4f\n", r.task.c_str(), r.metric.c_str(), r.value);
}

}  // namespace examples
