// Small helpers shared by the example programs: flag parsing, a live progress line, and test
// metrics per task.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "ladon.h"

namespace examples {

// --name value flags with defaults; --help prints them. Unknown flags are an error.
class Flags {
 public:
  Flags(int argc, char** argv, std::map<std::string, std::string> defaults, std::string usage)
      : values_(std::move(defaults)) {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::printf("%s\n\nflags (default):\n", usage.c_str());
        for (const auto& [k, v] : values_) std::printf("  --%s (%s)\n", k.c_str(), v.c_str());
        std::exit(0);
      }
      if (arg.rfind("--", 0) != 0 || !values_.count(arg.substr(2)) || i + 1 >= argc)
        throw std::invalid_argument("unknown flag or missing value: " + arg + " (see --help)");
      values_[arg.substr(2)] = argv[++i];
    }
  }
  std::string str(const std::string& k) const { return values_.at(k); }
  long integer(const std::string& k) const { return std::stol(values_.at(k)); }
  double real(const std::string& k) const { return std::stod(values_.at(k)); }

 private:
  std::map<std::string, std::string> values_;
};

// One progress line, redrawn in place on a terminal and printed every few seconds otherwise.
class Progress {
 public:
  explicit Progress(long total_steps) : total_(total_steps), start_(clock::now()), last_print_(start_) {}

  void update(long step, long samples, const std::string& text) {
    const auto now = clock::now();
    const double elapsed = seconds(now - start_);
    const bool tty = isatty(STDOUT_FILENO);
    if (!tty && seconds(now - last_print_) < 5.0 && step != total_) return;
    last_print_ = now;
    const double rate = elapsed > 0 ? static_cast<double>(samples) / elapsed : 0.0;
    const double eta = step > 0 ? elapsed * static_cast<double>(total_ - step) / static_cast<double>(step) : 0.0;
    std::printf("%s%s  %.0f samples/s  ETA %.0fs%s", tty ? "\r\033[K" : "", text.c_str(), rate, eta, tty ? "" : "\n");
    std::fflush(stdout);
  }
  void finish() {
    if (isatty(STDOUT_FILENO)) std::printf("\n");
  }
  double elapsed() const { return seconds(clock::now() - start_); }

 private:
  using clock = std::chrono::steady_clock;
  static double seconds(clock::duration d) { return std::chrono::duration<double>(d).count(); }
  long total_;
  clock::time_point start_, last_print_;
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
