// The Trainer: resume is exact, early stopping follows the monitor, callbacks run, bad input is a
// clear error that leaves files and the run untouched.
#include <cmath>
#include <limits>

#include "helpers.h"

using namespace ladon;
using ladon::testing::error_message;
using ladon::testing::TempDir;

namespace {

const std::vector<mtl::TaskSpec> kTasks = {
    {.name = "cls", .out = 3, .tower_hidden = {6}},
    {.name = "reg", .out = 1, .tower_hidden = {}, .kind = mtl::TaskKind::regression}};

// 40 rows of 4 features: class = argmax of the first three, target = sum of all.
data::Dataset make_data(std::int64_t rows, std::uint64_t seed) {
  Generator gen(seed);
  data::Dataset ds;
  ds.x = randn({rows, 4}, gen);
  Tensor cls = zeros({rows}, Dtype::int64), reg = zeros({rows});
  const float* x = ds.x.data<float>();
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* r = x + i * 4;
    cls.data<std::int64_t>()[i] = r[0] > r[1] ? (r[0] > r[2] ? 0 : 2) : (r[1] > r[2] ? 1 : 2);
    reg.data<float>()[i] = r[0] + r[1] + r[2] + r[3];
  }
  ds.y = {cls, reg};
  ds.task_names = {"cls", "reg"};
  return ds;
}

// Everything a run needs, built fresh; the init seed differs per run so a resume must restore it.
struct Run {
  Generator gen;
  mtl::SharedBottom model;
  nn::Adam optimizer;
  nn::StepLR schedule;
  mtl::RandomLossWeighting balancer;
  data::Dataset train_set = make_data(40, 1), val_set = make_data(24, 2);
  data::Loader loader;
  train::Trainer trainer;

  Run(train::TrainerOptions options, std::uint64_t init_seed = 5, double lr = 0.01)
      : gen(init_seed),
        model(nn::Sequential(nn::Linear(4, 8, {}, gen), nn::ReLU(), nn::Dropout(0.25, 9)), 8, kTasks, gen),
        optimizer(model.parameters(), {.lr = lr}),
        schedule(optimizer, {.step_size = 2, .gamma = 0.5}),
        balancer(2, 3),
        loader(train_set, {.batch = 10, .shuffle = true, .seed = 4}),
        trainer(model, balancer, optimizer, loader, with_quiet(std::move(options))) {
    trainer.set_validation(val_set);
    trainer.set_scheduler(schedule);
  }
  static train::TrainerOptions with_quiet(train::TrainerOptions o) {
    o.progress.quiet = true;
    o.plots = false;
    return o;
  }
  std::vector<std::vector<float>> parameters() {
    std::vector<std::vector<float>> out;
    for (const Tensor& p : model.parameters()) out.push_back(p.to_vector<float>());
    return out;
  }
};

// A small SharedBottom whose trunk draws dropout masks, so a forward more or less changes the run.
mtl::SharedBottom dropout_model(Generator& gen) {
  return mtl::SharedBottom(nn::Sequential(nn::Linear(4, 8, {}, gen), nn::ReLU(), nn::Dropout(0.25, 9)), 8, kTasks, gen);
}

}  // namespace

TEST_CASE("Trainer: 4 epochs straight and 2 + resume + 2 give bitwise-identical parameters") {
  TempDir dir;
  manual_seed(11);
  Run straight({.epochs = 4, .eval_every = 3, .log_every = 2});
  straight.trainer.fit();
  const auto expected = straight.parameters();
  CHECK(straight.trainer.step() == 16);

  manual_seed(11);
  {
    Run first({.epochs = 2, .eval_every = 3, .log_every = 2, .out = dir.file("a")});
    first.trainer.fit();
    CHECK(first.trainer.step() == 8);
  }
  manual_seed(999);  // the global stream is restored from the checkpoint too
  Run second({.epochs = 4, .eval_every = 3, .log_every = 2, .out = dir.file("a")}, /*init_seed=*/77);
  CHECK(second.parameters() != expected);
  second.trainer.resume(dir.file("a/last.ckpt"));
  CHECK(second.trainer.epoch() == 3);
  second.trainer.fit();
  CHECK(second.parameters() == expected);
  // The history carries on as if nothing happened (only the wall times differ).
  CHECK(second.trainer.history().records().size() == straight.trainer.history().records().size());
  CHECK(second.trainer.history().series("val", "cls", "accuracy").size() ==
        4 + 4);  // every 3 steps mid-epoch, and at the 4 epoch ends
  CHECK(std::filesystem::exists(dir.file("a/metrics.csv")));
  CHECK(std::filesystem::exists(dir.file("a/metrics.jsonl")));
  CHECK(std::filesystem::exists(dir.file("a/best.ckpt")));
  CHECK(std::filesystem::exists(dir.file("a/plots.gp")));
}

TEST_CASE("Trainer: a run stopped mid-epoch resumes at the same batch, bit for bit") {
  TempDir dir;
  manual_seed(3);
  Run straight({.epochs = 3});
  straight.trainer.fit();
  const auto expected = straight.parameters();

  manual_seed(3);
  {
    Run first({.epochs = 3, .out = dir.str()});
    first.trainer.on_step([](train::Trainer& t) {
      if (t.step() == 6) t.request_stop();  // epoch 2, batch 2 of 4
    });
    first.trainer.fit();
    CHECK(first.trainer.step() == 6);
  }
  Run second({.epochs = 3, .out = dir.str()}, 123);
  second.trainer.resume(dir.file("last.ckpt"));
  CHECK(second.trainer.epoch() == 2);
  CHECK(second.trainer.batch() == 2);
  second.trainer.fit();
  CHECK(second.trainer.step() == 12);
  CHECK(second.parameters() == expected);
}

TEST_CASE("Trainer: a balancer that needs the losses after the step (FAMO) gets them, as a hand loop gives them") {
  // The Trainer's FAMO run and a hand-written loop doing forward, backward, step, and the batch's
  // losses again (train mode: the dropout draws too) end with the same parameters and logits.
  const data::Dataset train_set = make_data(40, 1);
  Generator g1(5), g2(5);
  mtl::SharedBottom a = dropout_model(g1), b = dropout_model(g2);
  mtl::FAMO famo_a(2, {.lr = 0.05}), famo_b(2, {.lr = 0.05});
  nn::Adam opt_a(a.parameters(), {.lr = 0.01}), opt_b(b.parameters(), {.lr = 0.01});
  data::Loader loader_a(train_set, {.batch = 10}), loader_b(train_set, {.batch = 10});
  train::Trainer trainer(a, famo_a, opt_a, loader_a, {.epochs = 2, .progress = {.quiet = true}});
  trainer.fit();
  auto losses_of = [&](const std::vector<Tensor>& out, const data::Batch& batch) {
    std::vector<Tensor> losses;
    for (std::size_t t = 0; t < out.size(); ++t) losses.push_back(mtl::task_loss(kTasks[t], out[t], batch.y[t]));
    return losses;
  };
  for (int epoch = 0; epoch < 2; ++epoch)
    for (const data::Batch& batch : loader_b) {
      const std::vector<Tensor> losses = losses_of(b(batch.x), batch);
      opt_b.zero_grad();
      famo_b.backward(losses, b);
      opt_b.step();
      NoGradGuard no_grad;
      famo_b.after_step(losses_of(b(batch.x), batch));
    }
  CHECK(famo_a.logits().to_vector<float>() == famo_b.logits().to_vector<float>());
  CHECK(famo_a.logits().to_vector<float>() != std::vector<float>{0, 0});  // the logits did move
  for (std::size_t k = 0; k < a.parameters().size(); ++k)
    CHECK(a.parameters()[k].to_vector<float>() == b.parameters()[k].to_vector<float>());
}

TEST_CASE("Trainer: FAMO next_batch runs no extra forward and learns from consecutive batches, as a hand loop") {
  // The same run as above with FAMOUpdate::next_batch: the hand loop has no after_step, and one
  // forward per step (the dropout draws would differ if the Trainer ran a second one).
  const data::Dataset train_set = make_data(40, 1);
  Generator g1(5), g2(5);
  mtl::SharedBottom a = dropout_model(g1), b = dropout_model(g2);
  const mtl::FAMOOptions options{.lr = 0.05, .update = mtl::FAMOUpdate::next_batch};
  mtl::FAMO famo_a(2, options), famo_b(2, options);
  nn::Adam opt_a(a.parameters(), {.lr = 0.01}), opt_b(b.parameters(), {.lr = 0.01});
  data::Loader loader_a(train_set, {.batch = 10}), loader_b(train_set, {.batch = 10});
  train::Trainer trainer(a, famo_a, opt_a, loader_a, {.epochs = 2, .progress = {.quiet = true}});
  trainer.fit();
  for (int epoch = 0; epoch < 2; ++epoch)
    for (const data::Batch& batch : loader_b) {
      const std::vector<Tensor> out = b(batch.x);
      std::vector<Tensor> losses;
      for (std::size_t t = 0; t < out.size(); ++t) losses.push_back(mtl::task_loss(kTasks[t], out[t], batch.y[t]));
      opt_b.zero_grad();
      famo_b.backward(losses, b);
      opt_b.step();
    }
  CHECK(famo_a.logits().to_vector<float>() == famo_b.logits().to_vector<float>());
  CHECK(famo_a.logits().to_vector<float>() != std::vector<float>{0, 0});
  for (std::size_t k = 0; k < a.parameters().size(); ++k)
    CHECK(a.parameters()[k].to_vector<float>() == b.parameters()[k].to_vector<float>());
}

TEST_CASE("Trainer: early stopping on a task metric; improved() and stop(); callbacks at steps and epochs") {
  // lr 0: nothing changes, so only the first validation improves.
  Run run({.epochs = 10, .monitor = {.task = "reg", .metric = "mse"}, .patience = 2}, 5, /*lr=*/0.0);
  std::vector<bool> improved;
  std::int64_t steps = 0;
  run.trainer.on_step([&](train::Trainer&) { ++steps; });
  run.trainer.on_epoch([&](train::Trainer& t) { improved.push_back(t.improved()); });
  run.trainer.fit();
  CHECK(improved == std::vector<bool>{true, false, false});
  CHECK(run.trainer.stop());
  CHECK(steps == 12);
  CHECK(run.trainer.best_step() == 4);
  // The monitored value is the validation mse of "reg", as evaluate() gives it.
  double mse = NAN;
  for (const mtl::TaskResult& r : run.trainer.evaluate(run.val_set))
    if (r.task == "reg" && r.metric == "mse") mse = r.value;
  CHECK(run.trainer.best() == mse);
}

TEST_CASE("Trainer: a binary task's validation AUC and log loss are in the history; monitoring AUC maximises it") {
  Generator gen(3);
  const std::vector<mtl::TaskSpec> tasks = {{.name = "hit", .out = 1, .tower_hidden = {4}, .kind = mtl::TaskKind::binary}};
  mtl::SharedBottom model(nn::Sequential(nn::Linear(4, 8, {}, gen), nn::ReLU()), 8, tasks, gen);
  auto split = [](std::int64_t rows, std::uint64_t seed) {
    data::Dataset ds = make_data(rows, seed);
    const std::vector<float> sum = ds.y[1].to_vector<float>();
    std::vector<float> hit;
    for (float v : sum) hit.push_back(v > 0 ? 1.0f : 0.0f);
    ds.y = {tensor(hit, {rows})};
    ds.task_names = {"hit"};
    return ds;
  };
  const data::Dataset train_set = split(40, 1), val_set = split(24, 2);
  nn::Adam optimizer(model.parameters(), {.lr = 0.01});
  mtl::StaticWeighting balancer = mtl::StaticWeighting::equal(1);
  data::Loader loader(train_set, {.batch = 10, .shuffle = true, .seed = 4});
  train::Trainer trainer(model, balancer, optimizer, loader,
                         Run::with_quiet({.epochs = 3, .monitor = {.task = "hit", .metric = "auc"}}));
  trainer.set_validation(val_set);
  trainer.fit();
  const auto auc = trainer.history().series("val", "hit", "auc");
  REQUIRE(auc.size() == 3);
  CHECK(trainer.history().series("val", "hit", "log_loss").size() == 3);
  double best = -1;
  for (const auto& record : auc) best = std::max(best, record.value);
  CHECK(trainer.best() == best);
  CHECK(error_message([&] {
          train::Trainer(model, balancer, optimizer, loader, Run::with_quiet({.monitor = {.task = "hit", .metric = "f1"}}));
        }) == "Trainer: task 'hit' has no metric 'f1'; tasks: hit (loss, accuracy, auc, log_loss)");
}

TEST_CASE("Trainer: delta-m is LibMTL's mean relative improvement over the baselines, in percent") {
  Run run({.epochs = 1, .monitor = {.metric = "delta_m", .baselines = {0.5, 2.0}}});
  run.trainer.fit();
  double acc = NAN, mse = NAN;
  for (const mtl::TaskResult& r : run.trainer.evaluate(run.val_set)) {
    if (r.metric == "accuracy") acc = r.value;
    if (r.metric == "mse") mse = r.value;
  }
  // Accuracy: higher is better; mse: lower is better.
  const double expected = 100.0 / 2 * ((acc - 0.5) / 0.5 - (mse - 2.0) / 2.0);
  CHECK(run.trainer.monitored() == doctest::Approx(expected).epsilon(1e-12));
  CHECK(run.trainer.history().series("val", "", "delta_m").size() == 1);
}

TEST_CASE("Trainer: the history has train losses with weights and lr, validation metrics, gate use and cosines") {
  Generator gen(2);
  mtl::MMoE model({.in = 4, .experts = 3, .expert_hidden = {6}, .tasks = kTasks}, gen);
  nn::SGD optimizer(model.parameters(), {.lr = 0.05});
  auto balancer = mtl::StaticWeighting({1.0, 0.5});
  const data::Dataset train_set = make_data(40, 1), val_set = make_data(20, 2);
  data::Loader loader(train_set, {.batch = 10});
  train::Trainer trainer(model, balancer, optimizer, loader,
                         {.epochs = 2, .log_every = 2, .progress = {.quiet = true}});
  trainer.set_validation(val_set);
  trainer.fit();
  const train::History& h = trainer.history();
  const std::vector<train::Record> train_loss = h.series("train", "cls", "loss");
  REQUIRE(train_loss.size() == 4);
  CHECK(train_loss[0].step == 2);
  CHECK(train_loss[0].weights == std::vector<double>{1.0, 0.5});
  CHECK(train_loss[0].lr == 0.05);
  CHECK(h.series("val", "reg", "mse").size() == 2);
  CHECK(h.series("val", "reg", "loss").size() == 2);
  CHECK(h.series("val", "", "loss").size() == 2);
  double gate_sum = 0;
  for (int e = 0; e < 3; ++e) gate_sum += h.series("val", "cls", "gate." + std::to_string(e)).at(1).value;
  CHECK(gate_sum == doctest::Approx(1.0));
  const std::vector<train::Record> cos = h.series("train", "cls", "cosine.reg");
  REQUIRE(cos.size() == 2);
  CHECK(cos[1].value == doctest::Approx(h.series("train", "reg", "cosine.cls")[1].value));
  CHECK(std::abs(cos[1].value) <= 1.0);
}

TEST_CASE("Trainer: bad monitors, splits, resume files and folders are clear errors") {
  TempDir dir;
  CHECK(error_message([] { Run({.monitor = {.task = "cls", .metric = "f1"}}); }) ==
        "Trainer: task 'cls' has no metric 'f1'; tasks: cls (loss, accuracy), reg (loss, mse)");
  CHECK(error_message([] { Run({.monitor = {.task = "nope", .metric = "loss"}}); }) ==
        "Trainer: no task 'nope' to monitor; tasks: cls (loss, accuracy), reg (loss, mse)");
  CHECK(error_message([] { Run({.monitor = {.metric = "accuracy"}}); }) ==
        "Trainer: monitor metric 'accuracy' needs a task (monitor.task); without one only 'loss' (the mean) or "
        "'delta_m'");
  CHECK(error_message([] { Run({.monitor = {.metric = "delta_m", .baselines = {1}}}); }) ==
        "Trainer: delta_m needs one baseline per reported task (2), got 1");
  // An infinite min_delta would make every evaluation a non-improvement: the run would stop after patience.
  CHECK(error_message([] { Run({.min_delta = std::numeric_limits<double>::infinity()}); }) ==
        "Trainer: min_delta must be finite and >= 0, got inf");
  { std::ofstream(dir.file("file")) << "keep"; }
  CHECK(error_message([&] { Run({.out = dir.file("file/run")}); }) ==
        "History: cannot create output folder '" + dir.file("file/run") + "': Not a directory");
  CHECK(ladon::testing::read_text(dir.file("file")) == "keep");

  Run run({.epochs = 1, .out = dir.file("run")});
  data::Dataset other = make_data(8, 3);
  other.task_names = {"cls", "price"};
  CHECK(error_message([&] { run.trainer.set_validation(other); }) ==
        "Trainer::set_validation: the validation split's tasks are [cls, price], the model's [cls, reg]");
  other.y.pop_back();
  other.task_names.clear();
  CHECK(error_message([&] { run.trainer.set_validation(other); }) ==
        "Trainer::set_validation: the validation split has 1 label tensors, the model 2 tasks");
  run.trainer.fit();
  const auto trained = run.parameters();

  // A checkpoint of another model: named tensors differ; nothing changes.
  Generator gen(1);
  mtl::SharedBottom small(nn::Sequential(nn::Linear(4, 5, {}, gen), nn::ReLU()), 5, kTasks, gen);
  nn::save_checkpoint(dir.file("other.ckpt"), small);
  CHECK(error_message([&] { run.trainer.resume(dir.file("other.ckpt")); }) ==
        "Trainer::resume: '" + dir.file("other.ckpt") + "': was not written by a Trainer (no trainer state in it)");
  // A Trainer checkpoint of a different architecture: the model check names the tensors.
  {
    mtl::MMoE moe({.in = 4, .experts = 2, .expert_hidden = {3}, .tasks = kTasks}, gen);
    nn::SGD sgd(moe.parameters(), {.lr = 0.1});
    auto equal = mtl::StaticWeighting::equal(2);
    data::Loader loader(run.train_set, {.batch = 10});
    train::Trainer other_run(moe, equal, sgd, loader, {.progress = {.quiet = true}});
    const auto before = moe.parameters()[0].to_vector<float>();
    const std::string e = error_message([&] { other_run.resume(dir.file("run/last.ckpt")); });
    CHECK(e.rfind("Trainer::resume: '" + dir.file("run/last.ckpt") + "': ", 0) == 0);
    INFO(e);
    CHECK(e.find("load_module_state: tensor 'towers.cls.0.weight': shape mismatch") != std::string::npos);
    CHECK(moe.parameters()[0].to_vector<float>() == before);
  }
  // A truncated checkpoint: the file check says so, and the run is untouched.
  const std::string bytes = ladon::testing::read_text(dir.file("run/last.ckpt"));
  { std::ofstream(dir.file("cut.ckpt"), std::ios::binary) << bytes.substr(0, bytes.size() / 2); }
  CHECK(error_message([&] { run.trainer.resume(dir.file("cut.ckpt")); }).find("cut.ckpt") != std::string::npos);
  CHECK(run.parameters() == trained);
  CHECK(run.trainer.step() == 4);
  // A checkpoint whose counters are damaged (a valid file, written by hand): every part is checked
  // before any is applied, so a fresh run's model and counters are untouched.
  Run fresh({.epochs = 1, .out = dir.file("fresh")}, /*init_seed=*/77);
  const auto untrained = fresh.parameters();
  REQUIRE(untrained != trained);
  for (const char* key : {"step", "best", "wall_time"}) {
    nn::Checkpoint c = nn::read_checkpoint(dir.file("run/last.ckpt"));
    c.metadata.set(key, "damaged");
    nn::write_checkpoint(dir.file("damaged.ckpt"), c);
    INFO(std::string(key));
    CHECK(error_message([&] { fresh.trainer.resume(dir.file("damaged.ckpt")); }) ==
          "Trainer::resume: '" + dir.file("damaged.ckpt") + "': entry '" + key + "' is a string, not " +
              (std::string(key) == "step" ? "an integer" : "a number"));
    CHECK(fresh.parameters() == untrained);
    CHECK(fresh.trainer.step() == 0);
  }
  // The random state is checked with everything else, before any of it is applied: a file with a
  // valid random state and a bad later part (an infinite lr), or a bad random state and valid
  // rest, leaves the global generator, the model's streams, the weights and the step unchanged.
  const auto words = [](const Generator& g) {
    const Generator::State s = g.state();
    return std::vector<std::uint64_t>{s.words[0], s.words[1], s.words[2], s.words[3], s.has_spare_normal};
  };
  default_generator().seed_(1234);
  const auto global_before = words(default_generator());
  const nn::StateDict streams_before = nn::random_state(fresh.model);
  {
    nn::Checkpoint c = nn::read_checkpoint(dir.file("run/last.ckpt"));
    Generator saved;  // the file's global state differs, so applying it would show
    saved.set_state(nn::generator_state(c.extra["random"], "global", "test"));
    REQUIRE(words(saved) != global_before);
    c.optimizer.set("group.0.lr", std::numeric_limits<double>::infinity());
    nn::write_checkpoint(dir.file("inf_lr.ckpt"), c);
  }
  CHECK(error_message([&] { fresh.trainer.resume(dir.file("inf_lr.ckpt")); }) ==
        "Trainer::resume: '" + dir.file("inf_lr.ckpt") +
            "': Adam: group 0: lr must be finite and >= 0, got inf in the state");
  {
    nn::Checkpoint c = nn::read_checkpoint(dir.file("run/last.ckpt"));
    nn::StateDict random;
    for (const auto& [key, value] : c.extra["random"].items())
      if (key.rfind("model.", 0) != 0) random.set(key, value);  // the Dropout's stream left out
    c.extra["random"] = random;
    nn::write_checkpoint(dir.file("no_stream.ckpt"), c);
  }
  const std::string e = error_message([&] { fresh.trainer.resume(dir.file("no_stream.ckpt")); });
  CHECK(e.rfind("Trainer::resume: '" + dir.file("no_stream.ckpt") +
                    "': load_random_state: no saved state for the model's random stream '",
                0) == 0);
  CHECK(words(default_generator()) == global_before);
  CHECK(nn::random_state(fresh.model) == streams_before);
  CHECK(fresh.parameters() == untrained);
  CHECK(fresh.trainer.step() == 0);
}
