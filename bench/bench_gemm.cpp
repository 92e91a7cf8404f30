// sgemm micro-benchmarks: ours (kernels::sgemm, CPUID-chosen micro-kernel) against OpenBLAS's
// cblas_sgemm in the same process, single-threaded, reporting GFLOP/s. Compare ratios from one run;
// the machine is shared and absolute numbers drift. See bench/README.md.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "core/ops.h"
#include "core/random.h"
#include "core/parallel.h"
#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"

namespace {

using ladon::kernels::Isa;

struct Shape {
  std::int64_t m, n, k;
};

// C[m x n] = op(A)[m x k] * op(B)[k x n]. The "256x784x512" (batch x in x out) is m=256,
// k=784, n=512 here; "1024x512x2048" is m=1024, k=512, n=2048.
const Shape kShapes[] = {{64, 64, 64},       {128, 128, 128}, {256, 256, 256},  {512, 512, 512},
                         {1024, 1024, 1024}, {256, 512, 784}, {1024, 2048, 512}};

// Which kernel ours_bf16 runs on this machine.
const char* bf16_kernel_description() {
  return ladon::kernels::isa_supported(Isa::avx512_bf16)
             ? ladon::kernels::bf16_kernel_name(ladon::kernels::gemm_bf16_kernel())
             : "emulated";
}

enum class Impl { ours, openblas, packed, avx2, scalar, bf16 };

void run(benchmark::State& state, Impl impl, Shape s, bool trans_a, bool trans_b) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> a(static_cast<std::size_t>(s.m * s.k)), b(static_cast<std::size_t>(s.k * s.n)),
      c(static_cast<std::size_t>(s.m * s.n));
  for (float& x : a) x = dist(rng);
  for (float& x : b) x = dist(rng);
  const std::int64_t lda = trans_a ? s.m : s.k, ldb = trans_b ? s.k : s.n;
  for (auto _ : state) {
    switch (impl) {
      case Impl::ours:
        ladon::kernels::sgemm(trans_a, trans_b, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
        break;
      case Impl::openblas:
        ladon::kernels::sgemm_reference(trans_a, trans_b, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f,
                                        c.data(), s.n);
        break;
      case Impl::packed:  // the best micro-kernel, always through packing
        ladon::kernels::sgemm_with_isa(ladon::kernels::best_isa(), trans_a, trans_b, s.m, s.n, s.k, 1.0f, a.data(), lda,
                                       b.data(), ldb, 0.0f, c.data(), s.n, false);
        break;
      case Impl::avx2:
        ladon::kernels::sgemm_with_isa(Isa::avx2, trans_a, trans_b, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb,
                                       0.0f, c.data(), s.n);
        break;
      case Impl::bf16:  // bf16 inputs, float32 sums: gemm_bf16's kernel for this CPU (gemm_bf16.h)
        ladon::kernels::gemm_bf16(trans_a, trans_b, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(),
                                  s.n);
        break;
      case Impl::scalar:
        ladon::kernels::sgemm_scalar(trans_a, trans_b, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f,
                                     c.data(), s.n);
        break;
    }
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void register_all() {
  const struct {
    Impl impl;
    const char* name;
  } impls[] = {{Impl::ours, "ours"},
               {Impl::openblas, "openblas"},
               {Impl::packed, "ours_packed"},
               {Impl::avx2, "ours_avx2"},
               {Impl::scalar, "ours_scalar"},
               {Impl::bf16, "ours_bf16"}};
  const struct {
    bool ta, tb;
    const char* name;
  } layouts[] = {{false, false, "NN"}, {false, true, "NT"}, {true, false, "TN"}};
  for (const auto& l : layouts)
    for (const Shape& s : kShapes)
      for (const auto& im : impls) {
        if (im.impl == Impl::avx2 && !ladon::kernels::isa_supported(Isa::avx2)) continue;
        // The layout variants and the slower paths only at a few sizes, to keep a run short.
        const bool main_path =
            im.impl == Impl::ours || im.impl == Impl::openblas || im.impl == Impl::packed || im.impl == Impl::bf16;
        if (!main_path && s.m * s.n * s.k > 256 * 256 * 256) continue;
        // Backward products are NT and TN: ours and ours_bf16 get those layouts at every size.
        const bool fp32_vs_bf16 = im.impl == Impl::ours || im.impl == Impl::bf16;
        if (l.ta != l.tb && s.m * s.n * s.k > 512 * 512 * 512 && !fp32_vs_bf16) continue;
        char name[128];
        std::snprintf(name, sizeof name, "sgemm_%s/%s/M%lld_N%lld_K%lld", l.name, im.name, static_cast<long long>(s.m),
                      static_cast<long long>(s.n), static_cast<long long>(s.k));
        const Impl impl = im.impl;
        const bool ta = l.ta, tb = l.tb;
        benchmark::RegisterBenchmark(name, [=](benchmark::State& st) { run(st, impl, s, ta, tb); })
            ->Unit(benchmark::kMicrosecond)
            ->MinTime(0.2);
      }
}

// ladon::matmul on 1 and 2 threads: the threading of the GEMM through core/parallel.h, wall time.
void matmul_threads(benchmark::State& state, Shape s) {
  ladon::set_num_threads(static_cast<int>(state.range(0)));
  const ladon::Tensor a = ladon::randn({s.m, s.k}), b = ladon::randn({s.k, s.n});
  for (auto _ : state) {
    const ladon::Tensor c = ladon::matmul(a, b);
    benchmark::DoNotOptimize(c.data<float>());
  }
  const double flops = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  ladon::set_num_threads(0);
}

void register_threaded() {
  for (const Shape& s : {Shape{1024, 1024, 1024}, Shape{256, 512, 784}, Shape{1024, 2048, 512}, Shape{32, 256, 64}, Shape{64, 256, 256}, Shape{128, 256, 256}, Shape{128, 512, 512}, Shape{256, 256, 512}}) {
    char name[128];
    std::snprintf(name, sizeof name, "matmul/M%lld_N%lld_K%lld", static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k));
    benchmark::RegisterBenchmark(name, [=](benchmark::State& st) { matmul_threads(st, s); })
        ->Arg(1)
        ->Arg(2)
        ->ArgName("threads")
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(0.3);
  }
}

}  // namespace

int main(int argc, char** argv) {
  openblas_set_num_threads(1);  // single-threaded comparison, as ladon calls it
  benchmark::Initialize(&argc, argv);
  register_all();
  register_threaded();
  std::printf("ladon isa: %s (ours_bf16 %s); OpenBLAS core: %s\n", ladon::kernels::isa_name(ladon::kernels::best_isa()),
              bf16_kernel_description(), 
              openblas_get_corename());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
