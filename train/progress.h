// The live progress line of a training run: epoch, batch, the running mean of each loss column over
// the epoch, samples/s and ETA.
//
//   train::Progress progress(epochs * loader.num_batches(), {"item", "group"});
//   for (epoch ...) {
//     progress.start_epoch(epoch, epochs, loader.num_batches());
//     for (auto& batch : loader) { ...; progress.step(batch.x.size(0), {l_item, l_group}); }
//   }
//   progress.finish();
//
// On a terminal the line is redrawn in place after every step; otherwise (a log file, CI) a full
// line is printed every `interval` seconds and at the last step, so logs stay short. Quiet prints
// nothing. Lines other code prints between steps go through message(), which keeps the line intact.
#pragma once

#include "layer_fence.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace ladon::train {

struct ProgressOptions {
  bool quiet = false;
  std::FILE* out = stdout;
  std::optional<bool> terminal = std::nullopt;  // redraw in place; default: whether `out` is a terminal
  double interval = 5.0;         // seconds between lines when not a terminal
};

class Progress {
 public:
  // total_steps: steps of the whole run (for the ETA), >= 0; columns: one name per loss shown
  // ("item" shows as "item loss"), non-empty and distinct.
  Progress(std::int64_t total_steps, std::vector<std::string> columns, ProgressOptions options = {});

  // Begins an epoch (1-based, of `epochs`, with `batches` steps): resets the running means.
  void start_epoch(std::int64_t epoch, std::int64_t epochs, std::int64_t batches);
  // One step over `samples` rows with one loss per column; prints when due.
  void step(std::int64_t samples, const std::vector<double>& losses);
  // Prints a line of text (no newline needed) without garbling the progress line.
  void message(const std::string& text);
  // Ends the progress line (a newline on a terminal). Idempotent until the next step.
  void finish();

  std::string line() const;   // the current text: "epoch 2/10  batch 5/469  item loss 0.2051 ..."
  double elapsed() const;     // seconds since construction
  std::int64_t steps() const { return steps_; }
  std::int64_t samples() const { return samples_; }
  const std::vector<double>& means() const { return means_; }  // this epoch's running means

 private:
  using Clock = std::chrono::steady_clock;
  void print(bool force);

  std::int64_t total_;
  std::vector<std::string> columns_;
  ProgressOptions options_;
  bool terminal_;
  Clock::time_point start_, last_print_;
  std::int64_t epoch_ = 0, epochs_ = 0, batches_ = 0, batch_ = 0;
  std::int64_t steps_ = 0, samples_ = 0;
  std::vector<double> sums_, means_;
  bool open_line_ = false;  // a redrawn line is on screen without its newline
};

}  // namespace ladon::train
