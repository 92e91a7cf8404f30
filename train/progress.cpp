#include "progress.h"

#include <unistd.h>

#include <set>

#include "../core/error.h"

namespace ladon::train {
namespace {
double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

Progress::Progress(std::int64_t total_steps, std::vector<std::string> columns, ProgressOptions options)
    : total_(total_steps), columns_(std::move(columns)), options_(options), start_(Clock::now()), last_print_(start_) {
  LADON_CHECK(total_steps >= 0, "Progress", "total_steps must be >= 0, got ", total_steps);
  LADON_CHECK(options_.interval >= 0, "Progress", "interval must be >= 0 seconds, got ", options_.interval);
  LADON_CHECK(options_.quiet || options_.out != nullptr, "Progress", "no output stream (out is null)");
  std::set<std::string> seen;
  for (const std::string& c : columns_) {
    LADON_CHECK(!c.empty(), "Progress", "a loss column has an empty name");
    LADON_CHECK(seen.insert(c).second, "Progress", "loss column '", c, "' appears twice");
  }
  terminal_ = options_.terminal.value_or(options_.out != nullptr && isatty(fileno(options_.out)));
  sums_.assign(columns_.size(), 0.0);
  means_.assign(columns_.size(), 0.0);
}

void Progress::start_epoch(std::int64_t epoch, std::int64_t epochs, std::int64_t batches) {
  LADON_CHECK(epoch >= 1 && epoch <= epochs, "Progress::start_epoch", "epoch ", epoch, " is not in 1..", epochs);
  LADON_CHECK(batches >= 0, "Progress::start_epoch", "batches must be >= 0, got ", batches);
  epoch_ = epoch, epochs_ = epochs, batches_ = batches, batch_ = 0;
  sums_.assign(columns_.size(), 0.0);
  means_.assign(columns_.size(), 0.0);
}

void Progress::step(std::int64_t samples, const std::vector<double>& losses) {
  LADON_CHECK(losses.size() == columns_.size(), "Progress::step", "got ", losses.size(), " losses for ",
              columns_.size(), " columns");
  ++batch_, ++steps_;
  samples_ += samples;
  for (std::size_t c = 0; c < losses.size(); ++c) {
    sums_[c] += losses[c];
    means_[c] = sums_[c] / static_cast<double>(batch_);
  }
  print(steps_ == total_ || (batches_ > 0 && batch_ == batches_ && epoch_ == epochs_));
}

std::string Progress::line() const {
  std::string text;
  char buf[96];
  if (epochs_ > 0) {
    std::snprintf(buf, sizeof buf, "epoch %lld/%lld  batch %lld/%lld", static_cast<long long>(epoch_),
                  static_cast<long long>(epochs_), static_cast<long long>(batch_), static_cast<long long>(batches_));
    text = buf;
  } else {
    std::snprintf(buf, sizeof buf, "step %lld/%lld", static_cast<long long>(steps_), static_cast<long long>(total_));
    text = buf;
  }
  for (std::size_t c = 0; c < columns_.size(); ++c) {
    std::snprintf(buf, sizeof buf, "  %s loss %.4f", columns_[c].c_str(), means_[c]);
    text += buf;
  }
  const double t = elapsed();
  const double rate = t > 0 ? static_cast<double>(samples_) / t : 0.0;
  const double eta =
      steps_ > 0 && total_ > steps_ ? t * static_cast<double>(total_ - steps_) / static_cast<double>(steps_) : 0.0;
  std::snprintf(buf, sizeof buf, "  %.0f samples/s  ETA %.0fs", rate, eta);
  return text + buf;
}

double Progress::elapsed() const { return seconds(Clock::now() - start_); }

void Progress::print(bool force) {
  if (options_.quiet) return;
  const auto now = Clock::now();
  if (!terminal_ && !force && seconds(now - last_print_) < options_.interval) return;
  last_print_ = now;
  const std::string text = line();
  if (terminal_) {
    std::fprintf(options_.out, "\r\033[K%s", text.c_str());
    open_line_ = true;
  } else {
    std::fprintf(options_.out, "%s\n", text.c_str());
  }
  std::fflush(options_.out);
}

void Progress::message(const std::string& text) {
  if (options_.quiet) return;
  finish();
  std::fprintf(options_.out, "%s%s", text.c_str(), !text.empty() && text.back() == '\n' ? "" : "\n");
  std::fflush(options_.out);
}

void Progress::finish() {
  if (options_.quiet || !open_line_) return;
  std::fprintf(options_.out, "\n");
  std::fflush(options_.out);
  open_line_ = false;
}

}  // namespace ladon::train
