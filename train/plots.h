// Pictures of a training run, drawn by gnuplot from a History: the library writes the data files
// and a gnuplot script (plots.gp) into a folder and runs gnuplot there when it is installed, so the
// user can edit the script and redraw with `cd DIR && gnuplot plots.gp`.
//
//   train::PlotResult r = train::plot_history(history, "runs/demo");
//   std::printf("%s\n", r.message.c_str());   // where the pictures are, or how to draw them
//
// Pictures (each as .png and .svg), drawn when the history has their series:
//   learning_curves  per task: train and validation loss, and the validation metric (right axis)
//   task_weights     the balancer's weight of each task over the steps
//   gate_use         per task a heat map of the mean gate weight of every expert over the epochs
//   gradient_cosine  the T x T cosine matrix of the task gradients on the shared parameters (last epoch)
//   expert_load      a sparse MoE layer's share of assignments per expert over the epochs
#pragma once

#include "layer_fence.h"

#include <string>
#include <vector>

#include "history.h"

namespace ladon::train {

struct PlotOptions {
  // The gnuplot to run: empty finds "gnuplot" on PATH; a name without '/' is looked up on PATH.
  // When none is found, the data and script are still written and the message says how to draw.
  std::string gnuplot = {};
  bool draw = true;  // false: only write the data and the script
};

struct PlotResult {
  std::string script;                 // dir/plots.gp
  std::vector<std::string> data;      // the data files written
  std::vector<std::string> pictures;  // the pictures the script draws (dir/name.png, dir/name.svg)
  bool drawn = false;                 // gnuplot ran and every picture exists
  std::string message;                // one line for the user: where the pictures are, or how to draw them
};

// Writes the data and script for every picture the history has data for into `dir` (created when
// needed; throws ladon::Error when it cannot be written), then draws them unless told not to. A
// gnuplot that fails is reported in the message (with its log, dir/plots.log), not thrown.
PlotResult plot_history(const History& history, const std::string& dir, const PlotOptions& options = {});

// The full path of an executable called `name` on PATH (or `name` itself when it holds a '/' and is
// executable); empty when there is none.
std::string find_program(const std::string& name);

}  // namespace ladon::train
