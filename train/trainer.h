// The common training loop as one object: any multi-task model, any balancer, optimizer and
// scheduler, over a Loader; per-task validation every epoch (or every N steps); early stopping on a
// task metric or on delta-m; best and last checkpoints that resume everything; the metrics history
// and its pictures; callbacks at step and epoch ends.
//
//   train::Trainer trainer(model, balancer, optimizer, loader,
//                          {.epochs = 10, .monitor = {.task = "item", .metric = "accuracy"},
//                           .patience = 3, .out = "runs/demo"});
//   trainer.set_validation(val);
//   trainer.on_epoch([](train::Trainer& t) { if (t.improved()) std::puts("new best"); });
//   trainer.fit();                      // or: trainer.resume("runs/demo/last.ckpt"); trainer.fit();
//
// Every piece works alone in a hand-written loop too: Progress (progress.h), History and its
// files (history.h), plot_history (plots.h), evaluate() below, and nn::save_checkpoint.
//
// A balancer that learns from the step's effect (FAMO: Balancer::needs_losses_after_step()) gets the
// batch's task losses after each optimizer step: one more forward of the batch, without a graph, in
// train mode (as the references do), which costs about a forward per step; other balancers none.
//
// Resuming restores the model, optimizer, scheduler, balancer, the states added with add_state(),
// the history, the early-stopping counters and every random stream (the global generator, the
// model's own streams such as Dropout's, the loader's shuffle) and the position in the epoch, so
// 2 epochs + resume + 2 epochs give the same parameters, bit for bit, as 4 epochs straight.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../data/dataset.h"
#include "../data/loader.h"
#include "../mtl/balancer.h"
#include "../mtl/metrics.h"
#include "../mtl/model.h"
#include "../nn/optim.h"
#include "../nn/scheduler.h"
#include "history.h"
#include "plots.h"
#include "progress.h"

namespace ladon::train {

// What "better" means for early stopping and the best checkpoint, on the validation split:
//   {.task = "item", .metric = "accuracy"}   a task's metric (mtl::task_metric_names: "accuracy",
//                                            "mse", for binary tasks also "auc" and "log_loss") or "loss"
//   {.metric = "loss"}                        the mean validation loss of the reported tasks (default)
//   {.metric = "delta_m", .baselines = {0.91, 0.98}}
//       LibMTL's delta-m: 100/T * sum_t s_t (M_t - B_t) / B_t over the reported tasks' metrics, with
//       single-task baselines B_t and s_t = +1 where higher is better (accuracy), -1 otherwise (mse);
//       M_t is each task's main metric (the first of task_metric_names: accuracy or mse)
// Loss, log loss and mse improve downwards; accuracy, AUC and delta-m upwards.
struct Monitor {
  std::string task = {};
  std::string metric = "loss";
  std::vector<double> baselines = {};
};

struct TrainerOptions {
  std::int64_t epochs = 10;
  std::int64_t eval_every = 0;        // validate every N steps too (0: at epoch ends only)
  std::int64_t log_every = 50;        // steps between training-loss records in the history
  std::int64_t eval_batch = 250;      // rows per validation batch
  Monitor monitor = {};
  std::int64_t patience = 0;          // validations without improvement before stop() (0: never)
  double min_delta = 0;               // an improvement must beat the best by more than this
  std::string out = {};               // metrics, pictures and checkpoints go here (empty: nowhere)
  std::int64_t checkpoint_every = 0;  // also write last.ckpt every N steps (0: at epoch ends only)
  bool plots = true;                  // draw the pictures (plots.h) when fit() ends
  bool report = true;                 // at each validation: gate use, and the task-gradient cosine
  ProgressOptions progress = {};
};

class Trainer {
 public:
  using Callback = std::function<void(Trainer&)>;

  // Keeps references to everything, which must outlive the Trainer. Throws ladon::Error on bad
  // options (a monitor metric no task has, baselines of the wrong count, an output folder that
  // cannot be written, a loader whose label count is not the model's task count).
  Trainer(mtl::MultiTaskModel& model, mtl::Balancer& balancer, nn::Optimizer& optimizer, data::Loader& train,
          TrainerOptions options = {});

  // The validation split: one label tensor per task of the model (names too, when it has them).
  void set_validation(const data::Dataset& validation);
  void set_scheduler(nn::LRScheduler& scheduler);  // stepped once per epoch
  // Saved in checkpoints and restored by resume() under `name` (a user's own state).
  void add_state(const std::string& name, nn::Stateful& state);
  // A loss added to the balanced objective every step (a sparse MoE's router losses, say): its
  // gradient is accumulated before the balancer's.
  void set_extra_loss(std::function<Tensor()> loss);
  void on_step(Callback callback);
  void on_epoch(Callback callback);

  // Trains until options.epochs are done or stop() says so; validates, writes history and
  // checkpoints, and at the end draws the pictures. Returns the plot result (empty without out).
  PlotResult fit();
  // Restores everything from a checkpoint written by a Trainer (see above); checks the whole file
  // against this run first, changing nothing when it does not match.
  void resume(const std::string& path);
  // Writes a checkpoint of everything resume() restores.
  void save(const std::string& path);

  // Per-task loss and metrics of `split` in eval mode, without a graph ("loss" for every task, the
  // task's metric for the reported ones).
  std::vector<mtl::TaskResult> evaluate(const data::Dataset& split);

  bool improved() const { return improved_; }  // the last validation beat the best so far
  bool stop() const;                           // patience ran out, or request_stop() was called
  void request_stop() { stop_requested_ = true; }
  double best() const { return best_; }        // the best monitored value (NaN before any)
  std::int64_t best_step() const { return best_step_; }
  double monitored() const { return monitored_; }  // the last validation's monitored value

  std::int64_t epoch() const { return epoch_; }  // 1-based epoch in progress (or last done)
  std::int64_t step() const { return step_; }    // optimizer steps done
  std::int64_t batch() const { return batch_; }  // batches done in this epoch
  const std::vector<double>& last_losses() const { return last_losses_; }  // the last step's task losses
  History& history() { return history_; }
  Progress& progress() { return progress_; }
  const TrainerOptions& options() const { return options_; }
  std::string path(const std::string& file) const;  // out/file

 private:
  void train_step(const data::Batch& batch);
  void validate();
  void record_report(const data::Batch& batch);
  double monitor_value(const std::vector<mtl::TaskResult>& results) const;
  void log_train();
  void save_last();
  double lr() const;

  mtl::MultiTaskModel& model_;
  mtl::Balancer& balancer_;
  nn::Optimizer& optimizer_;
  data::Loader& loader_;
  TrainerOptions options_;
  bool maximise_ = false;
  std::optional<data::Dataset> validation_;
  nn::LRScheduler* scheduler_ = nullptr;
  std::map<std::string, nn::Stateful*> states_;
  std::function<Tensor()> extra_loss_;
  std::vector<Callback> step_callbacks_, epoch_callbacks_;
  History history_;
  Progress progress_;

  std::int64_t epoch_ = 1, batch_ = 0, step_ = 0;
  Generator::State epoch_start_{};  // the loader's shuffle stream before this epoch's begin()
  bool epoch_started_ = false;      // epoch_start_ holds this epoch's state (resumed mid-epoch)
  std::vector<double> epoch_sums_, window_sums_, last_losses_;
  std::int64_t window_steps_ = 0;
  double best_, monitored_;
  std::int64_t best_step_ = -1, bad_validations_ = 0;
  bool improved_ = false, stop_requested_ = false;
  data::Batch last_batch_;
  std::int64_t last_validation_step_ = -1;
  double start_time_ = 0;  // wall time already spent before a resume
  double wall_offset() const;
};

}  // namespace ladon::train
