// End-to-end training-step benchmark: forward, backward and Adam step of the models, timed
// after warm-up. Prints exactly one result line (and a memory line):
//
//   mlp batch 256 threads 2 ms/step 1.234 samples/s 207455
//   mlp batch 256 threads 2 peak_rss_mb 41.2 mean_ms 1.301
//
//   bench/train_step --model mlp|mmoe|mmoe_small|cnn --batch B --threads N [--steps S] [--repeats R]
//                    [--warmup W] [--phases 1] [--isa baseline|avx2|avx512|avx512_bf16] [--balancer NAME]
//                    [--bf16 1]
//
// After warm-up, R repeats of S steps (S chosen so a repeat takes about 50 ms, unless --steps) are
// timed step by step; ms/step is the median of those R*S step times, mean_ms their mean (which
// includes preemption by other processes). Data is random, drawn once from a fixed seed; the same
// batch is used every step (we time compute, not loading). peak_rss_mb is getrusage's ru_maxrss.
// bench/train_step_torch.cpp is the same program written with libtorch; scripts/bench compares them.
// --phases 1 also prints the median split of a step into forward / backward / optimizer.
// --isa runs every kernel's variant for that instruction set (kernels/isa.h), to measure what the
// SIMD variants buy; the default is the best the CPU supports. --balancer (mmoe models) combines the
// three task losses with a balancer (equal, uncertainty, dwa, random, gradnorm, gls, imtl_l, stch,
// famo, famo_next, pcgrad, mgda, mgda_ub, cagrad, upgrad, dualproj, imtl_g, aligned_mtl, nash_mtl, gradvac,
// graddrop, db_mtl), so a method's step can be compared with equal weighting's. FAMO's step
// includes its extra forward for the losses after the optimizer step (in the optimizer phase).
// --bf16 1 runs every step under AutocastGuard(Precision::bf16) (core/autocast.h): the GEMMs of
// forward and backward in bf16 with float32 sums, everything else float32; the memory line then
// ends in "precision bf16".
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/isa.h"
#include "ladon.h"

using namespace ladon;

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// One training step split into its three phases, so --phases can time them separately.
struct Workload {
  std::function<Tensor()> forward_loss;
  std::function<void(Tensor&)> backward;
  std::function<void()> optimizer_step;
};

// mlp: 784-512-256-10 ReLU, softmax cross-entropy, Adam.
struct MlpBench {
  nn::Sequential net;
  std::unique_ptr<nn::Adam> opt;
  Tensor x, y;

  explicit MlpBench(std::int64_t batch) {
    Generator gen(1);
    net.push_back(nn::Linear(784, 512, {}, gen));
    net.push_back(nn::ReLU());
    net.push_back(nn::Linear(512, 256, {}, gen));
    net.push_back(nn::ReLU());
    net.push_back(nn::Linear(256, 10, {}, gen));
    opt = std::make_unique<nn::Adam>(net.parameters(), nn::AdamOptions{.lr = 1e-3});
    Generator data(42);
    x = randn({batch, 784}, data);
    std::vector<std::int64_t> labels(static_cast<std::size_t>(batch));
    for (std::int64_t i = 0; i < batch; ++i) labels[static_cast<std::size_t>(i)] = (i * 7919 + 13) % 10;
    y = tensor(labels, {batch});
  }
  Workload workload() {
    return {[this] { return nn::cross_entropy(net(x), y); },
            [this](Tensor& loss) {
              opt->zero_grad();
              loss.backward();
            },
            [this] { opt->step(); }};
  }
};

// The --balancer of the mmoe models: every method through the one Balancer interface.
std::unique_ptr<mtl::Balancer> make_balancer(const std::string& name, mtl::MultiTaskModel& model) {
  const std::size_t tasks = model.num_tasks();
  if (name == "equal") return std::make_unique<mtl::StaticWeighting>(mtl::StaticWeighting::equal(tasks));
  if (name == "uncertainty") return std::make_unique<mtl::UncertaintyWeighting>(model.tasks());
  if (name == "dwa") return std::make_unique<mtl::DynamicWeightAverage>(tasks, mtl::DWAOptions{.steps_per_epoch = 100});
  if (name == "random") return std::make_unique<mtl::RandomLossWeighting>(tasks, 1);
  if (name == "gradnorm") return std::make_unique<mtl::GradNorm>(tasks, model.shared_parameters());
  if (name == "pcgrad") return std::make_unique<mtl::PCGrad>(tasks, 1);
  if (name == "mgda") return std::make_unique<mtl::MGDA>(tasks);
  if (name == "mgda_ub") return std::make_unique<mtl::MGDA>(tasks, mtl::MGDAOptions{.upper_bound = true});
  if (name == "cagrad") return std::make_unique<mtl::CAGrad>(tasks);
  if (name == "upgrad") return std::make_unique<mtl::UPGrad>(tasks);
  if (name == "dualproj") return std::make_unique<mtl::DualProj>(tasks);
  if (name == "imtl_g") return std::make_unique<mtl::IMTLG>(tasks);
  if (name == "aligned_mtl") return std::make_unique<mtl::AlignedMTL>(tasks);
  if (name == "gls") return std::make_unique<mtl::GeometricLossStrategy>(tasks);
  if (name == "imtl_l") return std::make_unique<mtl::IMTLL>(tasks);
  if (name == "stch") return std::make_unique<mtl::STCH>(tasks, mtl::STCHOptions{.steps_per_epoch = 100});
  if (name == "nash_mtl") return std::make_unique<mtl::NashMTL>(tasks);
  if (name == "gradvac") return std::make_unique<mtl::GradVac>(tasks, mtl::GradVacOptions{}, 1);
  if (name == "graddrop") return std::make_unique<mtl::GradDrop>(tasks, mtl::GradDropOptions{}, 1);
  if (name == "db_mtl") return std::make_unique<mtl::DBMTL>(tasks);
  if (name == "famo") return std::make_unique<mtl::FAMO>(tasks);
  if (name == "famo_next")
    return std::make_unique<mtl::FAMO>(tasks, mtl::FAMOOptions{.update = mtl::FAMOUpdate::next_batch});
  throw Error("unknown balancer '" + name + "'");
}

// mmoe / mmoe_small: MMoE with softmax gates on the raw input, MSE per task (T = 3), combined by
// the balancer (equal weights unless --balancer); Adam.
struct MmoeBench {
  std::unique_ptr<mtl::MMoE> model;
  std::unique_ptr<nn::Adam> opt;
  std::unique_ptr<mtl::Balancer> balancer;
  Tensor x;
  std::vector<Tensor> targets, losses;

  MmoeBench(std::int64_t batch, std::int64_t in, std::int64_t expert_hidden, std::int64_t tower_hidden,
            const std::string& balancer_name) {
    Generator gen(1);
    std::vector<mtl::TaskSpec> tasks;
    for (const char* name : {"t0", "t1", "t2"}) tasks.push_back({name, 1, {tower_hidden}, mtl::TaskKind::regression});
    model = std::make_unique<mtl::MMoE>(
        mtl::MoEOptions{.in = in, .experts = 8, .expert_hidden = {expert_hidden}, .tasks = tasks}, gen);
    opt = std::make_unique<nn::Adam>(model->parameters(), nn::AdamOptions{.lr = 1e-3});
    balancer = make_balancer(balancer_name, *model);
    Generator data(42);
    x = randn({batch, in}, data);
    for (int t = 0; t < 3; ++t) targets.push_back(randn({batch, 1}, data));
  }
  Workload workload() {
    return {[this] {
              const std::vector<Tensor> out = (*model)(x);
              losses.clear();
              for (std::size_t t = 0; t < out.size(); ++t) losses.push_back(nn::mse_loss(out[t], targets[t]));
              return losses[0];
            },
            [this](Tensor&) {
              opt->zero_grad();
              balancer->backward(losses, *model);
            },
            [this] {
              opt->step();
              if (!balancer->needs_losses_after_step()) return;
              NoGradGuard no_grad;
              const std::vector<Tensor> out = (*model)(x);
              std::vector<Tensor> after;
              for (std::size_t t = 0; t < out.size(); ++t) after.push_back(nn::mse_loss(out[t], targets[t]));
              balancer->after_step(after);
            }};
  }
};

// cnn: the issue-15 CNN on 28x28 single-channel images: conv 1->32 3x3 (padding 1) + ReLU, 2x2 max
// pool, conv 32->64 3x3 + ReLU, pool, Linear(64*7*7, 128) + ReLU, two heads (10 and 4 classes),
// cross-entropy per head summed; Adam.
struct CnnBench {
  nn::Sequential trunk;
  nn::Linear head_a, head_b;
  std::unique_ptr<nn::Adam> opt;
  Tensor x, ya, yb;

  static nn::Sequential make_trunk(Generator& gen) {
    return nn::Sequential(nn::Conv2d(1, 32, 3, {.padding = 1}, gen), nn::ReLU(), nn::MaxPool2d(2),
                          nn::Conv2d(32, 64, 3, {.padding = 1}, gen), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(),
                          nn::Linear(64 * 7 * 7, 128, {}, gen), nn::ReLU());
  }
  CnnBench(std::int64_t batch, Generator gen = Generator(1))
      : trunk(make_trunk(gen)), head_a(128, 10, {}, gen), head_b(128, 4, {}, gen) {
    std::vector<Tensor> params = trunk.parameters();
    for (const Tensor& p : head_a.parameters()) params.push_back(p);
    for (const Tensor& p : head_b.parameters()) params.push_back(p);
    opt = std::make_unique<nn::Adam>(params, nn::AdamOptions{.lr = 1e-3});
    Generator data(42);
    x = randn({batch, 1, 28, 28}, data);
    std::vector<std::int64_t> a(static_cast<std::size_t>(batch)), b(a.size());
    for (std::int64_t i = 0; i < batch; ++i) {
      a[static_cast<std::size_t>(i)] = (i * 7919 + 13) % 10;
      b[static_cast<std::size_t>(i)] = (i * 104729 + 7) % 4;
    }
    ya = tensor(a, {batch});
    yb = tensor(b, {batch});
  }
  Workload workload() {
    return {[this] {
              const Tensor h = trunk(x);
              return nn::cross_entropy(head_a(h), ya) + nn::cross_entropy(head_b(h), yb);
            },
            [this](Tensor& loss) {
              opt->zero_grad();
              loss.backward();
            },
            [this] { opt->step(); }};
  }
};

struct Args {
  std::string model = "mlp";
  long batch = 256, threads = 1, steps = 0, repeats = 7, warmup = 0;
  bool phases = false;
  bool bf16 = false;
  std::string isa;  // empty: the best the CPU supports
  std::string balancer = "equal";
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "%s\nusage: train_step --model mlp|mmoe|mmoe_small|cnn --batch B --threads N [--steps S] "
               "[--repeats R] [--warmup W] [--phases 1] [--isa baseline|avx2|avx512|avx512_bf16] [--balancer NAME] "
               "[--bf16 1]\n",
               msg);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + k).c_str());
    const char* v = argv[++i];
    if (k == "--model") a.model = v;
    else if (k == "--batch") a.batch = std::atol(v);
    else if (k == "--threads") a.threads = std::atol(v);
    else if (k == "--steps") a.steps = std::atol(v);
    else if (k == "--repeats") a.repeats = std::atol(v);
    else if (k == "--warmup") a.warmup = std::atol(v);
    else if (k == "--phases") a.phases = std::atol(v) != 0;
    else if (k == "--isa") a.isa = v;
    else if (k == "--bf16") a.bf16 = std::atol(v) != 0;
    else if (k == "--balancer") a.balancer = v;
    else usage(("unknown flag " + k).c_str());
  }
  if (a.batch <= 0 || a.threads <= 0 || a.repeats <= 0) usage("batch, threads and repeats must be positive");
  return a;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  set_num_threads(static_cast<int>(args.threads));
  std::optional<kernels::IsaOverride> isa;
  if (!args.isa.empty()) {
    const kernels::Isa sets[] = {kernels::Isa::baseline, kernels::Isa::avx2, kernels::Isa::avx512,
                                 kernels::Isa::avx512_bf16};
    const auto* chosen = std::find_if(std::begin(sets), std::end(sets),
                                      [&](kernels::Isa s) { return args.isa == kernels::isa_name(s); });
    if (chosen == std::end(sets)) usage(("unknown instruction set " + args.isa).c_str());
    isa.emplace(*chosen);  // throws if the CPU lacks it
  }
  const AutocastGuard precision(args.bf16 ? Precision::bf16 : Precision::fp32);

  std::unique_ptr<MlpBench> mlp;
  std::unique_ptr<MmoeBench> mmoe;
  std::unique_ptr<CnnBench> cnn;
  Workload w;
  if (args.model == "mlp") {
    mlp = std::make_unique<MlpBench>(args.batch);
    w = mlp->workload();
  } else if (args.model == "mmoe") {
    mmoe = std::make_unique<MmoeBench>(args.batch, 512, 256, 64, args.balancer);
    w = mmoe->workload();
  } else if (args.model == "mmoe_small") {
    mmoe = std::make_unique<MmoeBench>(args.batch, 64, 32, 16, args.balancer);
    w = mmoe->workload();
  } else if (args.model == "cnn") {
    cnn = std::make_unique<CnnBench>(args.batch);
    w = cnn->workload();
  } else {
    usage(("unknown model " + args.model).c_str());
  }
  auto step = [&] {
    Tensor loss = w.forward_loss();
    w.backward(loss);
    w.optimizer_step();
  };

  // Calibrate: one step decides how many steps make a repeat of about 50 ms (unless --steps).
  step();
  auto t0 = Clock::now();
  step();
  const double first = std::max(ms_since(t0), 1e-3);
  const long steps = args.steps > 0 ? args.steps : std::clamp(static_cast<long>(50.0 / first), 3L, 2000L);
  // Warm up for --warmup steps, or by default for half a repeat's steps and at least 300 ms: the
  // first 50 ms or so of a 2-thread run are slow (Zen 5, mlp b256 bf16: 1.53 ms a step after 10
  // warm-up steps, 0.84 after 60, 0.83 after 120), which the median of short repeats took in.
  const long warmup = args.warmup > 0 ? args.warmup : std::max(3L, steps / 2);
  const auto warm_start = Clock::now();
  for (long i = 0; i < warmup || (args.warmup <= 0 && ms_since(warm_start) < 300.0); ++i) step();

  // Each step is timed alone and the median taken: on a shared 2-core machine the scheduler
  // preempts us for whole time slices (p99 of a 0.16 ms step measured at 8 ms), which a mean
  // over consecutive steps would fold in. The mean is printed too.
  std::vector<double> per_step;
  double total = 0;
  for (long r = 0; r < args.repeats; ++r)
    for (long i = 0; i < steps; ++i) {
      t0 = Clock::now();
      step();
      per_step.push_back(ms_since(t0));
      total += per_step.back();
    }
  const double ms = median(per_step);
  const std::string label = args.balancer == "equal" ? args.model : args.model + "/" + args.balancer;
  const double mean_ms = total / static_cast<double>(per_step.size());
  std::printf("%s batch %ld threads %ld ms/step %.4f samples/s %.0f\n", label.c_str(), args.batch, args.threads,
              ms, static_cast<double>(args.batch) * 1000.0 / ms);
  std::printf("%s batch %ld threads %ld peak_rss_mb %.1f mean_ms %.4f%s\n", label.c_str(), args.batch, args.threads,
              peak_rss_mb(), mean_ms, args.bf16 ? " precision bf16" : "");

  if (args.phases) {
    std::vector<double> f, b, o;
    for (long i = 0; i < steps * args.repeats; ++i) {
      t0 = Clock::now();
      Tensor loss = w.forward_loss();
      f.push_back(ms_since(t0));
      t0 = Clock::now();
      w.backward(loss);
      b.push_back(ms_since(t0));
      t0 = Clock::now();
      w.optimizer_step();
      o.push_back(ms_since(t0));
    }
    std::printf("%s batch %ld threads %ld phases_ms forward %.4f backward %.4f adam %.4f\n", label.c_str(),
                args.batch, args.threads, median(f), median(b), median(o));
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "train_step: %s\n", e.what());
  return 1;
}
