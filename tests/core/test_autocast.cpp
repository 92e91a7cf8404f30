// bf16 autocast (core/autocast.h): which products change, by hand-worked values that bf16 rounding
// must produce; float32 outputs and gradients; the precision a backward runs in; a model training.
//
// The hand-worked values use x = 1 + 2^-8, which lies exactly between the bf16 values 1 and
// 1 + 2^-7 and so rounds (to even) to 1, while 2, 3 and 1 + 2^-7 are bf16 values already.
#include <doctest/doctest.h>

#include <cmath>
#include <thread>
#include <vector>

#include "helpers.h"
#include "kernels/conv.h"  // conv2d_direct_available
#include "kernels/gemm_bf16.h"
#include "kernels/isa.h"
#include "ladon.h"

using namespace ladon;

namespace {

constexpr float kTie = 1.0f + 1.0f / 256.0f;   // bf16: rounds to 1
constexpr float kStep = 1.0f + 1.0f / 128.0f;  // bf16: exact

std::vector<float> values(const Tensor& t) {
  const Tensor c = t.contiguous();
  return {c.data<float>(), c.data<float>() + c.numel()};
}

}  // namespace

TEST_CASE("AutocastGuard: nests, restores, and is per thread") {
  CHECK(autocast_precision() == Precision::fp32);
  {
    const AutocastGuard outer(Precision::bf16);
    CHECK(autocast_precision() == Precision::bf16);
    Precision seen_by_other_thread = Precision::bf16;
    std::thread([&] { seen_by_other_thread = autocast_precision(); }).join();
    CHECK(seen_by_other_thread == Precision::fp32);
    {
      const AutocastGuard inner(Precision::fp32);
      CHECK(autocast_precision() == Precision::fp32);
    }
    CHECK(autocast_precision() == Precision::bf16);
  }
  CHECK(autocast_precision() == Precision::fp32);
  CHECK(std::string(precision_name(Precision::bf16)) == "bf16");
  CHECK(std::string(precision_name(Precision::fp32)) == "fp32");
}

TEST_CASE("autocast: matmul and linear multiply bf16-rounded operands into float32 outputs") {
  // [kTie, 3] . [1, kStep]: float32 gives kTie + 3 kStep = 4.02734375; bf16 inputs give
  // 1 + 3 kStep = 4.0234375 (both exact in float32).
  const Tensor x = tensor({kTie, 3.0f}, {1, 2});
  const Tensor w = tensor({1.0f, kStep}, {1, 2});
  const Tensor bias = tensor({0.5f}, {1});
  CHECK(values(matmul(x, w.t())) == std::vector<float>{4.02734375f});
  CHECK(values(linear(x, w, bias)) == std::vector<float>{4.52734375f});
  {
    const AutocastGuard bf16(Precision::bf16);
    const Tensor y = matmul(x, w.t());
    CHECK(y.dtype() == Dtype::float32);
    CHECK(values(y) == std::vector<float>{4.0234375f});
    // The bias is added in float32 by the epilogue, not rounded: 4.0234375 + 0.5 + 2^-9.
    const Tensor yb = linear(x, w, tensor({0.5f + 1.0f / 512.0f}, {1}));
    CHECK(values(yb) == std::vector<float>{4.0234375f + 0.5f + 1.0f / 512.0f});
    // ReLU in the epilogue too.
    CHECK(values(linear(x, w * -1.0, Tensor(), Activation::relu)) == std::vector<float>{0.0f});
    // Batched 3-D products and 3-D @ 2-D (the MMoE expert layers and the gate mixture) alike.
    const Tensor xb = tensor({kTie, 3.0f, 3.0f, kTie}, {2, 1, 2});
    const Tensor wb = tensor({1.0f, kStep, 1.0f, kStep}, {2, 2, 1});
    CHECK(values(matmul(xb, wb)) == std::vector<float>{4.0234375f, 3.0f + kStep});
    CHECK(values(matmul(xb, w.t())) == std::vector<float>{4.0234375f, 3.0f + kStep});
    // Everything that is not a matrix product stays float32: sums, elementwise ops, softmax.
    CHECK(values(sum(x)) == std::vector<float>{kTie + 3.0f});
    CHECK(values(x * 1.0) == std::vector<float>{kTie, 3.0f});
    const Tensor p = softmax(tensor({kTie, 1.0f}, {1, 2}), 1);
    const AutocastGuard back(Precision::fp32);
    CHECK(values(p) == values(softmax(tensor({kTie, 1.0f}, {1, 2}), 1)));
  }
  CHECK(values(matmul(x, w.t())) == std::vector<float>{4.02734375f});  // off again after the scope
}

TEST_CASE("autocast: gradients reach float32 parameters, computed in the forward's precision") {
  // loss = sum(linear(x, W) * s) with s = kTie: dY = kTie; dW = dYᵀ x; dX = dY W. In bf16 both
  // operands round, kTie -> 1: dW = [1, 3] and dX = [1, kStep]; in float32 dW = kTie [kTie, 3].
  for (const bool backward_inside : {true, false}) {
    CAPTURE(backward_inside);
    Tensor x = tensor({kTie, 3.0f}, {1, 2});
    Tensor w = tensor({1.0f, kStep}, {1, 2});
    x.requires_grad_();
    w.requires_grad_();
    Tensor loss;
    {
      const AutocastGuard bf16(Precision::bf16);
      loss = sum(linear(x, w, Tensor()) * tensor({kTie}, {1, 1}));
      if (backward_inside) loss.backward();
    }
    if (!backward_inside) loss.backward();  // outside the scope: still the forward's precision
    REQUIRE(w.grad().defined());
    CHECK(w.dtype() == Dtype::float32);
    CHECK(w.grad().dtype() == Dtype::float32);
    CHECK(values(w.grad()) == std::vector<float>{1.0f, 3.0f});
    CHECK(values(x.grad()) == std::vector<float>{1.0f, kStep});
  }
  // A float32 forward keeps a float32 backward even when backward runs inside a bf16 scope.
  Tensor w = tensor({1.0f, kStep}, {1, 2});
  w.requires_grad_();
  const Tensor loss = sum(matmul(tensor({kTie, 3.0f}, {1, 2}), w.t()) * tensor({kTie}, {1, 1}));
  {
    const AutocastGuard bf16(Precision::bf16);
    loss.backward();
  }
  CHECK(values(w.grad()) == std::vector<float>{kTie * kTie, kTie * 3.0f});
}

TEST_CASE("autocast: the MMoE expert bank and towers run in bf16") {
  Generator gen(4);
  mtl::MMoE model({.in = 16,
                   .experts = 4,
                   .expert_hidden = {32},
                   .tasks = {{"a", 3, {8}}, {"b", 1, {8}, mtl::TaskKind::regression}}},
                  gen);
  const Tensor x = randn({64, 16}, gen);
  const std::vector<Tensor> fp32 = model(x);
  std::vector<Tensor> bf16;
  {
    const AutocastGuard scope(Precision::bf16);
    bf16 = model(x);
  }
  for (std::size_t t = 0; t < fp32.size(); ++t) {
    CHECK(bf16[t].dtype() == Dtype::float32);
    // Differs by bf16 rounding: not zero (the products did change), well below 2^-5 of the scale.
    const double diff = max(abs(bf16[t] - fp32[t])).item(), scale = max(abs(fp32[t])).item();
    CHECK(diff > 0.0);
    CHECK(diff < scale / 32.0);
  }
}

TEST_CASE("autocast: an MLP trains under bf16 as it does in float32") {
  // Two classes split by a fixed hyperplane in 8-D; a 8-32-2 MLP with Adam, full batch.
  Generator data(7);
  const Tensor x = randn({256, 8}, data);
  const Tensor direction = randn({8, 1}, data);
  const Tensor score = matmul(x, direction);
  std::vector<std::int64_t> labels(256);
  for (std::int64_t i = 0; i < 256; ++i) labels[static_cast<std::size_t>(i)] = score.data<float>()[i] > 0.0f;
  const Tensor y = tensor(labels, {256});

  const auto train = [&](Precision precision) {
    Generator gen(3);
    nn::Sequential net;
    net.push_back(nn::Linear(8, 32, {}, gen));
    net.push_back(nn::ReLU());
    net.push_back(nn::Linear(32, 2, {}, gen));
    nn::Adam opt(net.parameters(), {.lr = 1e-2});
    const AutocastGuard scope(precision);
    double loss_value = 0.0;
    for (int step = 0; step < 150; ++step) {
      Tensor loss = nn::cross_entropy(net(x), y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      loss_value = loss.item();
    }
    for (const Tensor& p : net.parameters()) CHECK(p.dtype() == Dtype::float32);
    const Tensor predicted = argmax(net(x), 1);
    std::int64_t correct = 0;
    for (std::int64_t i = 0; i < 256; ++i)
      correct += predicted.data<std::int64_t>()[i] == labels[static_cast<std::size_t>(i)];
    return std::pair{loss_value, static_cast<double>(correct) / 256.0};
  };
  const auto [loss32, acc32] = train(Precision::fp32);
  const auto [loss16, acc16] = train(Precision::bf16);
  CHECK(acc32 > 0.95);
  CHECK(acc16 > 0.95);
  CHECK(loss16 < 0.15);
  CHECK(std::fabs(loss16 - loss32) < 0.03);
  CHECK(loss16 != loss32);  // the bf16 run really took other steps
}

TEST_CASE("autocast: native and emulated bf16 give the same linear layer") {
  if (!kernels::isa_supported(kernels::Isa::avx512_bf16)) {
    MESSAGE("no AVX512_BF16 on this CPU: only the emulation ran");
    return;
  }
  Generator gen(2);
  const Tensor x = randn({37, 50}, gen), w = randn({21, 50}, gen), b = randn({21}, gen);
  const AutocastGuard scope(Precision::bf16);
  const Tensor native = linear(x, w, b);
  std::vector<float> emulated;
  {
    const kernels::IsaOverride emulate(kernels::Isa::avx512);
    emulated = values(linear(x, w, b));
  }
  if (kernels::gemm_bf16_kernel_for(37, 21, 50) != kernels::Bf16Kernel::amx) {
    CHECK(emulated == values(native));  // vdpbf16ps and FMA: the same sums in the same order (kernels test)
    return;
  }
  // AMX sums the same exact products in its own order: float32 summation's bound on each output
  // (k 2^-24 sum |x||w| for each of the two sums, plus the bias's rounding), against 2^-9 relative
  // for an unrounded operand.
  const std::vector<float> got = values(native), xs = values(x), ws = values(w), bs = values(b);
  for (std::int64_t i = 0; i < 37; ++i)
    for (std::int64_t j = 0; j < 21; ++j) {
      double magnitude = std::fabs(bs[static_cast<std::size_t>(j)]);
      for (std::int64_t p = 0; p < 50; ++p)
        magnitude += std::fabs(static_cast<double>(xs[static_cast<std::size_t>(i * 50 + p)]) *
                               ws[static_cast<std::size_t>(j * 50 + p)]);
      const std::size_t o = static_cast<std::size_t>(i * 21 + j);
      CHECK(std::fabs(got[o] - emulated[o]) <= 2.0 * 52.0 * std::ldexp(1.0, -24) * magnitude);
    }
}

TEST_CASE("autocast: conv2d multiplies bf16-rounded operands, and its gradients follow the forward") {
  // A 1 x 2 image [kTie, 3] under a 1 x 2 kernel [1, kStep]: one output, kTie + 3 kStep in float32,
  // 1 + 3 kStep with bf16 operands; the bias is added in float32.
  const Tensor x = tensor({kTie, 3.0f}, {1, 1, 1, 2});
  const Tensor w = tensor({1.0f, kStep}, {1, 1, 1, 2});
  const Tensor bias = tensor({0.5f + 1.0f / 512.0f}, {1});
  CHECK(values(conv2d(x, w, bias)) == std::vector<float>{kTie + 3.0f * kStep + 0.5f + 1.0f / 512.0f});
  {
    const AutocastGuard bf16(Precision::bf16);
    const Tensor y = conv2d(x, w, bias);
    CHECK(y.dtype() == Dtype::float32);
    CHECK(values(y) == std::vector<float>{1.0f + 3.0f * kStep + 0.5f + 1.0f / 512.0f});
    CHECK(values(conv2d(x, w * -1.0, Tensor(), {}, Activation::relu)) == std::vector<float>{0.0f});
  }
  // loss = sum(conv2d(x, W) * kTie): dW = kTie x and dX = kTie W, which bf16 rounds to [1, 3] and
  // [1, kStep]; float32 keeps kTie [kTie, 3]. Backward inside or outside the scope: the same.
  for (const bool backward_inside : {true, false}) {
    CAPTURE(backward_inside);
    Tensor xg = x.detach().requires_grad_(), wg = w.detach().requires_grad_();
    Tensor loss;
    {
      const AutocastGuard bf16(Precision::bf16);
      loss = sum(conv2d(xg, wg, Tensor()) * tensor({kTie}, {1, 1, 1, 1}));
      if (backward_inside) loss.backward();
    }
    if (!backward_inside) loss.backward();
    CHECK(wg.grad().dtype() == Dtype::float32);
    CHECK(values(wg.grad()) == std::vector<float>{1.0f, 3.0f});
    CHECK(values(xg.grad()) == std::vector<float>{1.0f, kStep});
  }
  Tensor wf = w.detach().requires_grad_();
  const Tensor loss = sum(conv2d(x, wf, Tensor()) * tensor({kTie}, {1, 1, 1, 1}));
  {
    const AutocastGuard bf16(Precision::bf16);  // a float32 forward keeps a float32 backward
    loss.backward();
  }
  CHECK(values(wf.grad()) == std::vector<float>{kTie * kTie, kTie * 3.0f});
}

TEST_CASE("autocast: conv2d forward and gradients within the bf16 bound of float32, native and emulated") {
  // The CNN's second layer at a small batch, with bias and the fused ReLU. Each product's error
  // against float32 is at most (2^-8 + 2^-8 + k 2^-24) sum |a||b| (gemm_bf16.h), k = 32 * 9 for
  // the forward and the input gradient, 2 * 14 * 14 (batch x positions) for the weight gradient:
  // the sums of |a||b| are the same convolution and gradients on absolute values, in float32.
  Generator gen(6);
  const Tensor x = randn({2, 32, 14, 14}, gen), w = randn({64, 32, 3, 3}, gen) * 0.2, b = randn({64}, gen);
  const Tensor g = randn({2, 64, 14, 14}, gen);
  struct Result {
    Tensor y, gx, gw, gb;
  };
  const auto run = [&](Precision precision, bool absolute) {
    Tensor xi = (absolute ? abs(x) : x).detach().requires_grad_(), wi = (absolute ? abs(w) : w).detach().requires_grad_();
    Tensor bi = b.detach().requires_grad_();
    const AutocastGuard scope(precision);
    // No ReLU: its mask could differ between the runs where an output is near 0 (the hand-worked
    // test above covers the fused ReLU under bf16).
    Tensor y = conv2d(xi, wi, absolute ? Tensor() : bi, {.padding = 1});
    y.backward(absolute ? abs(g) : g);
    return Result{y.detach(), xi.grad(), wi.grad(), absolute ? Tensor() : bi.grad()};
  };
  const Result fp32 = run(Precision::fp32, false), bf16 = run(Precision::bf16, false);
  const Result mag = run(Precision::fp32, true);
  const auto within = [](const Tensor& got, const Tensor& want, const Tensor& magnitude, double k) {
    const double rel = 2.0 / 256.0 + k / 16777216.0;
    const Tensor excess = abs(got - want) - magnitude * rel;
    CHECK(max(excess).item() <= 1e-6 * max(magnitude).item());  // float32 slack for the bias add
    CHECK(max(abs(got - want)).item() > 0.0);  // the products really ran in bf16
  };
  within(bf16.y, fp32.y, mag.y, 288);
  within(bf16.gx, fp32.gx, mag.gx, 576);  // 64 output channels x 9 taps
  within(bf16.gw, fp32.gw, mag.gw, 392);
  CHECK(bf16.gw.dtype() == Dtype::float32);
  // The bias gradient is a float32 sum, not a product: float32 rounding apart (the float32 path sums
  // it in another order, in the direct kernel's transpose), far inside bf16's 2^-8.
  const Tensor bias_bound = sum(abs(g), {0, 2, 3}) * (392.0 / 16777216.0);
  CHECK(max(abs(bf16.gb - fp32.gb) - bias_bound).item() <= 0.0);
  // The same products summed in float32 in another order: float32 rounding apart, k 2^-24 of the
  // sum of |a||b| for each of the two sums.
  const auto close = [](const Tensor& got, const Tensor& want, const Tensor& magnitude, double k) {
    CHECK(max(abs(got - want) - magnitude * (k / 16777216.0)).item() <= 1e-6 * max(magnitude).item());
  };
  if (kernels::conv2d_direct_bf16_preferred()) {
    // Natively the three products run the bf16 kernels (two products a step), emulated the FP32
    // direct kernels on rounded operands.
    const kernels::IsaOverride emulate(kernels::Isa::avx512);
    const Result emulated = run(Precision::bf16, false);
    close(bf16.y, emulated.y, mag.y, 2 * 288);
    close(bf16.gx, emulated.gx, mag.gx, 2 * 576);
    close(bf16.gw, emulated.gw, mag.gw, 2 * 392);
    CHECK(max(abs(bf16.y - emulated.y)).item() > 0.0);  // the native kernels ran
    CHECK(max(abs(bf16.gw - emulated.gw)).item() > 0.0);
  } else if (kernels::isa_supported(kernels::Isa::avx512_bf16)) {
    const kernels::IsaOverride emulate(kernels::Isa::avx512);  // conv2d runs the emulation's kernels
    const Result emulated = run(Precision::bf16, false);
    CHECK(values(emulated.y) == values(bf16.y));
    CHECK(values(emulated.gx) == values(bf16.gx));
    CHECK(values(emulated.gw) == values(bf16.gw));
  } else {
    MESSAGE("no AVX512_BF16 on this CPU: only the emulation ran");
  }
  if (kernels::conv2d_direct_available()) {
    // With AVX-512 the bf16 products run in the direct convolution (on rounded operands, or two by
    // two natively); under AVX2 in im2col + gemm_bf16.
    const kernels::IsaOverride avx2(kernels::Isa::avx2);
    const Result gemm_path = run(Precision::bf16, false);
    close(gemm_path.y, bf16.y, mag.y, 2 * 288);
    close(gemm_path.gx, bf16.gx, mag.gx, 2 * 576);
    close(gemm_path.gw, bf16.gw, mag.gw, 392);
  }
}
