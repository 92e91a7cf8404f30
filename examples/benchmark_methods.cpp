// Every task-balancing method of ladon on two public benchmarks, over several seeds, in one table:
//
//   MultiFashion (data/multi_fashion.h: two Fashion-MNIST items overlaid as Sener & Koltun built
//   MultiMNIST) with the Pareto-MTL LeNet (mtl/lenet.h): test accuracy of "top_left" and
//   "bottom_right";
//   census (examples/census_mtl's UCI Adult tasks, income and never-married) with an MMoE behind a
//   feature embedding: test AUC per task (skipped with a message when --adult has no data).
//
// Per benchmark and method: the test metric per task (mean ± sample std over the seeds), delta-m
// against single-task models trained the same way (LibMTL's 100/T sum_t (M_t - B_t) / B_t, per seed
// against the single-task means), the median seconds per training epoch (steps only) and its ratio
// to equal weighting (per seed, against the equal run of that seed timed just before it; the median
// over the seeds), and two peaks of memory. Every (benchmark, method, seed)
// trains in a child process of its own (this program run with --child), so the peak RSS that
// wait4() reports is that run's alone; it includes the data set, whose share the "data + model" row
// gives. Beside it, the training peak: the most bytes of tensor storage alive at once during
// training (core's allocator counts them, AllocatorStats::peak_bytes) above what was alive when
// training started (data and model), so a method's gradient copies, its state and the activations
// show, and the data set, the cache's free buffers and the code do not.
//
//   build/examples/benchmark_methods [--epochs 2] [--seeds 3] [--methods equal,pcgrad]
//                                    [--benchmarks census] [--max-gradient-mib 1] [--cache DIR] [--out docs]
//
// Adding a method is one line in kMethods below.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>

#include "census.h"
#include "ladon.h"

extern char** environ;

using namespace ladon;

namespace {

// ---------------------------------------------------------------------------------------------
// The methods. `cost` is the speed class: "loss" methods run one backward of a weighted
// sum (target: within 1.1x of equal weighting per epoch), "gradient" ones take T per-task
// gradients (target: within 1.8x).

struct MethodContext {
  mtl::MultiTaskModel& model;
  std::int64_t steps_per_epoch;
  std::uint64_t seed;
  std::size_t tasks() const { return model.num_tasks(); }
};

// The last shared weight: GradNorm balances the gradient norms of the last shared layer.
std::vector<Tensor> last_shared_layer(mtl::MultiTaskModel& model) {
  Tensor last;
  for (const auto& p : model.owned_parameters())
    if (p.task < 0 && p.parameter.dim() >= 2) last = p.parameter;
  return {last};
}

struct Method {
  const char* name;
  const char* cost;  // "loss" or "gradient"
  std::function<std::unique_ptr<mtl::Balancer>(const MethodContext&)> make;
};

template <typename B, typename... Args>
std::unique_ptr<mtl::Balancer> make(Args&&... args) {
  return std::make_unique<B>(std::forward<Args>(args)...);
}

const std::vector<Method> kMethods = {
    {"equal", "loss",
     [](const MethodContext& c) { return make<mtl::StaticWeighting>(mtl::StaticWeighting::equal(c.tasks())); }},
    {"uncertainty", "loss", [](const MethodContext& c) { return make<mtl::UncertaintyWeighting>(c.model.tasks()); }},
    {"dwa", "loss",
     [](const MethodContext& c) {
       return make<mtl::DynamicWeightAverage>(c.tasks(), mtl::DWAOptions{.steps_per_epoch = c.steps_per_epoch});
     }},
    {"rlw", "loss", [](const MethodContext& c) { return make<mtl::RandomLossWeighting>(c.tasks(), c.seed); }},
    {"gls", "loss", [](const MethodContext& c) { return make<mtl::GeometricLossStrategy>(c.tasks()); }},
    {"imtl_l", "loss", [](const MethodContext& c) { return make<mtl::IMTLL>(c.tasks()); }},
    {"stch", "loss",
     [](const MethodContext& c) {
       return make<mtl::STCH>(c.tasks(), mtl::STCHOptions{.steps_per_epoch = c.steps_per_epoch, .warmup_epochs = 1});
     }},
    {"gradnorm", "gradient",
     [](const MethodContext& c) { return make<mtl::GradNorm>(c.tasks(), last_shared_layer(c.model)); }},
    {"pcgrad", "gradient", [](const MethodContext& c) { return make<mtl::PCGrad>(c.tasks(), c.seed); }},
    {"mgda", "gradient", [](const MethodContext& c) { return make<mtl::MGDA>(c.tasks()); }},
    {"mgda_ub", "gradient",
     [](const MethodContext& c) { return make<mtl::MGDA>(c.tasks(), mtl::MGDAOptions{.upper_bound = true}); }},
    {"cagrad", "gradient", [](const MethodContext& c) { return make<mtl::CAGrad>(c.tasks(), 0.5); }},
    {"upgrad", "gradient", [](const MethodContext& c) { return make<mtl::UPGrad>(c.tasks()); }},
    {"dualproj", "gradient", [](const MethodContext& c) { return make<mtl::DualProj>(c.tasks()); }},
    {"imtl_g", "gradient", [](const MethodContext& c) { return make<mtl::IMTLG>(c.tasks()); }},
    {"aligned_mtl", "gradient", [](const MethodContext& c) { return make<mtl::AlignedMTL>(c.tasks()); }},
    {"nash_mtl", "gradient", [](const MethodContext& c) { return make<mtl::NashMTL>(c.tasks()); }},
    {"gradvac", "gradient",
     [](const MethodContext& c) { return make<mtl::GradVac>(c.tasks(), mtl::GradVacOptions{}, c.seed); }},
    {"graddrop", "gradient",
     [](const MethodContext& c) { return make<mtl::GradDrop>(c.tasks(), mtl::GradDropOptions{}, c.seed); }},
    {"db_mtl", "gradient", [](const MethodContext& c) { return make<mtl::DBMTL>(c.tasks()); }},
    {"famo", "loss", [](const MethodContext& c) { return make<mtl::FAMO>(c.tasks()); }},
    {"famo_next", "loss",
     [](const MethodContext& c) {
       return make<mtl::FAMO>(c.tasks(), mtl::FAMOOptions{.update = mtl::FAMOUpdate::next_batch});
     }},
};

const Method& find_method(const std::string& name) {
  std::string known;
  for (const Method& m : kMethods) {
    if (name == m.name) return m;
    known += (known.empty() ? "" : ", ") + std::string(m.name);
  }
  throw Error("--methods: unknown method '" + name + "'; known: " + known);
}

// ---------------------------------------------------------------------------------------------
// The census data for the Trainer, which takes a dense Dataset: every field of a TabularDataset
// packed as float columns (a categorical id as one exact float, a numeric field as its width),
// and a model that unpacks them into nn::Features in front of a FeatureModel.

data::Dataset pack(const data::TabularDataset& t) {
  std::int64_t columns = 0;
  for (const auto& f : t.fields) {
    LADON_CHECK(f.spec.kind != nn::FieldKind::multi_categorical, "census", "field '", f.spec.name,
                "' is multi-valued; the packed census input has single ids and numbers only");
    columns += f.spec.kind == nn::FieldKind::numeric ? f.spec.width : 1;
  }
  data::Dataset d;
  d.x = empty({t.rows, columns});
  float* x = d.x.data<float>();
  std::int64_t col = 0;
  for (const auto& f : t.fields) {
    if (f.spec.kind == nn::FieldKind::numeric) {
      const std::vector<float> v = f.values.contiguous().to_vector<float>();
      for (std::int64_t r = 0; r < t.rows; ++r)
        for (std::int64_t w = 0; w < f.spec.width; ++w)
          x[r * columns + col + w] = v[static_cast<std::size_t>(r * f.spec.width + w)];
      col += f.spec.width;
    } else {
      const std::vector<std::int64_t> ids = f.ids.contiguous().to_vector<std::int64_t>();
      for (std::int64_t r = 0; r < t.rows; ++r)
        x[r * columns + col] = static_cast<float>(ids[static_cast<std::size_t>(r)]);
      col += 1;
    }
  }
  for (std::size_t k = 0; k < t.labels.size(); ++k) {
    for (float m : t.masks[k].contiguous().to_vector<float>())
      LADON_CHECK(m == 1.0f, "census", "task '", t.task_names[k],
                  "' has unlabelled rows; the Trainer's losses take no masks");
    d.y.push_back(t.labels[k]);
  }
  d.task_names = t.task_names;
  return d;
}

class PackedFeatureModel : public mtl::MultiTaskModel {
 public:
  PackedFeatureModel(std::vector<nn::FieldSpec> fields, mtl::FeatureModel model)
      : MultiTaskModel(model.tasks()), fields_(std::move(fields)), model_(std::move(model)) {}
  std::vector<Tensor> forward(const Tensor& x) override {
    const Tensor dense = x.contiguous();
    const std::int64_t rows = dense.size(0), columns = dense.size(1);
    const float* p = dense.data<float>();
    nn::Features features;
    std::int64_t col = 0;
    for (const nn::FieldSpec& f : fields_) {
      nn::Feature feature;
      if (f.kind == nn::FieldKind::numeric) {
        feature.values = dense.narrow(1, col, f.width);
        col += f.width;
      } else {
        std::vector<std::int64_t> ids(static_cast<std::size_t>(rows));
        for (std::int64_t r = 0; r < rows; ++r)
          ids[static_cast<std::size_t>(r)] = static_cast<std::int64_t>(p[r * columns + col]);
        feature.ids = tensor(std::move(ids), {rows});
        col += 1;
      }
      features.set(f.name, std::move(feature));
    }
    std::vector<Tensor> out = model_.forward(features);
    set_representation(model_.representation());
    return out;
  }
  void visit(Visitor& v) override { v("model", model_); }

 private:
  std::vector<nn::FieldSpec> fields_;
  mtl::FeatureModel model_;
};

// ---------------------------------------------------------------------------------------------
// One training run (in the child process).

struct Settings {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string adult = "../shared/data/adult";
  std::string methods;
  std::int64_t seeds = 3;
  std::int64_t epochs = 0;       // 0: each benchmark's default
  std::int64_t train_limit = 0;  // 0: the whole training split
  int threads = 2;
  std::string benchmarks;       // comma-separated; empty: every benchmark
  double max_gradient_mib = 0;  // the gradient methods' Gramian-first budget; 0: no limit
  std::string cache;            // keep each run's result here, and reuse it
  std::string out;
};

constexpr std::int64_t kFashionEpochs = 2, kCensusEpochs = 8, kBatch = 256;
// census_mtl's bucket count as it selects it on validation (--select 1, candidates 16,100,400).
constexpr long kCensusBuckets = 400;

struct RunResult {
  std::vector<double> metrics;       // one per task
  double seconds_per_epoch = 0;      // wall time
  double cpu_seconds_per_epoch = 0;  // user + system time of every thread
  double train_peak_bytes = 0;       // tensor storage at the training peak, above data and model
};

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Benchmark {
  std::string name, metric;
  std::vector<std::string> tasks;
  std::int64_t epochs;
};

std::vector<double> column(const Tensor& t) {
  const std::vector<float> v = t.contiguous().to_vector<float>();
  return {v.begin(), v.end()};
}

// Trains `model` on `train` with the method on the Trainer; sets the median epoch times of `r`.
void fit(mtl::MultiTaskModel& model, const std::string& method, const data::Dataset& train, std::int64_t epochs,
         std::uint64_t seed, double max_gradient_mib, RunResult& r) {
  data::Loader loader(train, {.batch = kBatch, .shuffle = true, .seed = seed});
  const MethodContext context{model, loader.num_batches(), seed};
  std::unique_ptr<mtl::Balancer> balancer =
      model.num_tasks() == 1 ? make<mtl::StaticWeighting>(std::vector<double>{1.0}) : find_method(method).make(context);
  if (auto* g = dynamic_cast<mtl::GradientBalancer*>(balancer.get()); g != nullptr && max_gradient_mib > 0)
    g->set_max_gradient_bytes(static_cast<std::int64_t>(max_gradient_mib * 1024 * 1024));
  const std::size_t live_at_start = allocator_stats().live_bytes;
  reset_peak_bytes();
  nn::Adam optimizer(model.parameters(), {.lr = 1e-3});
  train::Trainer trainer(
      model, *balancer, optimizer, loader,
      {.epochs = epochs, .log_every = 0, .plots = false, .report = false, .progress = {.quiet = true}});
  using Clock = std::chrono::steady_clock;
  std::vector<double> seconds, cpu;
  Clock::time_point start = Clock::now();
  double cpu_start = cpu_seconds();
  trainer.on_step([&](train::Trainer& t) {
    if (t.batch() != loader.num_batches()) return;
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    cpu.push_back(cpu_seconds() - cpu_start);
  });
  trainer.on_epoch([&](train::Trainer&) { start = Clock::now(), cpu_start = cpu_seconds(); });
  trainer.fit();
  r.train_peak_bytes = static_cast<double>(allocator_stats().peak_bytes - live_at_start);
  std::sort(seconds.begin(), seconds.end());
  std::sort(cpu.begin(), cpu.end());
  r.seconds_per_epoch = seconds[seconds.size() / 2];
  r.cpu_seconds_per_epoch = cpu[cpu.size() / 2];
}

// `tasks`: indices of the benchmark's tasks this model learns (both, or one for a single-task run).
RunResult run_fashion(const Settings& s, const std::string& method, const std::vector<std::size_t>& tasks,
                      std::uint64_t seed, std::int64_t epochs, bool dry) {
  const data::FashionMnist mf = data::multi_fashion(s.data, {.seed = 1});  // one fixed data set for every run
  auto select = [&](const data::Dataset& d) {
    data::Dataset out{d.x, {}, {}};
    for (std::size_t t : tasks) out.y.push_back(d.y[t]), out.task_names.push_back(d.task_names[t]);
    return out;
  };
  const data::Dataset full = select(mf.train), test = select(mf.test);
  const data::Dataset train = s.train_limit > 0 ? data::slice(full, 0, std::min(s.train_limit, full.size())) : full;
  std::vector<mtl::TaskSpec> specs;
  for (const std::string& n : train.task_names) specs.push_back({n, 10, {}});
  Generator gen(seed * 7919 + 17);
  mtl::SharedBottom model = mtl::lenet({.side = 28, .tasks = specs}, gen);
  RunResult r;
  if (dry) return r;
  fit(model, method, train, epochs, seed, s.max_gradient_mib, r);
  model.eval();
  mtl::TaskMetrics metrics(model.tasks());
  NoGradGuard no_grad;
  for (const data::Batch& b : data::Loader(test, {.batch = 500})) metrics.add(model(b.x), b.y);
  for (const mtl::TaskResult& t : metrics.results()) r.metrics.push_back(t.value);
  return r;
}

RunResult run_census(const Settings& s, const std::string& method, const std::vector<std::size_t>& tasks,
                     std::uint64_t seed, std::int64_t epochs, bool dry) {
  const auto [train_rows, test_rows] = examples::read_adult(s.adult);
  data::FeatureSet fs = examples::census_features(kCensusBuckets);
  fs.fit(train_rows);
  auto select = [&](const data::Dataset& d) {
    data::Dataset out{d.x, {}, {}};
    for (std::size_t t : tasks) out.y.push_back(d.y[t]), out.task_names.push_back(d.task_names[t]);
    return out;
  };
  const data::Dataset full = select(pack(fs.transform(train_rows))), test = select(pack(fs.transform(test_rows)));
  const data::Dataset train = s.train_limit > 0 ? data::slice(full, 0, std::min(s.train_limit, full.size())) : full;
  std::vector<mtl::TaskSpec> specs;
  for (const std::string& n : train.task_names)
    specs.push_back({.name = n, .out = 1, .tower_hidden = {32}, .kind = mtl::TaskKind::binary});
  Generator gen(seed * 7919 + 17);
  nn::FeatureEmbedding front({.fields = fs.fields(), .dim = 8}, gen);
  const std::int64_t in = front.out_dim();
  PackedFeatureModel model(
      fs.fields(), mtl::FeatureModel(std::move(front),
                                     mtl::MMoE({.in = in, .experts = 8, .expert_hidden = {64}, .tasks = specs}, gen)));
  RunResult r;
  if (dry) return r;
  fit(model, method, train, epochs, seed, s.max_gradient_mib, r);
  model.eval();
  NoGradGuard no_grad;
  std::vector<std::vector<double>> scores(tasks.size()), labels(tasks.size());
  for (const data::Batch& b : data::Loader(test, {.batch = 4096})) {
    const auto out = model(b.x);
    for (std::size_t k = 0; k < tasks.size(); ++k) {
      for (double p : column(sigmoid(out[k]))) scores[k].push_back(p);
      for (double y : column(b.y[k])) labels[k].push_back(y);
    }
  }
  for (std::size_t k = 0; k < tasks.size(); ++k) r.metrics.push_back(mtl::auc(scores[k], labels[k]));
  return r;
}

const std::vector<Benchmark> kBenchmarks = {
    {"MultiFashion", "accuracy", {"top_left", "bottom_right"}, kFashionEpochs},
    {"census", "AUC", {"income", "never_married"}, kCensusEpochs},
};

// The child: one run, its result as one line "RESULT m1 m2 ... seconds cpu_seconds train_peak_bytes"
// on stdout.
// method "single:<t>" trains task t alone; "none" builds the data and model only.
int child(const Settings& s, const std::string& benchmark, const std::string& method, std::uint64_t seed) {
  set_num_threads(s.threads);
  const Benchmark* b = nullptr;
  for (const Benchmark& x : kBenchmarks)
    if (x.name == benchmark) b = &x;
  LADON_CHECK(b != nullptr, "--benchmark", "unknown benchmark '", benchmark, "'");
  std::vector<std::size_t> tasks = {0, 1};
  if (method.rfind("single:", 0) == 0) tasks = {std::stoul(method.substr(7))};
  const std::int64_t epochs = s.epochs > 0 ? s.epochs : b->epochs;
  const bool dry = method == "none";
  const RunResult r = benchmark == "census" ? run_census(s, method, tasks, seed, epochs, dry)
                                            : run_fashion(s, method, tasks, seed, epochs, dry);
  std::printf("RESULT");
  for (double m : r.metrics) std::printf(" %.17g", m);
  std::printf(" %.17g %.17g %.17g\n", r.seconds_per_epoch, r.cpu_seconds_per_epoch, r.train_peak_bytes);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The parent: runs every child, collects, prints and writes the table.

struct ChildOutput {
  bool ok = false;
  std::string error;
  std::vector<double> values;  // metrics..., seconds, cpu seconds, training peak bytes
  // Equal weighting's seconds and CPU seconds for the same seed in the invocation that ran this
  // one: speed ratios pair runs made back to back, also when a run comes from --cache.
  double ref_seconds = NAN, ref_cpu = NAN;
  double peak_mib = 0;
};

ChildOutput spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int fds[2];
  LADON_CHECK(pipe(fds) == 0, "spawn", "pipe() failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  ChildOutput out;
  if (rc != 0) {
    close(fds[0]);
    out.error = "posix_spawn failed";
    return out;
  }
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  out.peak_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux: KiB
  const auto at = text.find("RESULT");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || at == std::string::npos) {
    out.error = "the run failed (its error is above)";
    return out;
  }
  std::istringstream line(text.substr(at + 6));
  for (double v; line >> v;) out.values.push_back(v);
  out.ok = true;
  return out;
}

std::string fmt(const char* f, double a, double b = 0) {
  char buf[128];
  std::snprintf(buf, sizeof buf, f, a, b);
  return buf;
}

// With --cache DIR every run's output is kept in a file of its own, named by every setting that
// changes it, with the equal-weighting times of its own invocation, and a later invocation reads it
// instead of training again: a long table is made in parts (one --methods list per invocation,
// each short enough to run alone on a shared machine) and printed whole by a last invocation that
// finds every run done. Equal weighting itself is never reused (reuse = false): every invocation
// times it afresh as the reference for the runs it trains.
ChildOutput spawn_cached(const std::string& cache, const std::vector<std::string>& args, bool reuse, double ref_seconds,
                         double ref_cpu) {
  constexpr const char* kFormat = "benchmark_methods-run-2";
  std::string name;
  for (std::size_t i = 2; i + 1 < args.size(); i += 2) {  // "--flag value" pairs after "benchmark_methods --child"
    if (args[i] == "--data" || args[i] == "--adult") continue;
    name += (name.empty() ? "" : "_") + args[i + 1];
  }
  std::replace(name.begin(), name.end(), ':', '-');
  const std::string path = cache + "/" + name + ".txt";
  if (!cache.empty() && reuse) {
    std::ifstream in(path);
    std::string format;
    ChildOutput out;
    if (in >> format && format == kFormat && in >> out.peak_mib >> out.ref_seconds >> out.ref_cpu) {
      for (double v; in >> v;) out.values.push_back(v);
      out.ok = !out.values.empty();
      if (out.ok) return out;
    }
  }
  ChildOutput out = spawn(args);
  out.ref_seconds = ref_seconds, out.ref_cpu = ref_cpu;
  if (out.ok && !cache.empty() && reuse) {
    std::filesystem::create_directories(cache);
    std::ofstream file(path + ".tmp");
    file << kFormat << ' ' << fmt("%.17g", out.peak_mib) << ' ' << fmt("%.17g", ref_seconds) << ' '
         << fmt("%.17g", ref_cpu);
    for (double v : out.values) file << ' ' << fmt("%.17g", v);
    file << '\n';
    file.close();
    std::filesystem::rename(path + ".tmp", path);  // a run stopped mid-write leaves no half file
  }
  return out;
}

struct Stats {
  double mean = NAN, std = NAN;
};
Stats stats(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  s.mean = 0;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  double q = 0;
  for (double x : v) q += (x - s.mean) * (x - s.mean);
  s.std = v.size() > 1 ? std::sqrt(q / static_cast<double>(v.size() - 1)) : 0.0;
  return s;
}
double median(std::vector<double> v) {
  std::erase_if(v, [](double x) { return std::isnan(x); });  // a seed whose equal run failed
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

struct Row {
  std::string benchmark, method, cost;
  std::vector<std::vector<double>> metrics;  // [seed][task]
  std::vector<double> seconds, cpu, peaks, train_peaks;  // peaks: RSS MiB; train_peaks: tensor MiB
  std::vector<double> ratios, cpu_ratios;                // per seed, to equal weighting of that seed
  std::vector<std::string> errors;
};

int parent(const Settings& s, const std::string& self_args) {
  std::vector<std::string> methods;
  if (s.methods.empty())
    for (const Method& m : kMethods) methods.push_back(m.name);
  else {
    std::stringstream list(s.methods);
    for (std::string m; std::getline(list, m, ',');) methods.push_back(find_method(m).name);
  }
  if (std::find(methods.begin(), methods.end(), "equal") == methods.end()) methods.insert(methods.begin(), "equal");

  const auto child_args = [&](const std::string& benchmark, const std::string& method, std::int64_t seed) {
    std::vector<std::string> a = {"benchmark_methods",
                                  "--child",
                                  "--benchmark",
                                  benchmark,
                                  "--method",
                                  method,
                                  "--seed",
                                  std::to_string(seed),
                                  "--data",
                                  s.data,
                                  "--adult",
                                  s.adult,
                                  "--epochs",
                                  std::to_string(s.epochs),
                                  "--train-limit",
                                  std::to_string(s.train_limit),
                                  "--threads",
                                  std::to_string(s.threads),
                                  "--max-gradient-mib",
                                  fmt("%.17g", s.max_gradient_mib)};
    return a;
  };
  std::vector<Row> rows;
  std::map<std::string, double> baseline_mib;
  std::vector<std::string> notes;
  std::vector<std::string> chosen;
  std::stringstream benchmark_list(s.benchmarks);
  for (std::string name; std::getline(benchmark_list, name, ',');) {
    bool known = false;
    for (const Benchmark& b : kBenchmarks) known = known || b.name == name;
    LADON_CHECK(known, "--benchmarks", "unknown benchmark '", name, "'; known: MultiFashion, census");
    chosen.push_back(name);
  }
  const auto wanted = [&](const Benchmark& b) {
    return chosen.empty() || std::find(chosen.begin(), chosen.end(), b.name) != chosen.end();
  };
  for (const Benchmark& b : kBenchmarks) {
    if (!wanted(b)) continue;
    if (b.name == "census") {
      std::error_code ec;
      if (!std::filesystem::exists(s.adult + "/adult.data", ec)) {
        const std::string note = "census skipped: no " + s.adult + "/adult.data (pass --adult DIR)";
        std::fprintf(stderr, "%s\n", note.c_str());
        notes.push_back(note);
        continue;
      }
    }
    const ChildOutput dry = spawn_cached(s.cache, child_args(b.name, "none", 1), true, NAN, NAN);
    if (!dry.ok) throw Error(b.name + ": loading the data failed (its error is above)");
    baseline_mib[b.name] = dry.peak_mib;
    std::vector<std::string> runs;
    for (std::size_t t = 0; t < b.tasks.size(); ++t) runs.push_back("single:" + std::to_string(t));
    for (const std::string& m : methods) runs.push_back(m);
    const std::size_t first = rows.size();
    for (const std::string& m : runs)
      rows.push_back(
          {b.name, m, m.rfind("single:", 0) == 0 ? "-" : find_method(m).cost, {}, {}, {}, {}, {}, {}, {}, {}});
    const std::size_t equal_row =
        first + b.tasks.size() +
        static_cast<std::size_t>(std::find(methods.begin(), methods.end(), "equal") - methods.begin());
    std::vector<std::size_t> order = {equal_row};  // the reference first, then the rest
    for (std::size_t k = first; k < rows.size(); ++k)
      if (k != equal_row) order.push_back(k);
    // Seed by seed over every method, so a slow spell of a shared machine spreads over the methods.
    for (std::int64_t seed = 1; seed <= s.seeds; ++seed) {
      double ref_seconds = NAN, ref_cpu = NAN;
      for (std::size_t k : order) {
        Row& row = rows[k];
        std::fprintf(stderr, "%s %s seed %lld ...", b.name.c_str(), row.method.c_str(), static_cast<long long>(seed));
        const bool is_equal = k == equal_row;
        ChildOutput o = spawn_cached(s.cache, child_args(b.name, row.method, seed), !is_equal, ref_seconds, ref_cpu);
        if (!o.ok) {
          row.errors.push_back(o.error);
          std::fprintf(stderr, " failed\n");
          continue;
        }
        const std::size_t n = o.values.size();
        row.train_peaks.push_back(o.values[n - 1] / (1024.0 * 1024.0));
        row.cpu.push_back(o.values[n - 2]);
        row.seconds.push_back(o.values[n - 3]);
        row.metrics.emplace_back(o.values.begin(), o.values.end() - 3);
        row.peaks.push_back(o.peak_mib);
        if (is_equal) ref_seconds = o.ref_seconds = row.seconds.back(), ref_cpu = o.ref_cpu = row.cpu.back();
        row.ratios.push_back(row.seconds.back() / o.ref_seconds);
        row.cpu_ratios.push_back(row.cpu.back() / o.ref_cpu);
        std::fprintf(stderr, " %.2f s/epoch (%.2f CPU s), %.0f MiB RSS, %.2f MiB training peak\n", row.seconds.back(),
                     row.cpu.back(), o.peak_mib, row.train_peaks.back());
      }
    }
  }

  // The table.
  const std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::ostringstream md, csv;
  md << "Benchmark of every balancer, " << date << ", " << cpu_name() << ", " << s.threads << " threads; " << s.seeds
     << " seeds; " << self_args << ".\n\n";
  for (const std::string& n : notes) md << n << ".\n\n";
  if (!s.cache.empty())
    md << "Runs kept in " << s.cache << " and reused: the table was made in parts (one --methods list at a time); "
       << "each run's speed ratio is to the equal-weighting run timed beside it in its own part.\n\n";
  md << "| benchmark | method | cost | task 1 | task 2 | delta-m % | s/epoch | vs equal | CPU vs equal | peak RSS MiB "
        "| training peak MiB |\n";
  md << "|---|---|---|---|---|---|---|---|---|---|---|\n";
  csv << "benchmark,method,cost,seeds_ok,task1_mean,task1_std,task2_mean,task2_std,delta_m_mean,delta_m_std,"
         "seconds_per_epoch,ratio_to_equal,cpu_seconds_per_epoch,cpu_ratio_to_equal,peak_rss_mib,train_peak_mib\n";
  for (const Benchmark& b : kBenchmarks) {
    // Single-task baselines: task t's metric from its own single-task runs.
    std::vector<double> base(b.tasks.size(), NAN);
    for (const Row& r : rows) {
      if (r.benchmark != b.name) continue;
      if (r.method.rfind("single:", 0) == 0) {
        const std::size_t t = std::stoul(r.method.substr(7));
        std::vector<double> v;
        for (const auto& m : r.metrics) v.push_back(m[0]);
        base[t] = stats(v).mean;
      }
    }
    for (const Row& r : rows) {
      if (r.benchmark != b.name) continue;
      const bool single = r.method.rfind("single:", 0) == 0;
      std::vector<Stats> task(b.tasks.size());
      for (std::size_t t = 0; t < b.tasks.size(); ++t) {
        std::vector<double> v;
        if (single) {
          if (std::stoul(r.method.substr(7)) == t)
            for (const auto& m : r.metrics) v.push_back(m[0]);
        } else {
          for (const auto& m : r.metrics) v.push_back(m[t]);
        }
        task[t] = stats(v);
      }
      std::vector<double> deltas;
      if (!single)
        for (const auto& m : r.metrics) {
          double d = 0;
          for (std::size_t t = 0; t < b.tasks.size(); ++t) d += (m[t] - base[t]) / base[t];
          deltas.push_back(100.0 * d / static_cast<double>(b.tasks.size()));
        }
      const Stats dm = stats(deltas);
      const double sec = median(r.seconds), cpu = median(r.cpu), peak = median(r.peaks),
                   train_peak = median(r.train_peaks), ratio = median(r.ratios), cpu_ratio = median(r.cpu_ratios);
      const std::string name = single ? "single-task " + b.tasks[std::stoul(r.method.substr(7))] : r.method;
      md << "| " << b.name << " (" << b.metric << ") | " << name << " | " << r.cost;
      for (const Stats& t : task)
        md << " | " << (std::isnan(t.mean) ? std::string("") : fmt("%.4f ± %.4f", t.mean, t.std));
      md << " | " << (single ? std::string("0 (baseline)") : fmt("%+.2f ± %.2f", dm.mean, dm.std)) << " | "
         << fmt("%.2f", sec) << " | " << fmt("%.2fx", ratio) << " | " << fmt("%.2fx", cpu_ratio) << " | "
         << fmt("%.0f", peak) << " | " << fmt("%.2f", train_peak);
      if (!r.errors.empty()) md << " (" << r.errors.size() << " of " << s.seeds << " runs failed)";
      md << " |\n";
      csv << b.name << ',' << name << ',' << r.cost << ',' << r.metrics.size();
      for (const Stats& t : task) csv << ',' << fmt("%.6f", t.mean) << ',' << fmt("%.6f", t.std);
      csv << ',' << fmt("%.4f", dm.mean) << ',' << fmt("%.4f", dm.std) << ',' << fmt("%.4f", sec) << ','
          << fmt("%.4f", ratio) << ',' << fmt("%.4f", cpu) << ',' << fmt("%.4f", cpu_ratio) << ',' << fmt("%.1f", peak)
          << ',' << fmt("%.4f", train_peak) << '\n';
    }
  }
  md << "\nTasks: MultiFashion task 1 = top_left, task 2 = bottom_right (test accuracy); census task 1 = income, "
        "task 2 = never_married (test AUC). Mean ± sample std over the seeds. delta-m = 100/T sum_t (M_t - B_t) / B_t "
        "per seed, B_t the single-task mean (higher is better). s/epoch: the median over epochs and seeds of the "
        "training steps' wall time (no evaluation); vs equal: the median over the seeds of its ratio to equal "
        "weighting's, timed for the same seed in the same invocation; CPU vs equal: the same ratio for the process's "
        "user + system time (less moved by other work on a shared machine). Peak RSS: "
        "ru_maxrss of the run's own process (wait4); loading the "
        "data and building the model alone peaks at";
  for (const auto& [name, mib] : baseline_mib) md << " " << fmt("%.0f", mib) << " MiB (" << name << ")";
  md << ". Training peak: the most bytes of tensor storage alive at once during training (core's allocator, "
        "AllocatorStats::peak_bytes) above those alive when training started (data set and model), median over "
        "the seeds: activations, gradients, optimizer and method state, and the gradient methods' T task-gradient "
        "rows";
  if (s.max_gradient_mib > 0)
    md << " (here Gramian-first, at most " << fmt("%g", s.max_gradient_mib) << " MiB of rows at once)";
  md << ".\n";
  std::printf("%s", md.str().c_str());
  if (!s.out.empty()) {
    std::filesystem::create_directories(s.out);
    std::ofstream(s.out + "/benchmark_methods.md") << md.str();
    std::ofstream(s.out + "/benchmark_methods.csv") << csv.str();
    std::printf("wrote %s/benchmark_methods.md and .csv\n", s.out.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"benchmark_methods: every balancer on MultiFashion (LeNet) and census (MMoE), one table"};
  app.option_defaults()->always_capture_default();
  Settings s;
  bool is_child = false;
  std::string benchmark, method;
  std::int64_t seed = 1;
  app.add_option("--data", s.data, "folder with the Fashion-MNIST IDX files");
  app.add_option("--adult", s.adult, "folder with UCI Adult's adult.data and adult.test (census is skipped without)");
  app.add_option("--methods", s.methods,
                 "comma-separated methods (default: all); equal is always run, as the speed reference");
  app.add_option("--seeds", s.seeds, "seeds per method")->check(CLI::PositiveNumber);
  app.add_option("--epochs", s.epochs,
                 "epochs per run (0: " + std::to_string(kFashionEpochs) + " on MultiFashion, " +
                     std::to_string(kCensusEpochs) + " on census)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--train-limit", s.train_limit, "train on the first N training rows only (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", s.threads, "worker threads per run (0: all cores)");
  app.add_option("--benchmarks", s.benchmarks, "comma-separated benchmarks: MultiFashion, census (default: both)");
  app.add_option("--max-gradient-mib", s.max_gradient_mib,
                 "the gradient methods' Gramian-first budget for their T task-gradient rows (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--cache", s.cache,
                 "keep each run's result in this folder and reuse it: make a long table in parts (--methods), "
                 "then print it whole");
  app.add_option("--out", s.out, "also write OUT/benchmark_methods.md and OUT/benchmark_methods.csv");
  app.add_flag("--child", is_child, "(internal) train one run and print its result");
  app.add_option("--benchmark", benchmark, "(internal, with --child)");
  app.add_option("--method", method, "(internal, with --child)");
  app.add_option("--seed", seed, "(internal, with --child)");
  CLI11_PARSE(app, argc, argv);
  if (is_child) return child(s, benchmark, method, static_cast<std::uint64_t>(seed));
  std::string self_args = "epochs " +
                          (s.epochs > 0 ? std::to_string(s.epochs)
                                        : std::to_string(kFashionEpochs) + " (MultiFashion) / " +
                                              std::to_string(kCensusEpochs) + " (census)") +
                          ", batch " + std::to_string(kBatch) + ", Adam lr 1e-3, training rows: " +
                          (s.train_limit > 0 ? "the first " + std::to_string(s.train_limit) : std::string("all"));
  return parent(s, self_args);
} catch (const std::exception& e) {
  std::fprintf(stderr, "benchmark_methods: %s\n", e.what());
  return 1;
}
