// conv2d and nn::Conv2d against convolutions worked out by hand, and their error messages.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "core/autograd.h"
#include "kernels/conv.h"  // conv2d_direct_available
#include "kernels/isa.h"
#include "ladon.h"
#include "nn/activation.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/pool.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;

namespace {
// x[r][c] = 4r + c + 1 on a 4x4 plane: 1..16.
Tensor counting_4x4() { return arange(1.0, 17.0).reshape({1, 1, 4, 4}); }
}  // namespace

TEST_CASE("conv2d: one channel, 3x3 kernel on a 4x4 input, by hand") {
  const Tensor x = counting_4x4().requires_grad_();
  const Tensor w = tensor({1, 0, -1, 0, 1, 0, 2, 0, 0}, {1, 1, 3, 3}).requires_grad_();
  const Tensor b = tensor({0.5f}).requires_grad_();
  // out[r][c] = x[r][c] - x[r][c+2] + x[r+1][c+1] + 2 x[r+2][c] = 12r + 3c + 22, plus the bias.
  const Tensor y = conv2d(x, w, b);
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  CHECK(values(y) == std::vector<float>{22.5f, 25.5f, 34.5f, 37.5f});

  sum(y).backward();
  CHECK(values(b.grad()) == std::vector<float>{4});
  // dW[i][j] = sum over the 4 windows of x[r+i][c+j] = 16i + 4j + 14.
  CHECK(values(w.grad()) == std::vector<float>{14, 18, 22, 30, 34, 38, 46, 50, 54});
  // dx = the kernel stamped at the four window offsets (0,0), (0,1), (1,0), (1,1), summed.
  CHECK(values(x.grad()) == std::vector<float>{1, 1, -1, -1, 1, 2, 0, -1, 2, 3, 1, 0, 2, 2, 0, 0});
}

TEST_CASE("conv2d: stride 2 with zero padding 1") {
  // 3x3 input 1..9 padded to 5x5; 2x2 ones kernel at padded rows/cols {0, 2}:
  // {1}, {2, 3}, {4, 7}, {5, 6, 8, 9}.
  const Tensor x = arange(1.0, 10.0).reshape({1, 1, 3, 3});
  const Tensor y = conv2d(x, ones({1, 1, 2, 2}), Tensor(), {.stride = 2, .padding = 1});
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  CHECK(values(y) == std::vector<float>{1, 5, 11, 28});
}

TEST_CASE("conv2d: dilation 2 spreads the kernel taps") {
  // x[r][c] = 5r + c on 5x5; a dilated 2x2 ones kernel reads x[r][c] + x[r][c+2] + x[r+2][c] + x[r+2][c+2]
  // = 20r + 4c + 24 on a 3x3 output.
  const Tensor x = arange(0.0, 25.0).reshape({1, 1, 5, 5});
  const Tensor y = conv2d(x, ones({1, 1, 2, 2}), Tensor(), {.dilation = 2});
  CHECK(y.shape() == Shape{1, 1, 3, 3});
  CHECK(values(y) == std::vector<float>{24, 28, 32, 44, 48, 52, 64, 68, 72});
}

TEST_CASE("conv2d: channels mix per output, batch and groups") {
  // 1x1 kernels: out0 = x0 + 0.5 x1, out1 = -x0 + 2 x1 + 1 at every pixel.
  const Tensor x = tensor({1, 2, 3, 4, 10, 20, 30, 40, 2, 4, 6, 8, 20, 40, 60, 80}, {2, 2, 2, 2});
  const Tensor w = tensor({1, 0.5f, -1, 2}, {2, 2, 1, 1});
  const Tensor y = conv2d(x, w, tensor({0.0f, 1.0f}));
  CHECK(y.shape() == Shape{2, 2, 2, 2});
  CHECK(values(y) == std::vector<float>{6, 12, 18, 24, 20, 39, 58, 77, 12, 24, 36, 48, 39, 77, 115, 153});

  // groups = 2: output channel g sees only input channel g (x0 = 1s, x1 = 2s; weights 3 and 5).
  const Tensor xg = cat({ones({1, 1, 3, 3}), full({1, 1, 3, 3}, 2.0)}, 1);
  const Tensor yg = conv2d(xg, tensor({3.0f, 5.0f}, {2, 1, 1, 1}), Tensor(), {.padding = 1, .groups = 2});
  CHECK(yg.shape() == Shape{1, 2, 5, 5});
  CHECK(yg.narrow(2, 1, 3).narrow(3, 1, 3).contiguous().to_vector<float>() ==
        std::vector<float>{3, 3, 3, 3, 3, 3, 3, 3, 3, 10, 10, 10, 10, 10, 10, 10, 10, 10});
  CHECK(values(yg)[0] == 0.0f);  // the padded border sees only zeros
}

TEST_CASE("conv2d: images in several GEMM blocks and threads, with bias and ReLU, match direct loops") {
  // 40 x 40 outputs per image: more than one image's worth of columns per block, so each image is
  // its own block and two threads take several each. Checked against the definition, in double.
  const std::int64_t n = 5, c = 2, o = 3, h = 40, wd = 40;
  Generator gen(7);
  const Tensor x = randn({n, c, h, wd}, gen).requires_grad_();
  const Tensor w = randn({o, c, 3, 3}, gen).requires_grad_();
  const Tensor b = randn({o}, gen).requires_grad_();
  const Tensor r = randn({n, o, h, wd}, gen);  // the loss is sum(y * r)
  const Tensor y = conv2d(x, w, b, {.padding = 1}, Activation::relu);
  sum(y * r).backward();
  const std::vector<float> xv = values(x), wv = values(w), bv = values(b), rv = values(r), yv = values(y);
  const std::vector<float> gx = values(x.grad()), gw = values(w.grad()), gb = values(b.grad());
  std::vector<double> want_gx(xv.size(), 0.0), want_gw(wv.size(), 0.0), want_gb(bv.size(), 0.0);
  double worst_y = 0;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t oc = 0; oc < o; ++oc)
      for (std::int64_t py = 0; py < h; ++py)
        for (std::int64_t px = 0; px < wd; ++px) {
          double z = bv[static_cast<std::size_t>(oc)];
          auto tap = [&](std::int64_t ic, std::int64_t ky, std::int64_t kx, auto&& f) {
            const std::int64_t sy = py + ky - 1, sx = px + kx - 1;
            if (sy < 0 || sy >= h || sx < 0 || sx >= wd) return;
            f(static_cast<std::size_t>(((i * c + ic) * h + sy) * wd + sx),
              static_cast<std::size_t>(((oc * c + ic) * 3 + ky) * 3 + kx));
          };
          for (std::int64_t ic = 0; ic < c; ++ic)
            for (std::int64_t ky = 0; ky < 3; ++ky)
              for (std::int64_t kx = 0; kx < 3; ++kx)
                tap(ic, ky, kx, [&](std::size_t xi, std::size_t wi) { z += double(xv[xi]) * wv[wi]; });
          const std::size_t at = static_cast<std::size_t>(((i * o + oc) * h + py) * wd + px);
          worst_y = std::max(worst_y, std::fabs(std::max(z, 0.0) - yv[at]));
          if (z <= 0) continue;  // the ReLU passes no gradient
          const double g = rv[at];
          want_gb[static_cast<std::size_t>(oc)] += g;
          for (std::int64_t ic = 0; ic < c; ++ic)
            for (std::int64_t ky = 0; ky < 3; ++ky)
              for (std::int64_t kx = 0; kx < 3; ++kx)
                tap(ic, ky, kx, [&](std::size_t xi, std::size_t wi) {
                  want_gx[xi] += g * wv[wi];
                  want_gw[wi] += g * xv[xi];
                });
        }
  CHECK(worst_y < 1e-4);
  auto worst = [](const std::vector<float>& got, const std::vector<double>& want) {
    double e = 0;
    for (std::size_t i = 0; i < got.size(); ++i) e = std::max(e, std::fabs(got[i] - want[i]) / (1.0 + std::fabs(want[i])));
    return e;
  };
  CHECK(worst(gx, want_gx) < 1e-4);
  CHECK(worst(gw, want_gw) < 1e-4);
  CHECK(worst(gb, want_gb) < 1e-4);
}

TEST_CASE("conv2d with a fused ReLU gives relu(conv2d)'s values and gradients, with groups and stride") {
  Generator gen(11);
  const Tensor x = randn({2, 4, 5, 5}, gen).requires_grad_();
  const Tensor w = randn({4, 2, 3, 3}, gen).requires_grad_();
  const Tensor r = randn({2, 4, 2, 2}, gen);
  const ConvOptions opt{.stride = 2, .groups = 2};
  const Tensor fused = conv2d(x, w, Tensor(), opt, Activation::relu);
  sum(fused * r).backward();
  const std::vector<float> gx = values(x.grad()), gw = values(w.grad());
  x.zero_grad();
  w.zero_grad();
  const Tensor plain = relu(conv2d(x, w, Tensor(), opt));
  sum(plain * r).backward();
  CHECK(values(fused) == values(plain));
  CHECK(gx == values(x.grad()));
  CHECK(gw == values(w.grad()));
}

TEST_CASE("Sequential runs Conv2d then ReLU as one fused conv2d with the same values and gradients") {
  Generator gen(3);
  nn::Sequential fused(nn::Conv2d(2, 4, 3, {.padding = 1}, gen), nn::ReLU());
  const Tensor x = randn({3, 2, 6, 6}, gen);
  auto* conv = dynamic_cast<nn::Conv2d*>(&fused[0]);
  REQUIRE(conv != nullptr);
  const Tensor want = relu(conv2d(x, conv->weight, conv->bias, {.padding = 1}));
  const Tensor got = fused(x);
  CHECK(values(got) == values(want));
  // The fused op records one node (conv2d), not two.
  REQUIRE(got.grad_fn() != nullptr);
  CHECK(std::string(got.grad_fn()->name()) == "conv2d");
}

TEST_CASE("conv2d: a [C, H, W] input gives a [O, H', W'] output") {
  const Tensor y = conv2d(arange(1.0, 10.0).reshape({1, 3, 3}), ones({2, 1, 3, 3}));
  CHECK(y.shape() == Shape{2, 1, 1});
  CHECK(values(y) == std::vector<float>{45, 45});
}

TEST_CASE("conv2d: bad inputs name the op and the shapes") {
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 3, 4, 4}), zeros({2, 2, 3, 3})),
                       "conv2d: input [1, 3, 4, 4] has 3 channels but weight [2, 2, 3, 3] expects 2 "
                       "(in / groups = 2, groups = 1)",
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 1, 2, 2}), zeros({1, 1, 3, 3})),
                       "conv2d: kernel (3, 3) (dilation (1, 1)) is larger than the padded input (2, 2) of "
                       "[1, 1, 2, 2]",
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({4, 4}), zeros({1, 1, 3, 3})),
                       "conv2d: expected a [N, C, H, W] or [C, H, W] input, got [4, 4]", Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 3, 4, 4}), zeros({2, 1, 1, 1}), Tensor(), {.groups = 2}),
                       "conv2d: groups=2 must divide input channels 3 and output channels 2 (input [1, 3, 4, 4], "
                       "weight [2, 1, 1, 1])",
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 1, 3, 3}), zeros({2, 1, 1, 1}), zeros({3})),
                       "conv2d: bias must be [2] for weight [2, 1, 1, 1], got [3]", Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 1, 3, 3}), zeros({1, 1, 1, 1}), Tensor(), {.stride = 0}),
                       "conv2d: stride must be positive, got (0, 0)", Error);
}

TEST_CASE("Conv2d layer: shapes, names and PyTorch's default init bounds") {
  Generator gen(7);
  nn::Conv2d conv(4, 8, 3, {.stride = 2, .padding = 1, .groups = 2}, gen);
  CHECK(conv.weight.shape() == Shape{8, 2, 3, 3});
  CHECK(conv.in_channels() == 4);
  CHECK(conv.out_channels() == 8);
  CHECK(conv(zeros({2, 4, 9, 9})).shape() == Shape{2, 8, 5, 5});
  std::vector<std::string> names;
  for (auto& [name, t] : conv.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"weight", "bias"});
  // fan_in = 2 * 3 * 3 = 18: kaiming_uniform(a = sqrt(5)) and the bias both give bound 1/sqrt(18).
  const float bound = static_cast<float>(1.0 / std::sqrt(18.0));
  float largest = 0;
  for (float v : values(conv.weight)) largest = std::max(largest, std::abs(v));
  CHECK(largest <= bound);
  CHECK(largest > 0.8f * bound);  // 144 draws all inside 0.8 of the range: 0.8^144, negligible
  for (float v : values(conv.bias)) CHECK(std::abs(v) <= bound);
  CHECK(conv.weight.requires_grad());

  nn::Conv2d plain(1, 1, {2, 3}, {.bias = false});
  CHECK(plain.weight.shape() == Shape{1, 1, 2, 3});
  CHECK(plain.parameters().size() == 1);
  CHECK_THROWS_WITH_AS(nn::Conv2d(3, 4, 3, {.groups = 2}), "Conv2d: groups=2 must divide in=3 and out=4", Error);
}

TEST_CASE("a small CNN trains end to end: conv, relu, pool, flatten, linear") {
  nn::Sequential net{nn::Conv2d(1, 4, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(),
                     nn::Linear(4 * 2 * 2, 3)};
  const Tensor y = net(randn({2, 1, 4, 4}));
  CHECK(y.shape() == Shape{2, 3});
  sum(y).backward();
  for (auto& [name, t] : net.named_parameters()) CHECK_MESSAGE(t.grad().defined(), name);
  CHECK(net.named_parameters()[0].first == "0.weight");
}

namespace {
// conv2d_max_pool2x2 against max_pool2d(conv2d(...), 2): values, the three gradients and, for a
// batched input, that the one op ran when `fused` (else the two; an unbatched output's node is the
// reshape that drops the batch dim).
void check_fused_pool(const Shape& x_shape, const Shape& w_shape, const ConvOptions& options, Activation activation,
                      bool fused) {
  Generator gen(17);
  const Tensor x = randn(x_shape, gen).requires_grad_();
  const Tensor w = (randn(w_shape, gen) * 0.5).requires_grad_();
  const Tensor b = randn({w_shape[0]}, gen).requires_grad_();
  const Tensor got = conv2d_max_pool2x2(x, w, b, options, activation);
  REQUIRE(got.grad_fn() != nullptr);
  if (x_shape.size() == 4) CHECK(std::string(got.grad_fn()->name()) == (fused ? "conv2d_max_pool2x2" : "max_pool2d"));
  const Tensor r = randn(got.shape(), gen);
  sum(got * r).backward();
  const std::vector<float> gx = values(x.grad()), gw = values(w.grad()), gb = values(b.grad());
  for (const Tensor& t : {x, w, b}) t.zero_grad();
  const Tensor want = max_pool2d(conv2d(x, w, b, options, activation), 2);
  sum(want * r).backward();
  CHECK(got.shape() == want.shape());
  CHECK(values(got) == values(want));
  CHECK(gx == values(x.grad()));
  CHECK(gw == values(w.grad()));
  CHECK(gb == values(b.grad()));
  // Without a graph (no-grad: no winners' offsets kept) the same values, bit for bit.
  NoGradGuard no_grad;
  const Tensor plain = conv2d_max_pool2x2(x, w, b, options, activation);
  CHECK(plain.grad_fn() == nullptr);
  CHECK_FALSE(plain.requires_grad());
  CHECK(values(plain) == values(got));
}
}  // namespace

TEST_CASE("conv2d_max_pool2x2 gives max_pool2d(conv2d)'s values and gradients, fused or not") {
  const bool direct = kernels::conv2d_direct_weight_grad_available();  // fused: all three products direct
  for (const Activation activation : {Activation::relu, Activation::none}) {
    CAPTURE(activation == Activation::relu);
    // Odd height and width (the last row and column are pooled away), the CNN's two layers, an
    // unbatched input, a kernel without padding.
    check_fused_pool({3, 2, 7, 5}, {4, 2, 3, 3}, {.padding = 1}, activation, direct);
    check_fused_pool({3, 1, 28, 28}, {32, 1, 3, 3}, {.padding = 1}, activation, direct);
    check_fused_pool({2, 32, 14, 14}, {64, 32, 3, 3}, {.padding = 1}, activation, direct);
    check_fused_pool({3, 6, 6}, {5, 3, 2, 2}, {}, activation, direct);
    // Not fused: a stride, groups, a padding the direct input gradient does not take, no AVX-512.
    check_fused_pool({2, 2, 9, 9}, {3, 2, 3, 3}, {.stride = 2}, activation, false);
    check_fused_pool({2, 4, 6, 6}, {4, 2, 3, 3}, {.padding = 1, .groups = 2}, activation, false);
    check_fused_pool({2, 2, 6, 6}, {3, 2, 3, 3}, {.padding = 3}, activation, false);
    // AVX2: recorded, the two ops (im2col weight gradient); under no-grad the fused direct forward,
    // which check_fused_pool's last check compares with them bit for bit.
    const kernels::IsaOverride avx2(kernels::Isa::avx2);
    check_fused_pool({3, 2, 7, 5}, {4, 2, 3, 3}, {.padding = 1}, activation, false);
    check_fused_pool({3, 1, 28, 28}, {32, 1, 3, 3}, {.padding = 1}, activation, false);
    check_fused_pool({2, 32, 14, 14}, {64, 32, 3, 3}, {.padding = 1}, activation, false);
  }
  // Under bf16 autocast too (the direct kernels on bf16-rounded operands, both ways).
  const AutocastGuard bf16(Precision::bf16);
  check_fused_pool({2, 32, 14, 14}, {64, 32, 3, 3}, {.padding = 1}, Activation::relu, direct);
}

TEST_CASE("conv2d_max_pool2x2: bad inputs fail as conv2d's or max_pool2d's") {
  CHECK_THROWS_WITH_AS(conv2d_max_pool2x2(zeros({1, 3, 4, 4}), zeros({2, 2, 3, 3})),
                       "conv2d: input [1, 3, 4, 4] has 3 channels but weight [2, 2, 3, 3] expects 2 "
                       "(in / groups = 2, groups = 1)",
                       Error);
  // A 1 x 3 convolution output holds no 2x2 window.
  CHECK_THROWS_WITH_AS(conv2d_max_pool2x2(zeros({1, 1, 3, 5}), zeros({1, 1, 3, 3})),
                       "max_pool2d: kernel (2, 2) (dilation (1, 1)) is larger than the padded input (1, 3) of "
                       "[1, 1, 1, 3]",
                       Error);
}

TEST_CASE("Sequential runs Conv2d (then ReLU) then MaxPool2d(2) as one conv2d_max_pool2x2") {
  Generator gen(5);
  const Tensor x = randn({2, 2, 6, 6}, gen);
  const std::string fused_name = kernels::conv2d_direct_weight_grad_available() ? "conv2d_max_pool2x2" : "max_pool2d";
  nn::Sequential relu_pool(nn::Conv2d(2, 4, 3, {.padding = 1}, gen), nn::ReLU(), nn::MaxPool2d(2));
  nn::Sequential pool(nn::Conv2d(2, 4, 3, {.padding = 1}, gen), nn::MaxPool2d(2, {.stride = 2}));
  nn::Sequential other(nn::Conv2d(2, 4, 3, {.padding = 1}, gen), nn::ReLU(), nn::MaxPool2d(3));
  auto& c1 = dynamic_cast<nn::Conv2d&>(relu_pool[0]);
  auto& c2 = dynamic_cast<nn::Conv2d&>(pool[0]);
  auto& c3 = dynamic_cast<nn::Conv2d&>(other[0]);
  const Tensor y1 = relu_pool(x), y2 = pool(x), y3 = other(x);
  CHECK(std::string(y1.grad_fn()->name()) == fused_name);
  CHECK(std::string(y2.grad_fn()->name()) == fused_name);
  CHECK(std::string(y3.grad_fn()->name()) == "max_pool2d");
  CHECK(values(y1) == values(max_pool2d(conv2d(x, c1.weight, c1.bias, {.padding = 1}, Activation::relu), 2)));
  CHECK(values(y2) == values(max_pool2d(conv2d(x, c2.weight, c2.bias, {.padding = 1}), 2)));
  CHECK(values(y3) == values(max_pool2d(conv2d(x, c3.weight, c3.bias, {.padding = 1}, Activation::relu), 3)));
}
