#include <cstdio>
#include <cstdlib>

#include "helpers.h"

using namespace ladon;
using ladon::testing::error_message;

namespace {

// Captures what a Progress prints.
struct Capture {
  char* buffer = nullptr;
  std::size_t size = 0;
  std::FILE* file = open_memstream(&buffer, &size);
  ~Capture() {
    std::fclose(file);
    std::free(buffer);
  }
  std::string text() {
    std::fflush(file);
    return std::string(buffer, size);
  }
};

}  // namespace

TEST_CASE("Progress: off a terminal, one line per interval and the last step; running means per epoch") {
  Capture out;
  train::Progress p(6, {"item", "group"}, {.out = out.file, .terminal = false, .interval = 3600});
  p.start_epoch(1, 2, 3);
  p.step(10, {4, 1});
  p.step(10, {2, 1});
  CHECK(p.means() == std::vector<double>{3, 1});
  p.step(10, {0, 1});
  CHECK(out.text().empty());  // an hour has not passed
  p.start_epoch(2, 2, 3);
  CHECK(p.means() == std::vector<double>{0, 0});
  p.step(10, {1, 0.5});
  p.step(10, {2, 0.5});
  p.step(5, {3, 0.5});
  CHECK(p.steps() == 6);
  CHECK(p.samples() == 55);
  const std::string text = out.text();
  CHECK(text.rfind("epoch 2/2  batch 3/3  item loss 2.0000  group loss 0.5000  ", 0) == 0);
  CHECK(text.find(" samples/s  ETA 0s\n") != std::string::npos);
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
  p.finish();
  CHECK(out.text() == text);  // nothing to end off a terminal
}

TEST_CASE("Progress: on a terminal the line is redrawn in place, and message() keeps it intact") {
  Capture out;
  train::Progress p(2, {"total"}, {.out = out.file, .terminal = true});
  p.start_epoch(1, 1, 2);
  p.step(4, {1});
  p.message("a note");
  p.step(4, {3});
  p.finish();
  const std::string text = out.text();
  CHECK(text.rfind("\r\033[Kepoch 1/1  batch 1/2  total loss 1.0000", 0) == 0);
  CHECK(text.find("\na note\n\r\033[Kepoch 1/1  batch 2/2  total loss 2.0000") != std::string::npos);
  CHECK(text.back() == '\n');
  p.finish();
  CHECK(out.text() == text);  // idempotent
}

TEST_CASE("Progress: quiet prints nothing, and bad input is an error") {
  Capture out;
  train::Progress p(1, {"a"}, {.quiet = true, .out = out.file, .terminal = true});
  p.start_epoch(1, 1, 1);
  p.step(1, {1});
  p.message("hidden");
  p.finish();
  CHECK(out.text().empty());
  CHECK(error_message([&] { p.step(1, {1, 2}); }) == "Progress::step: got 2 losses for 1 columns");
  CHECK(error_message([&] { p.start_epoch(3, 2, 1); }) == "Progress::start_epoch: epoch 3 is not in 1..2");
  CHECK(error_message([] { train::Progress(1, {"a", "a"}); }) == "Progress: loss column 'a' appears twice");
  CHECK(error_message([] { train::Progress(-1, {}); }) == "Progress: total_steps must be >= 0, got -1");
}
