#include "plots.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "../core/error.h"
#include "files.h"

extern char** environ;

namespace ladon::train {
namespace {

std::string num(double v) {
  if (!std::isfinite(v)) return "NaN";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.8g", v);
  return buf;
}

// A gnuplot double-quoted string.
std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// The per-picture preamble: one pass per format, each picture as name.png and name.svg.
std::string open_picture(const std::string& name, int width, int height) {
  const std::string size = std::to_string(width) + "," + std::to_string(height);
  return "do for [fmt in formats] {\n"
         "  if (fmt eq \"svg\") {\n"
         "    set terminal svg size " + size + " dynamic noenhanced font \"sans,11\" background \"white\"\n"
         "  } else {\n"
         "    set terminal pngcairo size " + size + " noenhanced font \"sans,11\"\n"
         "  }\n"
         "  set output \"" + name + ".\".fmt\n";
}
const char* close_picture = "  unset multiplot\n  unset output\n  reset\n}\n\n";

std::string layout(std::size_t panels, const std::string& title) {
  const std::size_t cols = std::min<std::size_t>(panels, 3), rows = (panels + cols - 1) / cols;
  return "  set multiplot layout " + std::to_string(rows) + "," + std::to_string(cols) + " title " + quote(title) +
         "\n";
}
std::pair<int, int> panel_size(std::size_t panels, int w, int h) {
  const std::size_t cols = std::min<std::size_t>(panels, 3), rows = (panels + cols - 1) / cols;
  return {static_cast<int>(cols) * w, static_cast<int>(rows) * h + 40};
}

// Tic spacing that gives about ten labels over 1..n.
std::int64_t tic_step(std::int64_t n) { return std::max<std::int64_t>(1, (n + 9) / 10); }

struct Block {
  std::string comment;
  std::vector<Record> rows;
};

// Writes blocks separated by two blank lines (gnuplot's "index"), "x value" per line.
std::string blocks_text(const std::vector<Block>& blocks) {
  std::string out;
  for (const Block& b : blocks) {
    out += "# " + b.comment + "\n# step value\n";
    for (const Record& r : b.rows) out += std::to_string(r.step) + " " + num(r.value) + "\n";
    out += "\n\n";
  }
  return out;
}

// Heat map data over (epoch, index): "epoch index value", a blank line after each epoch. Cells
// with no record are NaN (drawn blank).
struct Grid {
  std::vector<std::int64_t> epochs;  // sorted
  std::int64_t size = 0;             // indices 0..size-1
  std::map<std::pair<std::int64_t, std::int64_t>, double> cells;
};
std::string grid_text(const Grid& g, const std::string& comment) {
  std::string out = "# " + comment + "\n# epoch index value\n";
  for (std::int64_t e : g.epochs) {
    for (std::int64_t i = 0; i < g.size; ++i) {
      const auto it = g.cells.find({e, i});
      out += std::to_string(e) + " " + std::to_string(i) + " " + num(it == g.cells.end() ? NAN : it->second) + "\n";
    }
    out += "\n";
  }
  return out + "\n";
}
// Records named prefix<index> (gate.3, expert_load.0) of one split and task, as a grid.
Grid collect_grid(const History& h, const std::string& split, const std::string& task, const std::string& prefix) {
  Grid g;
  std::set<std::int64_t> epochs;
  for (const Record& r : h.records()) {
    if (r.split != split || r.task != task || !starts_with(r.metric, prefix)) continue;
    const std::string index = r.metric.substr(prefix.size());
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::int64_t i = std::stoll(index);
    g.cells[{r.epoch, i}] = r.value;
    g.size = std::max(g.size, i + 1);
    epochs.insert(r.epoch);
  }
  g.epochs.assign(epochs.begin(), epochs.end());
  return g;
}

// The split the gate and load series were recorded on: validation when there is any.
std::string grid_split(const History& h, const std::string& prefix) {
  std::string found;
  for (const Record& r : h.records())
    if (starts_with(r.metric, prefix)) {
      if (r.split == "val") return "val";
      if (found.empty()) found = r.split;
    }
  return found;
}

std::string heat_panel(const std::string& file, std::size_t index, const Grid& g, const std::string& title,
                       const std::string& ylabel, const std::string& cblabel) {
  const std::int64_t first = g.epochs.front(), last = g.epochs.back();
  return "  set title " + quote(title) + "\n  set xlabel \"epoch\"\n  set ylabel " + quote(ylabel) +
         "\n  set cblabel " + quote(cblabel) + "\n  set xrange [" + num(static_cast<double>(first) - 0.5) + ":" +
         num(static_cast<double>(last) + 0.5) + "]\n  set yrange [" + num(-0.5) + ":" +
         num(static_cast<double>(g.size) - 0.5) + "]\n  set xtics " + std::to_string(tic_step(last - first + 1)) +
         "\n  set ytics 1\n  set cbrange [0:*]\n  set palette defined (0 \"#ffffff\", 0.5 \"#6baed6\", 1 \"#08306b\")\n"
         "  plot " + quote(file) + " index " + std::to_string(index) + " using 1:2:3 with image notitle\n";
}

}  // namespace

std::string find_program(const std::string& name) {
  if (name.empty()) return "";
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0 && !std::filesystem::is_directory(candidate)) return candidate;
  }
  return "";
}

PlotResult plot_history(const History& h, const std::string& dir, const PlotOptions& options) {
  const char* op = "plot_history";
  ensure_writable_dir(dir, op);
  PlotResult result;
  const std::vector<std::string>& tasks = h.tasks();
  std::string script =
      "# Pictures of a ladon training run, drawn from the data files next to this script.\n"
      "# Edit and redraw with: gnuplot plots.gp (in this folder). Written by ladon's train::plot_history.\n"
      "formats = \"png svg\"\n\n";
  const auto add_data = [&](const std::string& file, const std::string& text) {
    write_file_atomic(dir + "/" + file, text, op);
    result.data.push_back(dir + "/" + file);
  };
  const auto add_picture = [&](const std::string& name) {
    for (const char* ext : {".png", ".svg"}) result.pictures.push_back(dir + "/" + name + ext);
  };

  // Learning curves: one panel per task with a training or validation loss.
  {
    std::vector<Block> blocks;
    std::string panels;
    std::size_t n_panels = 0;
    for (const std::string& t : tasks) {
      std::string metric;  // the validation metric shown on the right axis
      for (const Record& r : h.records())
        if (r.split == "val" && r.task == t && r.metric != "loss" && !starts_with(r.metric, "gate.") &&
            !starts_with(r.metric, "cosine.")) {
          metric = r.metric;
          break;
        }
      const std::vector<Record> train = h.series("train", t, "loss"), val = h.series("val", t, "loss");
      const std::vector<Record> score = metric.empty() ? std::vector<Record>{} : h.series("val", t, metric);
      if (train.empty() && val.empty()) continue;
      ++n_panels;
      std::string plots;
      const auto line = [&](const std::vector<Record>& rows, const std::string& title, const std::string& style) {
        if (rows.empty()) return;
        plots += std::string(plots.empty() ? "  plot " : ", \\\n       ") + "\"learning_curves.dat\" index " +
                 std::to_string(blocks.size()) + " using 1:2 " + style + " title " + quote(title);
        blocks.push_back({t + ": " + title, rows});
      };
      line(train, "train loss", "with lines lw 2 lc rgb \"#1f77b4\"");
      line(val, "val loss", "with linespoints lw 2 pt 7 lc rgb \"#ff7f0e\"");
      line(score, "val " + metric, "axes x1y2 with linespoints lw 2 pt 5 dt 2 lc rgb \"#2ca02c\"");
      panels += "  set title " + quote(t) + "\n  set xlabel \"step\"\n  set xtics rotate by 30 right\n  set ylabel \"loss\"\n  set key outside right top vertical\n";
      panels += score.empty() ? "  unset y2tics\n  unset y2label\n  set ytics mirror\n"
                              : "  set y2label " + quote("val " + metric) + "\n  set ytics nomirror\n  set y2tics\n";
      panels += plots + "\n";
    }
    if (n_panels > 0) {
      add_data("learning_curves.dat", blocks_text(blocks));
      const auto [w, hgt] = panel_size(n_panels, 680, 420);
      script += "# Learning curves: per task, train and validation loss (left axis), validation metric (right).\n" +
                open_picture("learning_curves", w, hgt) + layout(n_panels, "Learning curves") +
                "  set grid\n" + panels + close_picture;
      add_picture("learning_curves");
    }
  }

  // Task weights: the weights carried by the first task's training-loss records.
  if (!tasks.empty()) {
    std::string text = "# step";
    for (const std::string& t : tasks) text += " " + t;
    text += "\n";
    std::size_t rows = 0;
    for (const Record& r : h.series("train", tasks[0], "loss")) {
      if (r.weights.empty()) continue;
      text += std::to_string(r.step);
      for (double w : r.weights) text += ' ' + num(w);
      text += "\n";
      ++rows;
    }
    if (rows > 0) {
      add_data("task_weights.dat", text);
      std::string plots;
      for (std::size_t t = 0; t < tasks.size(); ++t)
        plots += std::string(t ? ", \\\n       " : "  plot ") + "\"task_weights.dat\" using 1:" + std::to_string(t + 2) +
                 " with lines lw 2 title " + quote(tasks[t]);
      script += "# Task weights: the balancer's weight of every task over the steps.\n" +
                open_picture("task_weights", 720, 420) + "  set title \"Task weights\"\n  set xlabel \"step\"\n  set xtics rotate by 30 right\n"
                "  set ylabel \"weight\"\n  set key outside right\n  set grid\n  set offsets 0, 0, graph 0.05, graph 0.05\n" + plots + "\n" + close_picture;
      add_picture("task_weights");
    }
  }

  // Gate use: per task a heat map over (epoch, expert).
  if (const std::string split = grid_split(h, "gate."); !split.empty()) {
    std::string text, panels;
    std::size_t index = 0;
    for (const std::string& t : tasks) {
      const Grid g = collect_grid(h, split, t, "gate.");
      if (g.epochs.empty()) continue;
      text += grid_text(g, "gate use of task " + t);
      panels += heat_panel("gate_use.dat", index++, g, t, "expert", "mean gate weight");
    }
    if (index > 0) {
      add_data("gate_use.dat", text);
      const auto [w, hgt] = panel_size(index, 520, 400);
      script += "# Gate use: the mean gate weight each task gives every expert, per epoch (" + split + " split).\n" +
                open_picture("gate_use", w, hgt) + layout(index, "Gate use per task and expert (" + split + ")") +
                panels + close_picture;
      add_picture("gate_use");
    }
  }

  // Task-gradient cosine matrix of the last epoch that has one.
  {
    std::int64_t last = -1;
    for (const Record& r : h.records())
      if (starts_with(r.metric, "cosine.")) last = std::max(last, r.epoch);
    if (last >= 0) {
      std::string text = "# row column cosine (epoch " + std::to_string(last) + ")\n", tics;
      for (std::size_t i = 0; i < tasks.size(); ++i) {
        if (i) tics += ", ";
        tics += quote(tasks[i]) + ' ' + std::to_string(i);
        for (std::size_t j = 0; j < tasks.size(); ++j) {
          double v = i == j ? 1.0 : NAN;
          for (const Record& r : h.records())
            if (r.epoch == last && r.task == tasks[i] && r.metric == "cosine." + tasks[j]) v = r.value;
          text += std::to_string(i) + " " + std::to_string(j) + " " + num(v) + "\n";
        }
        text += "\n";
      }
      add_data("gradient_cosine.dat", text);
      const std::string n = num(static_cast<double>(tasks.size()) - 0.5);
      script += "# Task-gradient cosine: how the tasks' gradients on the shared parameters agree.\n" +
                open_picture("gradient_cosine", 560, 480) +
                "  set title " + quote("Task-gradient cosine, shared parameters (epoch " + std::to_string(last) + ")") +
                "\n  set xtics (" + tics + ")\n  set ytics (" + tics + ")\n  set xrange [-0.5:" + n +
                "]\n  set yrange [" + n + ":-0.5]\n  set cbrange [-1:1]\n  set cblabel \"cosine\"\n"
                "  set palette defined (-1 \"#b2182b\", 0 \"#f7f7f7\", 1 \"#2166ac\")\n"
                "  plot \"gradient_cosine.dat\" using 1:2:3 with image notitle, \\\n"
                "       \"\" using 1:2:(sprintf(\"%.2f\", $3)) with labels font \",14\" notitle\n" +
                close_picture;
      add_picture("gradient_cosine");
    }
  }

  // Sparse MoE expert load: model-wide records expert_load.<e>.
  if (const std::string split = grid_split(h, "expert_load."); !split.empty()) {
    const Grid g = collect_grid(h, split, "", "expert_load.");
    if (!g.epochs.empty()) {
      add_data("expert_load.dat", grid_text(g, "share of assignments per expert"));
      script += "# Expert load of the sparse MoE layer: its share of the routed assignments, per epoch.\n" +
                open_picture("expert_load", 620, 440) + layout(1, "Sparse MoE expert load (" + split + ")") +
                heat_panel("expert_load.dat", 0, g, "share of assignments (uniform = " +
                           num(1.0 / static_cast<double>(g.size)) + ")", "expert", "share") +
                close_picture;
      add_picture("expert_load");
    }
  }

  result.script = dir + "/plots.gp";
  write_file_atomic(result.script, script, op);
  const std::string redraw = "cd " + dir + " && gnuplot plots.gp";
  if (result.pictures.empty()) {
    result.message = "no series to draw yet; the script is " + result.script;
    return result;
  }
  if (!options.draw) {
    result.message = "wrote the plot data and " + result.script + "; draw the pictures with: " + redraw;
    return result;
  }
  const std::string program = find_program(options.gnuplot.empty() ? "gnuplot" : options.gnuplot);
  if (program.empty()) {
    result.message = "gnuplot is not installed (Debian: apt-get install gnuplot-nox): wrote the data and " +
                     result.script + "; draw the pictures with: " + redraw;
    return result;
  }
  // Run gnuplot in the folder, its output in plots.log (what the user sees when it fails).
  const std::string log = dir + "/plots.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "plots.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::string arg0 = program, arg1 = "plots.gp";
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  if (spawned == 0) {
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  bool all = true;
  for (const std::string& p : result.pictures) all = all && std::filesystem::exists(p);
  result.drawn = spawned == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && all;
  if (result.drawn) {
    result.message = "pictures in " + dir + " (redraw after editing plots.gp: " + redraw + ")";
  } else {
    std::ifstream in(log);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.size() > 600) text = "..." + text.substr(text.size() - 600);
    result.message = "gnuplot (" + program + ") failed" +
                     (spawned != 0 ? std::string(": ") + std::strerror(spawned) : std::string()) + "; see " + log +
                     (text.empty() ? "" : ":\n" + text);
  }
  return result;
}

}  // namespace ladon::train
