#include <cmath>
#include <cstring>

#include "helpers.h"

using namespace ladon;
using ladon::testing::read_text;
using ladon::testing::TempDir;

namespace {

// Three epochs of a two-task run with four experts: every series the pictures draw.
train::History full_history() {
  train::History h({"item", "group"});
  for (std::int64_t e = 1; e <= 3; ++e) {
    const double x = static_cast<double>(e);
    for (std::int64_t s = 0; s < 4; ++s) {
      const std::int64_t step = (e - 1) * 4 + s + 1;
      const std::vector<double> w = {1.0 + 0.1 * static_cast<double>(step), 1.0};
      h.add({.step = step, .epoch = e, .split = "train", .task = "item", .metric = "loss",
             .value = 2.0 / static_cast<double>(step), .weights = w, .lr = 1e-3});
      h.add({.step = step, .epoch = e, .split = "train", .task = "group", .metric = "loss",
             .value = 1.0 / static_cast<double>(step), .weights = w, .lr = 1e-3});
    }
    for (const char* t : {"item", "group"}) {
      h.add({.step = e * 4, .epoch = e, .split = "val", .task = t, .metric = "loss", .value = 1.5 / x});
      h.add({.step = e * 4, .epoch = e, .split = "val", .task = t, .metric = "accuracy", .value = 0.5 + 0.1 * x});
      for (int k = 0; k < 4; ++k)
        h.add({.step = e * 4, .epoch = e, .split = "val", .task = t, .metric = "gate." + std::to_string(k),
               .value = k == 0 ? 0.4 : 0.2});
    }
    h.add({.step = e * 4, .epoch = e, .split = "train", .task = "item", .metric = "cosine.group", .value = -0.25 * x});
    h.add({.step = e * 4, .epoch = e, .split = "train", .task = "group", .metric = "cosine.item", .value = -0.25 * x});
    for (int k = 0; k < 4; ++k)
      h.add({.step = e * 4, .epoch = e, .split = "val", .task = "", .metric = "expert_load." + std::to_string(k),
             .value = 0.25});
  }
  return h;
}

const char* kPictures[] = {"learning_curves", "task_weights", "gate_use", "gradient_cosine", "expert_load"};

// A PNG: the signature, then an IHDR chunk; returns its width and height.
std::pair<std::uint32_t, std::uint32_t> png_size(const std::string& bytes) {
  REQUIRE(bytes.size() > 24);
  REQUIRE(bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  REQUIRE(bytes.compare(12, 4, "IHDR") == 0);
  const auto be32 = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) v = v << 8 | static_cast<unsigned char>(bytes[at + i]);
    return v;
  };
  CHECK(bytes.compare(bytes.size() - 8, 4, "IEND") == 0);
  return {be32(16), be32(20)};
}

}  // namespace

TEST_CASE("plot_history: without gnuplot the data and script are written, and the message says how to draw") {
  TempDir dir;
  const train::PlotResult r = train::plot_history(full_history(), dir.str(), {.gnuplot = "/nonexistent/gnuplot"});
  CHECK_FALSE(r.drawn);
  CHECK(r.message == "gnuplot is not installed (Debian: apt-get install gnuplot-nox): wrote the data and " +
                         dir.file("plots.gp") + "; draw the pictures with: cd " + dir.str() + " && gnuplot plots.gp");
  CHECK(r.data.size() == 5);
  CHECK(r.pictures.size() == 10);
  const std::string script = read_text(r.script);
  for (const char* name : kPictures) {
    CHECK(script.find(std::string("set output \"") + name + ".\".fmt") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir.file(std::string(name) + ".png")));
  }
  // The task names label the panels and the cosine matrix's axes.
  CHECK(script.find("set title \"item\"") != std::string::npos);
  CHECK(script.find("set xtics (\"item\" 0, \"group\" 1)") != std::string::npos);
  // The last epoch's cosine matrix, row by row (the diagonal is 1).
  CHECK(read_text(dir.file("gradient_cosine.dat")) == "# row column cosine (epoch 3)\n0 0 1\n0 1 -0.75\n\n"
                                                      "1 0 -0.75\n1 1 1\n\n");
  // Gate use: one block per task, epoch-major.
  const std::string gates = read_text(dir.file("gate_use.dat"));
  CHECK(gates.rfind("# gate use of task item\n# epoch index value\n1 0 0.4\n1 1 0.2\n1 2 0.2\n1 3 0.2\n\n2 0 0.4", 0) ==
        0);
  CHECK(gates.find("# gate use of task group") != std::string::npos);
  // Task weights: one row per logged step, one column per task.
  const std::string weights = read_text(dir.file("task_weights.dat"));
  CHECK(weights.rfind("# step item group\n1 1.1 1\n2 1.2 1\n", 0) == 0);
  CHECK(std::count(weights.begin(), weights.end(), '\n') == 13);
}

TEST_CASE("plot_history: only the pictures the history has data for") {
  TempDir dir;
  train::History h({"y"});
  h.add({.step = 1, .epoch = 1, .split = "train", .task = "y", .metric = "loss", .value = 1});
  const train::PlotResult r = train::plot_history(h, dir.str(), {.draw = false});
  CHECK(r.pictures == std::vector<std::string>{dir.file("learning_curves.png"), dir.file("learning_curves.svg")});
  CHECK(r.message == "wrote the plot data and " + dir.file("plots.gp") + "; draw the pictures with: cd " + dir.str() +
                         " && gnuplot plots.gp");
  CHECK(train::plot_history(train::History({"y"}), dir.file("empty")).message ==
        "no series to draw yet; the script is " + dir.file("empty/plots.gp"));
}

TEST_CASE("plot_history: gnuplot draws every picture as a well-formed PNG and SVG") {
  if (train::find_program("gnuplot").empty()) {
    MESSAGE("gnuplot is not installed (scripts/setup-deps installs gnuplot-nox): skipped");
    return;
  }
  TempDir dir;
  const train::PlotResult r = train::plot_history(full_history(), dir.str());
  INFO(r.message);
  REQUIRE(r.drawn);
  CHECK(read_text(dir.file("plots.log")).empty());  // no gnuplot warnings either
  for (const char* name : kPictures) {
    const auto [w, h] = png_size(read_text(dir.file(std::string(name) + ".png")));
    CHECK(w >= 500);
    CHECK(h >= 400);
    const std::string svg = read_text(dir.file(std::string(name) + ".svg"));
    CHECK(svg.find("<svg") != std::string::npos);
    CHECK(svg.find("</svg>") != std::string::npos);
  }
  CHECK(read_text(dir.file("learning_curves.svg")).find(">group<") != std::string::npos);
}
