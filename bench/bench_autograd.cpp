// What grad() costs against a full backward on the issue-10 case: the `mmoe` model of
// bench/train_step at batch 1024 (input 512, 8 experts of Linear(512, 256) + ReLU as one GEMM, 3
// softmax gates on the raw input as one Linear, the mixture as one batched GEMM, towers 256-64-1,
// MSE per task summed), written here with core ops and nn::Linear, exactly as mtl::MMoE computes
// it, so the benchmark names the tensor it asks about.
//
//   full_backward      loss.backward(): every parameter's gradient
//   grad_trunk_output  grad({loss}, {expert output}): needs the towers' and the mixture's input
//                      gradients only, not the towers' or gates' weights nor the expert bank
//   grad_shared        grad({task 0 loss}, expert-bank parameters): what a per-task gradient
//                      method asks for once per task
//
// Only the backward is timed (manual time); the forward runs each iteration outside the timer.
// Compare the rows of one run; bench/README.md has measured ratios.
#include <benchmark/benchmark.h>

#include <time.h>

#include <chrono>
#include <cmath>
#include <vector>

#include "ladon.h"

using namespace ladon;

namespace {

struct Mmoe {
  static constexpr std::int64_t kBatch = 1024, kIn = 512, kExperts = 8, kHidden = 256, kTasks = 3, kTower = 64;
  Tensor expert_weight, expert_bias, gate_weight, gate_bias;
  std::vector<nn::Linear> tower_in, tower_out;
  Tensor x;
  std::vector<Tensor> targets;

  Mmoe() {
    Generator gen(1);
    const auto param = [&](const Shape& shape, std::int64_t fan_in) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
      return uniform(shape, -bound, bound, gen).requires_grad_();
    };
    expert_weight = param({kIn, kExperts * kHidden}, kIn);
    expert_bias = param({kExperts * kHidden}, kIn);
    gate_weight = param({kTasks * kExperts, kIn}, kIn);
    gate_bias = param({kTasks * kExperts}, kIn);
    for (std::int64_t t = 0; t < kTasks; ++t) {
      tower_in.emplace_back(kHidden, kTower, nn::LinearOptions{}, gen);
      tower_out.emplace_back(kTower, 1, nn::LinearOptions{}, gen);
    }
    Generator data(42);
    x = randn({kBatch, kIn}, data);
    for (std::int64_t t = 0; t < kTasks; ++t) targets.push_back(randn({kBatch, 1}, data));
  }

  struct Forward {
    Tensor trunk;                   // the expert bank's output [batch, experts, hidden]
    std::vector<Tensor> task_loss;  // one per task
    Tensor loss;                    // their sum
  };
  Forward forward() {
    Forward f;
    f.trunk = relu(matmul(x, expert_weight) + expert_bias).reshape({kBatch, kExperts, kHidden});
    const Tensor gates = softmax(linear(x, gate_weight, gate_bias).reshape({kBatch, kTasks, kExperts}), -1);
    const Tensor mixed = matmul(gates, f.trunk);
    for (std::int64_t t = 0; t < kTasks; ++t) {
      const auto i = static_cast<std::size_t>(t);
      const Tensor y = tower_out[i](tower_in[i].forward(mixed.narrow(1, t, 1).squeeze(1), Activation::relu));
      f.task_loss.push_back(nn::mse_loss(y, targets[i]));
      f.loss = t == 0 ? f.task_loss[0] : f.loss + f.task_loss[i];
    }
    return f;
  }

  std::vector<Tensor> parameters() {
    std::vector<Tensor> ps = {expert_weight, expert_bias, gate_weight, gate_bias};
    for (std::size_t t = 0; t < tower_in.size(); ++t)
      for (nn::Linear* l : {&tower_in[t], &tower_out[t]}) ps.insert(ps.end(), {l->weight, l->bias});
    return ps;
  }
};

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// The manual time is the backward's wall time; cpu_ms is its CPU time summed over threads, which
// preemption by other processes on this shared machine does not inflate.
template <class Backward>
void run(benchmark::State& state, Backward backward) {
  set_num_threads(static_cast<int>(state.range(0)));
  Mmoe model;
  double cpu = 0;
  for (auto _ : state) {
    Mmoe::Forward f = model.forward();
    const double c0 = process_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    backward(model, f);
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu += process_cpu_seconds() - c0;
  }
  state.counters["cpu_ms"] = 1e3 * cpu / static_cast<double>(state.iterations());
}

void full_backward(benchmark::State& state) {
  run(state, [](Mmoe& model, Mmoe::Forward& f) {
    for (Tensor& p : model.parameters()) p.zero_grad();
    f.loss.backward();
    benchmark::DoNotOptimize(model.expert_weight.grad().data<float>());
  });
}

void grad_trunk_output(benchmark::State& state) {
  run(state, [](Mmoe&, Mmoe::Forward& f) {
    const std::vector<Tensor> g = grad({f.loss}, {f.trunk});
    benchmark::DoNotOptimize(g[0].data<float>());
  });
}

void grad_shared(benchmark::State& state) {
  run(state, [](Mmoe& model, Mmoe::Forward& f) {
    const std::vector<Tensor> g = grad({f.task_loss[0]}, {model.expert_weight, model.expert_bias});
    benchmark::DoNotOptimize(g[0].data<float>());
  });
}

}  // namespace

BENCHMARK(full_backward)->Arg(1)->Arg(2)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(grad_trunk_output)->Arg(1)->Arg(2)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(grad_shared)->Arg(1)->Arg(2)->UseManualTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
