// Elementwise and reduction bandwidth on 16M floats (64 MB per operand), in GB/s of bytes read plus
// bytes written, next to a memcpy of the same element count (64 MB read + 64 MB written) in the same
// process. Two levels:
//   kernel/...  the raw kernels (kernels::binary, unary, sum_reduce) on preallocated buffers, one
//               thread, CPU time: compare with "memcpy";
//   tensor/...  the Tensor ops (ladon::add, relu, sum, ...) including output allocation (served by
//               the caching allocator after the first iteration), at 1 and 2 threads, wall time:
//               compare with "memcpy/real_time".
// The target: elementwise at least 80% of memcpy bandwidth. Run with
// --benchmark_repetitions=3 --benchmark_report_aggregates_only=true for medians.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "ladon.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"

namespace {

constexpr std::int64_t kN = std::int64_t{16} << 20;  // 16M floats
constexpr double kBytes = static_cast<double>(kN) * sizeof(float);

// Buffers touched once up front so page faults are not timed.
struct Buffers {
  std::vector<float> a, b, out;
  Buffers() : a(kN), b(kN), out(kN) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
    for (std::int64_t i = 0; i < kN; ++i) a[i] = dist(rng), b[i] = dist(rng);
  }
};
Buffers& buffers() {
  static Buffers instance;
  return instance;
}

void set_bytes(benchmark::State& state, int streams) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(streams * kBytes));
}

// ---- reference: memcpy and a plain store loop of the same element count -----------------------------

void BM_memcpy(benchmark::State& state) {
  Buffers& buf = buffers();
  for (auto _ : state) {
    std::memcpy(buf.out.data(), buf.a.data(), kN * sizeof(float));
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2);
}
// CPU time for the single-threaded rows (steadier on a shared machine); wall time as the reference
// for the Tensor rows, which may use several threads.
BENCHMARK(BM_memcpy)->Name("memcpy")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_memcpy)->Name("memcpy")->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- raw kernels ----------------------------------------------------------------------------------

void BM_kernel_binary(benchmark::State& state, ladon::kernels::BinaryOp op) {
  Buffers& buf = buffers();
  for (auto _ : state) {
    ladon::kernels::binary(op, kN, buf.a.data(), 1, buf.b.data(), 1, buf.out.data(), 1);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 3);
}
void BM_kernel_unary(benchmark::State& state, ladon::kernels::UnaryOp op) {
  Buffers& buf = buffers();
  for (auto _ : state) {
    ladon::kernels::unary(op, kN, buf.a.data(), 1, buf.out.data(), 1);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2);
}
void BM_kernel_sum(benchmark::State& state) {
  Buffers& buf = buffers();
  float total = 0;
  for (auto _ : state) {
    ladon::kernels::sum_reduce(1, kN, 1, buf.a.data(), &total);
    benchmark::DoNotOptimize(total);
  }
  set_bytes(state, 1);
}
BENCHMARK_CAPTURE(BM_kernel_binary, add, ladon::kernels::BinaryOp::add)->Name("kernel/add")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_kernel_binary, mul, ladon::kernels::BinaryOp::mul)->Name("kernel/mul")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_kernel_unary, relu, ladon::kernels::UnaryOp::relu)->Name("kernel/relu")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_kernel_unary, exp, ladon::kernels::UnaryOp::exp)->Name("kernel/exp")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kernel_sum)->Name("kernel/sum")->Unit(benchmark::kMillisecond);

// ---- Tensor ops (allocation, dispatch and any threading included) ---------------------------------

struct TensorInputs {
  ladon::Tensor a, b;
  TensorInputs() {
    ladon::Generator gen(7);
    a = ladon::uniform({kN}, -4.0, 4.0, gen);
    b = ladon::uniform({kN}, -4.0, 4.0, gen);
  }
};
TensorInputs& tensor_inputs() {
  static TensorInputs instance;
  return instance;
}

template <typename F>
void BM_tensor(benchmark::State& state, F f, int streams) {
  ladon::set_num_threads(static_cast<int>(state.range(0)));
  TensorInputs& in = tensor_inputs();
  ladon::NoGradGuard no_grad;
  for (auto _ : state) {
    ladon::Tensor out = f(in.a, in.b);
    benchmark::DoNotOptimize(out.data<float>());
  }
  set_bytes(state, streams);
}
using ladon::Tensor;
BENCHMARK_CAPTURE(BM_tensor, add, [](const Tensor& a, const Tensor& b) { return ladon::add(a, b); }, 3)
    ->Name("tensor/add")->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_tensor, mul, [](const Tensor& a, const Tensor& b) { return ladon::mul(a, b); }, 3)
    ->Name("tensor/mul")->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_tensor, relu, [](const Tensor& a, const Tensor&) { return ladon::relu(a); }, 2)
    ->Name("tensor/relu")->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_tensor, exp, [](const Tensor& a, const Tensor&) { return ladon::exp(a); }, 2)
    ->Name("tensor/exp")->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_tensor, sum, [](const Tensor& a, const Tensor&) { return ladon::sum(a); }, 1)
    ->Name("tensor/sum")->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
