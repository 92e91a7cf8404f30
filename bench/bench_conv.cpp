// Convolutions of the issue-15 CNN against oneDNN (Debian libdnnl-dev), one thread, in one run:
//
//   conv1: batch 128, 1 -> 32 channels, 28 x 28, 3 x 3, padding 1 (its input needs no gradient)
//   conv2: batch 128, 32 -> 64 channels, 14 x 14, 3 x 3, padding 1
//
// `forward` is the convolution with bias (+ ReLU for ours, fused; oneDNN's plain convolution);
// `train` is forward plus every backward the training step needs (weight and bias gradients, and
// the input gradient for conv2), for ladon through autograd seeded with the output gradient.
// GFLOP/s counts 2 * N * O * C * 9 * OH * OW per convolution product (one forward, two backward for
// conv2, one for conv1) per second of CPU time. oneDNN gets its best case: formats of its own
// choosing (`any`, usually channel-blocked) for every tensor, reorders done once outside the
// timing, and OMP_NUM_THREADS=1. `ours_pooled`: ours as the CNN runs it, fused with the 2 x 2 max
// pool (train_step's cnn; oneDNN has no such fusion to compare). Where the CPU has AVX512_BF16,
// `ours_bf16` runs ours under bf16 autocast and `onednn_bf16` oneDNN with bf16 sources, weights and
// output gradients (float32 outputs, bias and weight gradients): bf16 products, float32 sums both.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/isa.h"
#include "ladon.h"

#ifdef LADON_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

using namespace ladon;

namespace {

struct Shape4 {
  const char* name;
  std::int64_t n, c, o, h, w;
  bool input_grad;
  double flops() const { return 2.0 * n * o * c * 9 * h * w; }  // one product; padding 1 keeps h x w
  double train_products() const { return input_grad ? 3.0 : 2.0; }
};

constexpr Shape4 kShapes[] = {{"conv1", 128, 1, 32, 28, 28, false}, {"conv2", 128, 32, 64, 14, 14, true}};

void set_flops(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * static_cast<double>(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
}

// pooled: the convolution as the CNN runs it, fused with its ReLU and 2 x 2 max pool
// (conv2d_max_pool2x2), so the full-size output never reaches memory and the backward starts from
// the pooled gradient. GFLOP/s counts the convolution's products only, either way.
void ours(benchmark::State& state, Shape4 s, bool train, bool pooled, bool bf16) {
  set_num_threads(1);
  const AutocastGuard precision(bf16 ? Precision::bf16 : Precision::fp32);
  Generator gen(1);
  const Tensor x = randn({s.n, s.c, s.h, s.w}, gen).requires_grad_(train && s.input_grad);
  const Tensor w = (randn({s.o, s.c, 3, 3}, gen) * 0.2).requires_grad_(train);
  const Tensor b = randn({s.o}, gen).requires_grad_(train);
  const std::int64_t shrink = pooled ? 2 : 1;
  const Tensor r = randn({s.n, s.o, s.h / shrink, s.w / shrink}, gen) * 0.1;
  for (auto _ : state) {
    Tensor y = pooled ? conv2d_max_pool2x2(x, w, b, {.padding = 1}, Activation::relu)
                      : conv2d(x, w, b, {.padding = 1}, Activation::relu);
    if (train) {
      y.backward(r);  // the output gradient r, as oneDNN's diff_dst
      for (const Tensor& t : {x, w, b}) t.zero_grad();
    }
    benchmark::DoNotOptimize(y.data<float>());
  }
  set_flops(state, s.flops() * (train ? s.train_products() : 1.0));
}

#ifdef LADON_HAVE_DNNL
using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

memory filled(const memory::desc& md, const dnnl::engine& eng, float value) {
  memory m(md, eng);
  if (md.data_type() == dt::bf16) {  // the high half of each float: its bf16 value, truncated
    auto* p = static_cast<std::uint16_t*>(m.get_data_handle());
    for (std::size_t i = 0; i < md.get_size() / sizeof(std::uint16_t); ++i)
      p[i] = static_cast<std::uint16_t>(std::bit_cast<std::uint32_t>(value * static_cast<float>(i % 7 + 1)) >> 16);
    return m;
  }
  auto* p = static_cast<float*>(m.get_data_handle());
  for (std::size_t i = 0; i < md.get_size() / sizeof(float); ++i) p[i] = value * static_cast<float>(i % 7 + 1);
  return m;
}

void onednn(benchmark::State& state, Shape4 s, bool train, bool bf16) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  const memory::dims src{s.n, s.c, s.h, s.w}, wei{s.o, s.c, 3, 3}, bia{s.o}, dst{s.n, s.o, s.h, s.w};
  const memory::dims strides{1, 1}, pad{1, 1};
  // bf16: the products' operands (source, weights; output gradient) in bf16, the rest float32.
  const dt operand = bf16 ? dt::bf16 : dt::f32;
  const memory::desc src_md(src, operand, tag::any), wei_md(wei, operand, tag::any), bia_md(bia, dt::f32, tag::a),
      dst_md(dst, dt::f32, tag::any), diff_src_md(src, dt::f32, tag::any), diff_wei_md(wei, dt::f32, tag::any),
      diff_dst_md(dst, operand, tag::any);
  const dnnl::convolution_forward::primitive_desc fwd_pd(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src_md,
                                      wei_md, bia_md, dst_md, strides, pad, pad),
      eng);
  const memory x = filled(fwd_pd.src_desc(), eng, 0.1f), w = filled(fwd_pd.weights_desc(), eng, 0.01f),
               b = filled(fwd_pd.bias_desc(), eng, 0.1f), y = filled(fwd_pd.dst_desc(), eng, 0.0f);
  const dnnl::convolution_forward fwd(fwd_pd);

  const dnnl::convolution_backward_data::primitive_desc data_pd(
      dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, diff_src_md, wei_md, diff_dst_md,
                                            strides, pad, pad),
      eng, fwd_pd);
  const dnnl::convolution_backward_weights::primitive_desc weights_pd(
      dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, src_md, diff_wei_md, bia_md,
                                               diff_dst_md, strides, pad, pad),
      eng, fwd_pd);
  const memory gy_data = filled(data_pd.diff_dst_desc(), eng, 0.1f), w_data = filled(data_pd.weights_desc(), eng, 0.01f),
               gx = filled(data_pd.diff_src_desc(), eng, 0.0f);
  const memory x_weights = filled(weights_pd.src_desc(), eng, 0.1f),
               gy_weights = filled(weights_pd.diff_dst_desc(), eng, 0.1f),
               gw = filled(weights_pd.diff_weights_desc(), eng, 0.0f), gb = filled(weights_pd.diff_bias_desc(), eng, 0.0f);
  const dnnl::convolution_backward_data bwd_data(data_pd);
  const dnnl::convolution_backward_weights bwd_weights(weights_pd);

  for (auto _ : state) {
    fwd.execute(stream, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, y}});
    if (train) {
      bwd_weights.execute(stream, {{DNNL_ARG_SRC, x_weights},
                                   {DNNL_ARG_DIFF_DST, gy_weights},
                                   {DNNL_ARG_DIFF_WEIGHTS, gw},
                                   {DNNL_ARG_DIFF_BIAS, gb}});
      if (s.input_grad)
        bwd_data.execute(stream, {{DNNL_ARG_DIFF_DST, gy_data}, {DNNL_ARG_WEIGHTS, w_data}, {DNNL_ARG_DIFF_SRC, gx}});
    }
    stream.wait();
  }
  set_flops(state, s.flops() * (train ? s.train_products() : 1.0));
}
#endif

}  // namespace

int main(int argc, char** argv) {
  // oneDNN on one thread: its OpenMP runtime (libgomp) reads OMP_NUM_THREADS when it is loaded,
  // before main, so set it and start again. (Setting it here alone left oneDNN on both cores of
  // the Intel Xeon, and CPU time, which counts this thread, put its conv2 at 349 GFLOP/s for 175.)
  if (const char* threads = std::getenv("OMP_NUM_THREADS"); threads == nullptr || std::string(threads) != "1") {
    setenv("OMP_NUM_THREADS", "1", 1);
    execv("/proc/self/exe", argv);
    std::perror("bench_conv: could not restart with OMP_NUM_THREADS=1; oneDNN may use every core");
  }
  const bool bf16 = kernels::isa_supported(kernels::Isa::avx512_bf16);
  for (const Shape4& s : kShapes)
    for (const bool train : {false, true}) {
      const std::string name = std::string(s.name) + "/" + (train ? "train" : "forward");
      for (const bool pooled : {false, true})
        benchmark::RegisterBenchmark((name + (pooled ? "/ours_pooled" : "/ours")).c_str(), ours, s, train, pooled,
                                     false)
            ->Unit(benchmark::kMillisecond);
      if (bf16)
        benchmark::RegisterBenchmark((name + "/ours_bf16").c_str(), ours, s, train, false, true)
            ->Unit(benchmark::kMillisecond);
#ifdef LADON_HAVE_DNNL
      benchmark::RegisterBenchmark((name + "/onednn").c_str(), onednn, s, train, false)->Unit(benchmark::kMillisecond);
      if (bf16)
        benchmark::RegisterBenchmark((name + "/onednn_bf16").c_str(), onednn, s, train, true)
            ->Unit(benchmark::kMillisecond);
#endif
    }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
