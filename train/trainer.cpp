#include "trainer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../core/autograd.h"
#include "../core/error.h"
#include "../mtl/architectures.h"
#include "../mtl/report.h"
#include "../nn/checkpoint.h"
#include "files.h"

namespace ladon::train {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<std::string> task_names(const mtl::MultiTaskModel& model) {
  std::vector<std::string> names;
  for (const mtl::TaskSpec& t : model.tasks()) names.push_back(t.name);
  return names;
}

// The task's main metric, which delta-m compares with its baseline.
std::string metric_of(const mtl::TaskSpec& t) { return mtl::task_metric_names(t).front(); }

std::size_t reported_tasks(const mtl::MultiTaskModel& model) {
  std::size_t n = 0;
  for (const mtl::TaskSpec& t : model.tasks()) n += t.auxiliary ? 0 : 1;
  return n;
}

}  // namespace

Trainer::Trainer(mtl::MultiTaskModel& model, mtl::Balancer& balancer, nn::Optimizer& optimizer, data::Loader& train,
                 TrainerOptions options)
    : model_(model),
      balancer_(balancer),
      optimizer_(optimizer),
      loader_(train),
      options_(std::move(options)),
      history_(task_names(model), options_.out),
      progress_(options_.epochs * train.num_batches(), task_names(model), options_.progress),
      best_(kNaN),
      monitored_(kNaN) {
  const char* op = "Trainer";
  LADON_CHECK(options_.epochs >= 1, op, "epochs must be >= 1, got ", options_.epochs);
  for (auto [name, v] : {std::pair{"eval_every", options_.eval_every}, std::pair{"log_every", options_.log_every},
                         std::pair{"patience", options_.patience}, std::pair{"checkpoint_every", options_.checkpoint_every}})
    LADON_CHECK(v >= 0, op, name, " must be >= 0, got ", v);
  LADON_CHECK(options_.eval_batch >= 1, op, "eval_batch must be >= 1, got ", options_.eval_batch);
  // Finite: with an infinite min_delta no evaluation could ever improve.
  LADON_CHECK(std::isfinite(options_.min_delta) && options_.min_delta >= 0, op, "min_delta must be finite and >= 0, got ",
              options_.min_delta);
  LADON_CHECK(balancer.num_tasks() == model.num_tasks(), op, "the balancer is for ", balancer.num_tasks(),
              " tasks, the model has ", model.num_tasks());
  const Monitor& m = options_.monitor;
  if (m.metric == "delta_m") {
    LADON_CHECK(m.task.empty(), op, "delta_m is over all reported tasks: leave monitor.task empty (got '", m.task,
                "')");
    LADON_CHECK(m.baselines.size() == reported_tasks(model), op, "delta_m needs one baseline per reported task (",
                reported_tasks(model), "), got ", m.baselines.size());
    for (double b : m.baselines) LADON_CHECK(b != 0 && std::isfinite(b), op, "a delta_m baseline is ", b);
    maximise_ = true;
  } else if (m.task.empty()) {
    LADON_CHECK(m.metric == "loss", op, "monitor metric '", m.metric,
                "' needs a task (monitor.task); without one only 'loss' (the mean) or 'delta_m'");
  } else {
    const mtl::TaskSpec* spec = nullptr;
    std::string known;
    for (const mtl::TaskSpec& t : model.tasks()) {
      known += (known.empty() ? "" : ", ") + t.name + " (loss";
      if (!t.auxiliary)
        for (const std::string& name : mtl::task_metric_names(t)) known += ", " + name;
      known += ")";
      if (t.name == m.task) spec = &t;
    }
    LADON_CHECK(spec != nullptr, op, "no task '", m.task, "' to monitor; tasks: ", known);
    const std::vector<std::string> metrics = mtl::task_metric_names(*spec);
    LADON_CHECK(m.metric == "loss" || (!spec->auxiliary && std::find(metrics.begin(), metrics.end(), m.metric) != metrics.end()),
                op, "task '", m.task, "' has no metric '", m.metric, "'; tasks: ", known);
    maximise_ = mtl::higher_is_better(m.metric);
  }
  if (!options_.out.empty()) ensure_writable_dir(options_.out, op);
  epoch_sums_.assign(model.num_tasks(), 0.0);
  window_sums_.assign(model.num_tasks(), 0.0);
  last_losses_.assign(model.num_tasks(), 0.0);
}

void Trainer::set_validation(const data::Dataset& validation) {
  const char* op = "Trainer::set_validation";
  const std::vector<std::string> names = task_names(model_);
  LADON_CHECK(validation.y.size() == names.size(), op, "the validation split has ", validation.y.size(),
              " label tensors, the model ", names.size(), " tasks");
  if (!validation.task_names.empty()) {
    std::string theirs, ours;
    for (const std::string& n : validation.task_names) theirs += (theirs.empty() ? "" : ", ") + n;
    for (const std::string& n : names) ours += (ours.empty() ? "" : ", ") + n;
    LADON_CHECK(validation.task_names == names, op, "the validation split's tasks are [", theirs,
                "], the model's [", ours, "]");
  }
  LADON_CHECK(validation.size() > 0, op, "the validation split is empty");
  validation_ = validation;
}

void Trainer::set_scheduler(nn::LRScheduler& scheduler) { scheduler_ = &scheduler; }

void Trainer::add_state(const std::string& name, nn::Stateful& state) {
  LADON_CHECK(!name.empty() && !states_.count(name), "Trainer::add_state", "state name '", name,
              "' is empty or taken");
  states_[name] = &state;
}

void Trainer::set_extra_loss(std::function<Tensor()> loss) { extra_loss_ = std::move(loss); }
void Trainer::on_step(Callback callback) { step_callbacks_.push_back(std::move(callback)); }
void Trainer::on_epoch(Callback callback) { epoch_callbacks_.push_back(std::move(callback)); }

bool Trainer::stop() const {
  return stop_requested_ || (options_.patience > 0 && bad_validations_ >= options_.patience);
}

std::string Trainer::path(const std::string& file) const {
  LADON_CHECK(!options_.out.empty(), "Trainer", "no output folder (options.out) for '", file, "'");
  return options_.out + "/" + file;
}

double Trainer::wall_offset() const { return start_time_ + progress_.elapsed(); }
double Trainer::lr() const { return optimizer_.lr(); }

void Trainer::train_step(const data::Batch& batch) {
  const std::vector<mtl::TaskSpec>& tasks = model_.tasks();
  LADON_CHECK(batch.y.size() == tasks.size(), "Trainer", "a training batch has ", batch.y.size(),
              " label tensors, the model ", tasks.size(), " tasks");
  const std::vector<Tensor> out = model_(batch.x);
  std::vector<Tensor> losses;
  for (std::size_t t = 0; t < tasks.size(); ++t) losses.push_back(mtl::task_loss(tasks[t], out[t], batch.y[t]));
  optimizer_.zero_grad();
  // The extra loss shares the forward's graph with the task losses: keep it for the balancer.
  if (extra_loss_) extra_loss_().backward(Tensor(), /*retain_graph=*/true);
  balancer_.backward(losses, model_);
  optimizer_.step();
  if (balancer_.needs_losses_after_step()) {  // FAMO: the same batch again, one forward without a graph
    NoGradGuard no_grad;
    const std::vector<Tensor> after = model_(batch.x);
    std::vector<Tensor> losses_after;
    for (std::size_t t = 0; t < tasks.size(); ++t) losses_after.push_back(mtl::task_loss(tasks[t], after[t], batch.y[t]));
    balancer_.after_step(losses_after);
  }
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    last_losses_[t] = losses[t].item();
    window_sums_[t] += last_losses_[t];
    epoch_sums_[t] += last_losses_[t];
  }
  ++window_steps_;
  last_batch_ = batch;
}

void Trainer::log_train() {
  if (window_steps_ == 0) return;
  const std::vector<std::string>& names = history_.tasks();
  for (std::size_t t = 0; t < names.size(); ++t)
    history_.add({.step = step_, .epoch = epoch_, .split = "train", .task = names[t], .metric = "loss",
                  .value = window_sums_[t] / static_cast<double>(window_steps_), .weights = balancer_.weights(),
                  .lr = lr(), .wall_time = wall_offset()});
  window_sums_.assign(names.size(), 0.0);
  window_steps_ = 0;
}

std::vector<mtl::TaskResult> Trainer::evaluate(const data::Dataset& split) {
  const std::vector<mtl::TaskSpec>& tasks = model_.tasks();
  LADON_CHECK(split.y.size() == tasks.size(), "Trainer::evaluate", "the split has ", split.y.size(),
              " label tensors, the model ", tasks.size(), " tasks");
  NoGradGuard no_grad;
  const bool was_training = model_.is_training();
  model_.eval();
  mtl::TaskMetrics metrics(tasks);
  std::vector<double> loss_sums(tasks.size(), 0.0);
  auto* moe = dynamic_cast<mtl::GatedMixture*>(&model_);
  std::vector<std::vector<double>> gate_sums(tasks.size());
  for (const data::Batch& b : data::Loader(split, {.batch = options_.eval_batch})) {
    const std::vector<Tensor> out = model_(b.x);
    metrics.add(out, b.y);
    const auto rows = static_cast<double>(b.x.size(0));
    for (std::size_t t = 0; t < tasks.size(); ++t) {
      loss_sums[t] += mtl::task_loss(tasks[t], out[t], b.y[t]).item() * rows;
      if (moe == nullptr) continue;
      const mtl::GateStats stats = mtl::gate_stats(moe->gate_weights(t));
      gate_sums[t].resize(stats.mean_weight.size(), 0.0);
      for (std::size_t e = 0; e < stats.mean_weight.size(); ++e) gate_sums[t][e] += stats.mean_weight[e] * rows;
    }
  }
  model_.train(was_training);
  const auto rows = static_cast<double>(split.size());
  std::vector<mtl::TaskResult> results;
  for (std::size_t t = 0; t < tasks.size(); ++t)
    results.push_back({tasks[t].name, "loss", loss_sums[t] / rows, split.size()});
  for (const mtl::TaskResult& r : metrics.results()) results.push_back(r);
  for (std::size_t t = 0; t < gate_sums.size(); ++t)
    for (std::size_t e = 0; e < gate_sums[t].size(); ++e)
      results.push_back({tasks[t].name, "gate." + std::to_string(e), gate_sums[t][e] / rows, split.size()});
  return results;
}

double Trainer::monitor_value(const std::vector<mtl::TaskResult>& results) const {
  const Monitor& m = options_.monitor;
  if (!m.task.empty()) {
    for (const mtl::TaskResult& r : results)
      if (r.task == m.task && r.metric == m.metric) return r.value;
    return kNaN;
  }
  double sum = 0;
  std::size_t n = 0;
  for (const mtl::TaskSpec& t : model_.tasks()) {
    if (t.auxiliary) continue;
    for (const mtl::TaskResult& r : results) {
      if (r.task != t.name) continue;
      if (m.metric == "loss" && r.metric == "loss") sum += r.value;
      if (m.metric == "delta_m" && r.metric == metric_of(t)) {
        const double b = m.baselines[n], sign = mtl::higher_is_better(r.metric) ? 1.0 : -1.0;
        sum += sign * (r.value - b) / b * 100.0;
      }
    }
    ++n;
  }
  return n > 0 ? sum / static_cast<double>(n) : kNaN;
}

void Trainer::record_report(const data::Batch& batch) {
  // The task gradients on the shared parameters of (up to 256 rows of) the last training batch,
  // in eval mode so no random stream moves.
  const std::vector<mtl::TaskSpec>& tasks = model_.tasks();
  if (tasks.size() < 2 || !batch.x.defined()) return;
  const std::vector<Tensor> shared = model_.shared_parameters();
  if (shared.empty()) return;
  const std::int64_t rows = std::min<std::int64_t>(batch.x.size(0), 256);
  const bool was_training = model_.is_training();
  model_.eval();
  const std::vector<Tensor> out = model_(batch.x.narrow(0, 0, rows));
  std::vector<Tensor> losses;
  for (std::size_t t = 0; t < tasks.size(); ++t)
    losses.push_back(mtl::task_loss(tasks[t], out[t], batch.y[t].narrow(0, 0, rows)));
  const mtl::GradientConflicts c = mtl::gradient_conflicts(losses, shared);
  model_.train(was_training);
  for (std::size_t i = 0; i < tasks.size(); ++i)
    for (std::size_t j = 0; j < tasks.size(); ++j)
      if (i != j)
        history_.add({.step = step_, .epoch = epoch_, .split = "train", .task = tasks[i].name,
                      .metric = "cosine." + tasks[j].name, .value = c.cosine[i][j], .wall_time = wall_offset()});
}

void Trainer::validate() {
  last_validation_step_ = step_;
  improved_ = false;
  if (!validation_) return;
  const std::vector<mtl::TaskResult> results = evaluate(*validation_);
  for (const mtl::TaskResult& r : results) {
    if (!options_.report && r.metric.rfind("gate.", 0) == 0) continue;
    history_.add({.step = step_, .epoch = epoch_, .split = "val", .task = r.task, .metric = r.metric,
                  .value = r.value, .lr = lr(), .wall_time = wall_offset()});
  }
  const Monitor& m = options_.monitor;
  monitored_ = monitor_value(results);
  if (m.task.empty())
    history_.add({.step = step_, .epoch = epoch_, .split = "val", .task = "", .metric = m.metric,
                  .value = monitored_, .lr = lr(), .wall_time = wall_offset()});
  if (options_.report) record_report(last_batch_);
  const double delta = options_.min_delta;
  improved_ = !std::isnan(monitored_) &&
              (std::isnan(best_) || (maximise_ ? monitored_ > best_ + delta : monitored_ < best_ - delta));
  if (improved_) {
    best_ = monitored_;
    best_step_ = step_;
    bad_validations_ = 0;
  } else {
    ++bad_validations_;
  }
}

void Trainer::save_last() {
  if (options_.out.empty()) return;
  save(path("last.ckpt"));
  history_.write();
}

PlotResult Trainer::fit() {
  const std::int64_t batches = loader_.num_batches();
  while (epoch_ <= options_.epochs && !stop()) {
    // The shuffle stream's state before begin() decides this epoch's order: a resumed epoch
    // starts from the saved state and skips the batches already done.
    if (epoch_started_)
      loader_.generator().set_state(epoch_start_);
    else
      epoch_start_ = loader_.generator().state(), epoch_started_ = true;
    progress_.start_epoch(epoch_, options_.epochs, batches);
    bool save_best = false;
    for (auto it = loader_.begin_at(batch_); it != loader_.end(); ++it) {
      train_step(*it);
      ++batch_, ++step_;
      progress_.step(it->x.size(0), last_losses_);
      if (options_.log_every > 0 && window_steps_ >= options_.log_every) log_train();
      if (options_.eval_every > 0 && step_ % options_.eval_every == 0 && batch_ < batches) {
        validate();
        if (improved_ && !options_.out.empty()) save(path("best.ckpt"));
      }
      if (options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0 && batch_ < batches) save_last();
      for (Callback& cb : step_callbacks_) cb(*this);
      if (stop()) break;
    }
    if (batch_ < batches) {  // stopped mid-epoch: the checkpoint resumes right here
      save_last();
      break;
    }
    log_train();
    if (scheduler_) scheduler_->step();
    if (last_validation_step_ != step_) {
      validate();
      save_best = improved_;
    }
    for (Callback& cb : epoch_callbacks_) cb(*this);
    ++epoch_, batch_ = 0, epoch_started_ = false;
    epoch_sums_.assign(epoch_sums_.size(), 0.0);
    save_last();
    if (save_best && !options_.out.empty()) save(path("best.ckpt"));
  }
  progress_.finish();
  if (options_.out.empty()) return {};
  history_.write();
  return plot_history(history_, options_.out, {.draw = options_.plots});
}

void Trainer::save(const std::string& file) {
  nn::Checkpoint c;
  c.model = nn::module_state(model_, /*copy=*/false);
  c.optimizer = optimizer_.state_dict();
  if (scheduler_) c.scheduler = scheduler_->state_dict();
  nn::StateDict& meta = c.metadata;
  meta.set("trainer", std::int64_t{1});
  meta.set("epoch", epoch_);
  meta.set("batch", batch_);
  meta.set("step", step_);
  meta.set("batches_per_epoch", loader_.num_batches());
  meta.set("epoch_started", std::int64_t{epoch_started_});
  Generator epoch_start;
  epoch_start.set_state(epoch_start_);
  nn::save_generator(meta, "loader_epoch_start", epoch_start);
  meta.set("best", best_);
  meta.set("best_step", best_step_);
  meta.set("bad_validations", bad_validations_);
  meta.set("monitored", monitored_);
  meta.set("last_validation_step", last_validation_step_);
  meta.set("wall_time", wall_offset());
  meta.set("window_steps", window_steps_);
  for (std::size_t t = 0; t < window_sums_.size(); ++t) {
    meta.set("window_sum." + std::to_string(t), window_sums_[t]);
    meta.set("epoch_sum." + std::to_string(t), epoch_sums_[t]);
  }
  c.extra["balancer"] = balancer_.state_dict();
  c.extra["history"] = history_.state_dict();
  nn::StateDict random;
  nn::save_nested(random, "model", nn::random_state(model_));
  nn::save_generator(random, "global", default_generator());
  nn::save_generator(random, "loader", loader_.generator());
  c.extra["random"] = random;
  for (const auto& [name, state] : states_) c.extra["state." + name] = state->state_dict();
  nn::write_checkpoint(file, c);
}

void Trainer::resume(const std::string& file) {
  const std::string op_text = "Trainer::resume: '" + file + "'";
  const char* op = op_text.c_str();
  const nn::Checkpoint c = nn::read_checkpoint(file);  // verifies size and checksum
  const nn::StateDict& meta = c.metadata;
  LADON_CHECK(meta.contains("trainer"), op, "was not written by a Trainer (no trainer state in it)");
  const auto section = [&](const std::string& name) -> const nn::StateDict& {
    const auto it = c.extra.find(name);
    LADON_CHECK(it != c.extra.end(), op, "has no '", name, "' state");
    return it->second;
  };
  const nn::StateDict &balancer = section("balancer"), &history = section("history"), &random = section("random");
  // Check every part against this run before changing anything.
  try {
    nn::check_module_state(model_, c.model, /*strict=*/true);
    nn::check_random_state(model_, nn::nested(random, "model"));
    optimizer_.check_state_dict(c.optimizer);
    if (scheduler_) {
      LADON_CHECK(!c.scheduler.empty(), op, "has no scheduler state, but this run has a scheduler");
      scheduler_->check_state_dict(c.scheduler);
    }
    balancer_.check_state_dict(balancer);
    history_.check_state_dict(history);
    for (const auto& [name, state] : states_) state->check_state_dict(section("state." + name));
  } catch (const Error& e) {
    throw Error(op_text + ": " + e.what());
  }
  const std::int64_t batches = meta.integer("batches_per_epoch", op);
  LADON_CHECK(batches == loader_.num_batches(), op, "was written with ", batches,
              " batches per epoch, this loader has ", loader_.num_batches(), " (a different batch size or dataset)");
  const std::int64_t batch = meta.integer("batch", op);
  LADON_CHECK(batch >= 0 && batch <= batches, op, "batch ", batch, " is not in 0..", batches);
  std::vector<double> window(window_sums_.size()), epoch(epoch_sums_.size());
  for (std::size_t t = 0; t < window.size(); ++t) {
    window[t] = meta.number("window_sum." + std::to_string(t), op);
    epoch[t] = meta.number("epoch_sum." + std::to_string(t), op);
  }
  const Generator::State global = nn::generator_state(random, "global", op),
                         loader = nn::generator_state(random, "loader", op),
                         epoch_start = nn::generator_state(meta, "loader_epoch_start", op);
  // Every counter is read here too, so a damaged one fails before anything is applied.
  const std::int64_t epoch_count = meta.integer("epoch", op), step = meta.integer("step", op);
  const bool epoch_started = meta.integer("epoch_started", op) != 0;
  const double best = meta.number("best", op);
  const std::int64_t best_step = meta.integer("best_step", op), bad_validations = meta.integer("bad_validations", op);
  const double monitored = meta.number("monitored", op);
  const std::int64_t last_validation_step = meta.integer("last_validation_step", op);
  const double wall_time = meta.number("wall_time", op);
  const std::int64_t window_steps = meta.integer("window_steps", op);
  // Everything checked: apply.
  nn::load_random_state(model_, nn::nested(random, "model"));
  nn::load_module_state(model_, c.model, /*strict=*/true);
  optimizer_.load_state_dict(c.optimizer);
  if (scheduler_) scheduler_->load_state_dict(c.scheduler);
  balancer_.load_state_dict(balancer);
  history_.load_state_dict(history);
  for (const auto& [name, state] : states_) state->load_state_dict(section("state." + name));
  default_generator().set_state(global);
  loader_.generator().set_state(loader);
  epoch_start_ = epoch_start;
  epoch_ = epoch_count;
  batch_ = batch;
  step_ = step;
  epoch_started_ = epoch_started;
  best_ = best;
  best_step_ = best_step;
  bad_validations_ = bad_validations;
  monitored_ = monitored;
  last_validation_step_ = last_validation_step;
  start_time_ = wall_time - progress_.elapsed();
  window_steps_ = window_steps;
  window_sums_ = window;
  epoch_sums_ = epoch;
  improved_ = false;
  stop_requested_ = false;
}

}  // namespace ladon::train
