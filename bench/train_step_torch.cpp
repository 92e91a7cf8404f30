// The models of bench/train_step.cpp written with libtorch's C++ API, timed the same way, printing
// the same lines with a "torch" field:
//
//   torch mlp batch 256 threads 2 ms/step 1.234 samples/s 207455
//   torch mlp batch 256 threads 2 peak_rss_mb 160.3 mean_ms 1.301
//
// Timing as in train_step.cpp: the median of individually timed steps after warm-up.
// libtorch gets its best settings on this machine: run it with OPENBLAS_CORETYPE=SkylakeX and
// OPENBLAS_NUM_THREADS=1 in the environment (scripts/bench does; this program warns otherwise), and
// torch::set_num_threads(--threads). The MMoE is written the efficient way ladon computes it: all
// experts' first layer as one Linear(in, experts*hidden), all gates as one Linear(in, tasks*experts),
// and the mixture as one bmm. --experts loop writes the experts as separate Linear layers instead,
// the way most user code does.
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

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
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

struct Mlp : torch::nn::Module {
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
  Mlp() {
    fc1 = register_module("fc1", torch::nn::Linear(784, 512));
    fc2 = register_module("fc2", torch::nn::Linear(512, 256));
    fc3 = register_module("fc3", torch::nn::Linear(256, 10));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return fc3(torch::relu(fc2(torch::relu(fc1(x)))));
  }
};

struct Mmoe : torch::nn::Module {
  std::int64_t experts, hidden, tasks;
  bool fused;
  torch::nn::Linear expert_bank{nullptr}, gate{nullptr};
  std::vector<torch::nn::Linear> expert_list;
  std::vector<torch::nn::Sequential> towers;

  Mmoe(std::int64_t in, std::int64_t experts_, std::int64_t hidden_, std::int64_t tower_hidden, std::int64_t tasks_,
       bool fused_)
      : experts(experts_), hidden(hidden_), tasks(tasks_), fused(fused_) {
    if (fused) {
      expert_bank = register_module("experts", torch::nn::Linear(in, experts * hidden));
    } else {
      for (std::int64_t e = 0; e < experts; ++e)
        expert_list.push_back(register_module("expert" + std::to_string(e), torch::nn::Linear(in, hidden)));
    }
    gate = register_module("gate", torch::nn::Linear(in, tasks * experts));
    for (std::int64_t t = 0; t < tasks; ++t)
      towers.push_back(register_module(
          "tower" + std::to_string(t),
          torch::nn::Sequential(torch::nn::Linear(hidden, tower_hidden), torch::nn::ReLU(),
                                torch::nn::Linear(tower_hidden, 1))));
  }
  std::vector<torch::Tensor> forward(const torch::Tensor& x) {
    const std::int64_t batch = x.size(0);
    torch::Tensor h;  // [B, E, H]
    if (fused) {
      h = torch::relu(expert_bank(x)).view({batch, experts, hidden});
    } else {
      std::vector<torch::Tensor> outs;
      for (auto& e : expert_list) outs.push_back(torch::relu(e(x)));
      h = torch::stack(outs, 1);
    }
    const torch::Tensor g = torch::softmax(gate(x).view({batch, tasks, experts}), -1);  // [B, T, E]
    const torch::Tensor mixed = torch::bmm(g, h);                                      // [B, T, H]
    std::vector<torch::Tensor> out;
    for (std::int64_t t = 0; t < tasks; ++t) out.push_back(towers[static_cast<std::size_t>(t)]->forward(mixed.select(1, t)));
    return out;
  }
};

// The CNN of train_step.cpp's `cnn` model.
struct Cnn : torch::nn::Module {
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear fc{nullptr}, head_a{nullptr}, head_b{nullptr};
  Cnn() {
    conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3).padding(1)));
    conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)));
    fc = register_module("fc", torch::nn::Linear(64 * 7 * 7, 128));
    head_a = register_module("head_a", torch::nn::Linear(128, 10));
    head_b = register_module("head_b", torch::nn::Linear(128, 4));
  }
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x) {
    torch::Tensor h = torch::max_pool2d(torch::relu(conv1(x)), 2);
    h = torch::max_pool2d(torch::relu(conv2(h)), 2);
    h = torch::relu(fc(h.flatten(1)));
    return {head_a(h), head_b(h)};
  }
};

struct Args {
  std::string model = "mlp", experts = "fused";
  long batch = 256, threads = 1, steps = 0, repeats = 7, warmup = 0;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "%s\nusage: train_step_torch --model mlp|mmoe|mmoe_small|cnn --batch B --threads N [--steps S] "
               "[--repeats R] [--warmup W] [--experts fused|loop]\n",
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
    else if (k == "--experts") a.experts = v;
    else usage(("unknown flag " + k).c_str());
  }
  if (a.batch <= 0 || a.threads <= 0 || a.repeats <= 0) usage("batch, threads and repeats must be positive");
  if (a.experts != "fused" && a.experts != "loop") usage("--experts is fused or loop");
  return a;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  const char* blas_threads = std::getenv("OPENBLAS_NUM_THREADS");
  // OpenBLAS 0.3.21 runs its AVX2 kernels on Zen 4/5; SkylakeX (AVX-512) only where the CPU has it.
  const bool avx512 = __builtin_cpu_supports("avx512f");
  if ((avx512 && (!core || std::string(core) != "SkylakeX")) || !blas_threads || std::string(blas_threads) != "1")
    std::fprintf(stderr, "train_step_torch: note: best settings here are %sOPENBLAS_NUM_THREADS=1\n",
                 avx512 ? "OPENBLAS_CORETYPE=SkylakeX " : "");
  torch::set_num_threads(static_cast<int>(args.threads));
  torch::manual_seed(1);

  std::function<torch::Tensor()> forward_loss;
  std::vector<torch::Tensor> params;
  std::shared_ptr<Mlp> mlp;
  std::shared_ptr<Mmoe> mmoe;
  std::shared_ptr<Cnn> cnn;
  torch::Tensor x, y, y2;
  std::vector<torch::Tensor> targets;
  const std::int64_t batch = args.batch;
  if (args.model == "mlp") {
    mlp = std::make_shared<Mlp>();
    params = mlp->parameters();
    x = torch::randn({batch, 784});
    y = torch::arange(batch, torch::kLong).mul(7919).add(13).remainder(10);
    forward_loss = [&] { return torch::nn::functional::cross_entropy(mlp->forward(x), y); };
  } else if (args.model == "mmoe" || args.model == "mmoe_small") {
    const bool small = args.model == "mmoe_small";
    const std::int64_t in = small ? 64 : 512;
    mmoe = std::make_shared<Mmoe>(in, 8, small ? 32 : 256, small ? 16 : 64, 3, args.experts == "fused");
    params = mmoe->parameters();
    x = torch::randn({batch, in});
    for (int t = 0; t < 3; ++t) targets.push_back(torch::randn({batch, 1}));
    forward_loss = [&] {
      const std::vector<torch::Tensor> out = mmoe->forward(x);
      torch::Tensor loss = torch::mse_loss(out[0], targets[0]);
      for (std::size_t t = 1; t < out.size(); ++t) loss = loss + torch::mse_loss(out[t], targets[t]);
      return loss;
    };
  } else if (args.model == "cnn") {
    cnn = std::make_shared<Cnn>();
    params = cnn->parameters();
    x = torch::randn({batch, 1, 28, 28});
    y = torch::arange(batch, torch::kLong).mul(7919).add(13).remainder(10);
    y2 = torch::arange(batch, torch::kLong).mul(104729).add(7).remainder(4);
    forward_loss = [&] {
      const auto [a, b] = cnn->forward(x);
      return torch::nn::functional::cross_entropy(a, y) + torch::nn::functional::cross_entropy(b, y2);
    };
  } else {
    usage(("unknown model " + args.model).c_str());
  }
  torch::optim::Adam opt(params, torch::optim::AdamOptions(1e-3));
  auto step = [&] {
    torch::Tensor loss = forward_loss();
    opt.zero_grad();
    loss.backward();
    opt.step();
  };

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
  const double mean_ms = total / static_cast<double>(per_step.size());
  std::printf("torch %s batch %ld threads %ld ms/step %.4f samples/s %.0f\n", args.model.c_str(), args.batch,
              args.threads, ms, static_cast<double>(args.batch) * 1000.0 / ms);
  std::printf("torch %s batch %ld threads %ld peak_rss_mb %.1f mean_ms %.4f\n", args.model.c_str(), args.batch,
              args.threads, peak_rss_mb(), mean_ms);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "train_step_torch: %s\n", e.what());
  return 1;
}
