// conv2d (direct on AVX-512 where it applies, im2col + GEMM otherwise), conv2d_max_pool2x2 (the
// direct convolution and its 2x2 max pool image by image), max/avg/adaptive-avg pooling, with their
// backwards.
#include "../../kernels/conv.h"

#include <algorithm>
#include <mutex>
#include <sstream>
#include <vector>

#include "../../kernels/gemm.h"
#include "../../kernels/gemm_bf16.h"  // round_to_bf16
#include "../../kernels/reduce.h"
#include "../autocast.h"
#include "../autograd.h"
#include "../ops.h"
#include "iterate.h"

namespace ladon {

namespace {

// Checks a 3-D or 4-D float32 image and returns it as [N, C, H, W] (a view).
Tensor as_batch(const char* op, const Tensor& x) {
  detail::check_float(op, x);
  LADON_CHECK(x.dim() == 3 || x.dim() == 4, op, "expected a [N, C, H, W] or [C, H, W] input, got ",
              shape_str(x.shape()));
  return x.dim() == 3 ? x.unsqueeze(0) : x;
}
Tensor unbatch(const Tensor& original, const Tensor& out) { return original.dim() == 3 ? out.squeeze(0) : out; }

std::int64_t out_size(std::int64_t in, std::int64_t pad, std::int64_t dilation, std::int64_t kernel,
                      std::int64_t stride) {
  return (in + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
}

std::string pair_str(Size2 s) {
  std::ostringstream out;  // (string concatenation trips a GCC 12 -Wrestrict false positive)
  out << '(' << s.h << ", " << s.w << ')';
  return out.str();
}

// Builds the window geometry and checks it: positive sizes, a kernel that fits the padded input.
kernels::Window2d window(const char* op, const Shape& x, Size2 kernel, Size2 stride, Size2 padding, Size2 dilation) {
  LADON_CHECK(kernel.h > 0 && kernel.w > 0, op, "kernel size must be positive, got ", pair_str(kernel));
  LADON_CHECK(stride.h > 0 && stride.w > 0, op, "stride must be positive, got ", pair_str(stride));
  LADON_CHECK(padding.h >= 0 && padding.w >= 0, op, "padding must be non-negative, got ", pair_str(padding));
  LADON_CHECK(dilation.h > 0 && dilation.w > 0, op, "dilation must be positive, got ", pair_str(dilation));
  kernels::Window2d w;
  w.channels = x[1];
  w.height = x[2];
  w.width = x[3];
  w.kernel_h = kernel.h;
  w.kernel_w = kernel.w;
  w.stride_h = stride.h;
  w.stride_w = stride.w;
  w.pad_h = padding.h;
  w.pad_w = padding.w;
  w.dilation_h = dilation.h;
  w.dilation_w = dilation.w;
  const std::int64_t span_h = dilation.h * (kernel.h - 1) + 1, span_w = dilation.w * (kernel.w - 1) + 1;
  LADON_CHECK(span_h <= x[2] + 2 * padding.h && span_w <= x[3] + 2 * padding.w, op, "kernel ", pair_str(kernel),
              " (dilation ", pair_str(dilation), ") is larger than the padded input ",
              pair_str({x[2] + 2 * padding.h, x[3] + 2 * padding.w}), " of ", shape_str(x));
  w.out_h = out_size(w.height, w.pad_h, w.dilation_h, w.kernel_h, w.stride_h);
  w.out_w = out_size(w.width, w.pad_w, w.dilation_w, w.kernel_w, w.stride_w);
  return w;
}

// One GEMM covers a block of images side by side, its n = images * out_h * out_w: up to
// kBlockColumns columns (a small 28 x 28 single-channel input gives a 3 x 3 weight gradient's GEMM
// n = 9 per image, far short of the register tiles), but a column block of at most kBlockFloats
// (256 KB), so it stays in L2 while the GEMM walks it once per row of register tiles. Measured on
// Zen 5 (bench/bench_conv): for conv 32 -> 64 on 14 x 14 one image per block (288 x 196 floats) is
// fastest, 10 images per block cost 20% more; for conv 1 -> 32 on 28 x 28, 1-5 images per block are
// within the noise.
constexpr std::int64_t kBlockColumns = 2048, kBlockFloats = 65536;

// The geometry of one convolution, shared by its forward and backward.
struct ConvPlan {
  kernels::Window2d w;
  std::int64_t groups = 1, n = 0, c = 0, o = 0;
  std::int64_t cg = 0, og = 0;  // channels per group, in and out
  std::int64_t k = 0;           // GEMM inner size per group: cg * kh * kw
  std::int64_t rows = 0;        // column block rows: c * kh * kw
  std::int64_t l = 0;           // output positions per image
  std::int64_t image = 0;       // input floats per image
  std::int64_t block = 1;       // images per column block
  // Direct convolution (kernels/conv_direct.cpp) for the forward, the weight gradient where the CPU
  // has its kernels (AVX-512) and the input gradient where its padding allows; im2col + GEMM otherwise.
  bool direct = false, direct_input_grad = false, direct_weight_grad = false;
  bool bf16 = false;  // bf16 autocast: the direct kernel's operands rounded to bf16

  ConvPlan(const kernels::Window2d& w_, std::int64_t groups_, std::int64_t n_, std::int64_t o_)
      : w(w_), groups(groups_), n(n_), c(w_.channels), o(o_) {
    cg = c / groups;
    og = o / groups;
    k = cg * w.kernel_h * w.kernel_w;
    rows = c * w.kernel_h * w.kernel_w;
    l = w.out_h * w.out_w;
    image = c * w.height * w.width;
    block = std::max<std::int64_t>(1, std::min(kBlockColumns / l, kBlockFloats / (rows * l)));
  }

  // Where the direct kernel applies: one group, stride and dilation 1, and a CPU with AVX-512 or
  // AVX2 + FMA (the forward and input gradient; the weight gradient is direct on AVX-512 only).
  // Measured on Zen 5, in one run against the im2col path (train_step cnn, batch 128, median of 3,
  // a loaded machine): 1.04x per step on 1 thread, 1.23x on 2; bench_conv conv 32 -> 64 forward
  // 74 -> 87 GFLOP/s. Under bf16 autocast too: on AMD's AVX512_BF16 the forward and both gradients
  // run the bf16 kernels (native_bf16: conv2d_direct_bf16, conv2d_direct_bf16_weight_grad, two
  // products a step). Elsewhere the FP32 kernels run on operands rounded to bf16 as they are made
  // (to_precision): the same exact products, summed in float32 one at a time. On the Intel Xeon
  // (AVX-512, where vdpbf16ps issues at a quarter of the FMA rate) that made the bf16 CNN step
  // 1.5x faster than im2col + gemm_bf16.
  void choose_direct(Precision precision) {
    bf16 = precision == Precision::bf16;
    direct = groups == 1 && w.stride_h == 1 && w.stride_w == 1 && w.dilation_h == 1 && w.dilation_w == 1 &&
             kernels::conv2d_direct_available();
    // The input gradient of a stride-1 convolution is the convolution of the output gradient,
    // padded by kernel - 1 - padding, with the weights' channel roles swapped and taps reversed.
    direct_input_grad = direct && w.pad_h <= w.kernel_h - 1 && w.pad_w <= w.kernel_w - 1;
    // The direct weight gradient's kernels are AVX-512 only: under AVX2 it runs im2col + GEMM.
    direct_weight_grad = direct && kernels::conv2d_direct_weight_grad_available();
  }
  // A direct kernel's operand buffer of n floats, made: rounded to bf16 under bf16 autocast.
  void to_precision(std::int64_t n, float* x) const {
    if (bf16) kernels::round_to_bf16(n, x);
  }
  // Whether the direct convolution g (the forward's or the input gradient's) runs the bf16 kernel:
  // bf16 autocast where it is preferred (AVX512_BF16 with a fast vdpbf16ps), and two channels or
  // more (one channel keeps its own kernel, whose pairs would be half zero). Elsewhere under bf16
  // the FP32 kernel runs on rounded operands: the same products, summed one at a time in float32
  // instead of two by two.
  bool native_bf16(const kernels::DirectConv& g) const {
    return bf16 && g.channels >= 2 && kernels::conv2d_direct_bf16_preferred();
  }
  kernels::DirectConv forward_direct() const {
    return {.channels = c, .out_channels = o, .kernel_h = w.kernel_h, .kernel_w = w.kernel_w,
            .padded_h = w.height + 2 * w.pad_h, .padded_w = w.width + 2 * w.pad_w};
  }
  std::int64_t grad_pad_h() const { return w.kernel_h - 1 - w.pad_h; }
  std::int64_t grad_pad_w() const { return w.kernel_w - 1 - w.pad_w; }
  kernels::DirectConv input_grad_direct() const {
    return {.channels = o, .out_channels = c, .kernel_h = w.kernel_h, .kernel_w = w.kernel_w,
            .padded_h = w.out_h + 2 * grad_pad_h(), .padded_w = w.out_w + 2 * grad_pad_w()};
  }

  // im2col of images [first, first + count) into one column block with row stride count * l.
  void fill_columns(const float* x, std::int64_t first, std::int64_t count, float* col) const {
    for (std::int64_t i = 0; i < count; ++i) kernels::im2col(w, x + (first + i) * image, col + i * l, count * l);
  }
};

}  // namespace

namespace {

// A convolution's checked input ([N, C, H, W] view) and plan, for conv2d and conv2d_max_pool2x2.
struct ConvSetup {
  Tensor x;
  ConvPlan plan;
  Precision precision;
};

ConvSetup conv_setup(const char* op, const Tensor& input, const Tensor& weight, const Tensor& bias,
                     const ConvOptions& options) {
  const Tensor x = as_batch(op, input);
  detail::check_float(op, weight);
  LADON_CHECK(weight.dim() == 4, op, "weight must be [out, in / groups, kh, kw], got ", shape_str(weight.shape()));
  const std::int64_t groups = options.groups;
  const std::int64_t n = x.shape()[0], c = x.shape()[1], o = weight.shape()[0];
  LADON_CHECK(groups > 0, op, "groups must be positive, got ", groups);
  LADON_CHECK(c % groups == 0 && o % groups == 0, op, "groups=", groups, " must divide input channels ", c,
              " and output channels ", o, " (input ", shape_str(x.shape()), ", weight ", shape_str(weight.shape()), ")");
  LADON_CHECK(weight.shape()[1] * groups == c, op, "input ", shape_str(x.shape()), " has ", c,
              " channels but weight ", shape_str(weight.shape()), " expects ", weight.shape()[1] * groups,
              " (in / groups = ", weight.shape()[1], ", groups = ", groups, ")");
  if (bias.defined()) {
    detail::check_float(op, bias);
    LADON_CHECK(bias.dim() == 1 && bias.shape()[0] == o, op, "bias must be [", o, "] for weight ",
                shape_str(weight.shape()), ", got ", shape_str(bias.shape()));
  }
  const kernels::Window2d w = window(op, x.shape(), {weight.shape()[2], weight.shape()[3]}, options.stride,
                                     options.padding, options.dilation);
  LADON_CHECK(w.out_h > 0 && w.out_w > 0, op, "output would be empty for input ", shape_str(x.shape()));
  ConvSetup setup{x, ConvPlan(w, groups, n, o), autocast_precision()};
  setup.plan.choose_direct(setup.precision);
  return setup;
}

// Floats in the padded input of a direct convolution g.
std::int64_t padded_size(const kernels::DirectConv& g) { return g.channels * g.padded_h * g.padded_w; }

// A direct convolution's packed weights: floats (rounded to bf16 values under emulated bf16), or the
// bf16 kernel's channel-pair words (plan.native_bf16).
struct DirectWeights {
  Tensor floats;
  std::vector<std::uint32_t> words;
};

// The direct convolution g of one padded image (padded_size(g) floats) into out: the bf16 kernel
// through `pairs` (sized here) when the weights are words, else the FP32 kernel on the image rounded
// in place to the plan's precision.
void run_direct(const ConvPlan& p, const kernels::DirectConv& g, float* padded, const DirectWeights& weights,
                const float* bias, Activation activation, std::vector<std::uint32_t>& pairs, float* out) {
  if (!weights.words.empty()) {
    pairs.resize(static_cast<std::size_t>(kernels::conv2d_direct_bf16_image_size(g)));
    kernels::conv2d_direct_bf16_pair(g, padded, pairs.data());
    kernels::conv2d_direct_bf16(g, pairs.data(), weights.words.data(), bias, activation, out);
    return;
  }
  p.to_precision(padded_size(g), padded);
  kernels::conv2d_direct(g, padded, weights.floats.data<float>(), bias, activation, out);
}

// One thread's share of a direct backward (plan.direct), image by image: the weight and bias
// gradients (packed as conv2d_direct_pack's weights, added into gw and gb by merge) and the input
// gradient (plan.direct_input_grad), with the buffers they reuse.
struct DirectBackward {
  const ConvPlan& p;
  const kernels::DirectConv gf, gd;  // the forward's convolution, the input gradient's
  const bool need_w, need_b;
  // One input channel: conv2d_single_channel_weight_grad reads the output gradient in place (under
  // bf16 rounding it in registers for the weight sums; Zen 4, bench_conv conv1 train under bf16: 26-29
  // GFLOP/s through the transposed path, 50 this way). Its lane sums hold the bias gradient too: wpart
  // serves both (computing the weight sums as well when only the bias is asked for, a rare case).
  const bool single_channel;
  Tensor wpart, bpart, grad_t, padded_x, padded;
  // Native bf16 (plan.native_bf16): the padded output gradient as channel pairs, and the weight
  // gradient's operands (conv2d_direct_bf16_weight_operands).
  std::vector<std::uint32_t> pairs, shifted, grad_pairs;

  DirectBackward(const ConvPlan& plan, bool need_w_, bool need_b_, bool need_x)
      : p(plan),
        gf(plan.forward_direct()),
        gd(plan.input_grad_direct()),
        need_w(need_w_),
        need_b(need_b_),
        single_channel(gf.channels == 1) {
    if (single_channel) {
      if (need_w || need_b) {
        wpart = zeros({kernels::conv2d_single_channel_grad_size(gf)});
        padded_x = empty({padded_size(gf)});
      }
    } else {
      if (need_w) wpart = zeros({kernels::conv2d_direct_packed_size(gf)});
      if (need_b) bpart = zeros({p.o});
      if (need_w || need_b) grad_t = empty({p.l * kernels::conv2d_direct_grad_ld(gf)});
      if (need_w) padded_x = empty({padded_size(gf)});
    }
    if (need_x) padded = empty({padded_size(gd)});
  }
  // Image x's weight and bias gradients from its output gradient g, zeroed where mask <= 0 (mask:
  // the ReLU's output, or null). The output gradient goes in masked and position-major (its channel
  // sums are the bias gradient), against the padded image; with one channel, as it is.
  void weights(const float* x, const float* g, const float* mask) {
    if (single_channel) {
      kernels::conv_pad(p.c, p.w.height, p.w.width, p.w.pad_h, p.w.pad_w, x, nullptr, padded_x.data<float>());
      p.to_precision(padded_x.numel(), padded_x.data<float>());
      kernels::conv2d_single_channel_weight_grad(gf, padded_x.data<float>(), g, mask, p.bf16, wpart.data<float>());
      return;
    }
    kernels::conv2d_direct_grad_transpose(gf, g, mask, grad_t.data<float>(), need_b ? bpart.data<float>() : nullptr);
    if (!need_w) return;
    kernels::conv_pad(p.c, p.w.height, p.w.width, p.w.pad_h, p.w.pad_w, x, nullptr, padded_x.data<float>());
    if (p.native_bf16(gf)) {
      shifted.resize(static_cast<std::size_t>(padded_size(gf)));
      grad_pairs.resize(static_cast<std::size_t>(kernels::conv2d_direct_bf16_grad_size(gf)));
      kernels::conv2d_direct_bf16_weight_operands(gf, padded_x.data<float>(), grad_t.data<float>(), shifted.data(),
                                                  grad_pairs.data());
      kernels::conv2d_direct_bf16_weight_grad(gf, shifted.data(), grad_pairs.data(), wpart.data<float>());
      return;
    }
    p.to_precision(grad_t.numel(), grad_t.data<float>());  // after the bias sums: float32
    p.to_precision(padded_x.numel(), padded_x.data<float>());
    kernels::conv2d_direct_weight_grad(gf, padded_x.data<float>(), grad_t.data<float>(), wpart.data<float>());
  }
  // The input gradient gx of one image: the output gradient, masked and padded, convolved with the
  // flipped weights (packed: conv2d_direct_pack's transpose_flip, in the plan's precision).
  void input(const float* g, const float* mask, const DirectWeights& packed, float* gx) {
    kernels::conv_pad(p.o, p.w.out_h, p.w.out_w, p.grad_pad_h(), p.grad_pad_w(), g, mask, padded.data<float>());
    run_direct(p, gd, padded.data<float>(), packed, nullptr, kernels::Activation::none, pairs, gx);
  }
  // Adds this thread's weight and bias gradients into gw and gb (under the caller's lock).
  void merge(float* gw, float* gb) const {
    if (single_channel) {
      if (need_w || need_b) kernels::conv2d_single_channel_grad_add(gf, wpart.data<float>(), gw, gb);
      return;
    }
    if (need_w) kernels::conv2d_direct_unpack_add(gf, wpart.data<float>(), gw);
    if (need_b)
      for (std::int64_t r = 0; r < p.o; ++r) gb[r] += bpart.data<float>()[r];
  }
};

// The packed weights of a direct convolution g (conv2d_direct_pack) in the plan's precision: the
// forward's (g = forward_direct()), or transposed and flipped for the input gradient's
// (g = input_grad_direct()).
DirectWeights pack_direct_weights(const ConvPlan& p, const kernels::DirectConv& g, bool transpose_flip,
                                  const float* weight) {
  DirectWeights packed{empty({kernels::conv2d_direct_packed_size(g)}), {}};
  kernels::conv2d_direct_pack(g, weight, transpose_flip, packed.floats.data<float>());
  if (p.native_bf16(g)) {
    packed.words.resize(static_cast<std::size_t>(kernels::conv2d_direct_bf16_packed_size(g)));
    kernels::conv2d_direct_bf16_pack(g, packed.floats.data<float>(), packed.words.data());
    packed.floats = Tensor();  // the words replace them
  } else {
    p.to_precision(packed.floats.numel(), packed.floats.data<float>());
  }
  return packed;
}

// The direct forward of one image x into out (o * l floats), through `padded`, a buffer of the
// padded image (padded_size(forward_direct()) floats), and `pairs` (run_direct's).
void direct_forward_image(const ConvPlan& p, const float* x, const DirectWeights& packed, const float* bias,
                          Activation activation, float* padded, std::vector<std::uint32_t>& pairs, float* out) {
  kernels::conv_pad(p.c, p.w.height, p.w.width, p.w.pad_h, p.w.pad_w, x, nullptr, padded);
  run_direct(p, p.forward_direct(), padded, packed, bias, activation, pairs, out);
}

}  // namespace

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, const ConvOptions& options,
              Activation activation) {
  const char* op = "conv2d";
  const ConvSetup setup = conv_setup(op, input, weight, bias, options);
  const Tensor& x = setup.x;
  const ConvPlan& plan = setup.plan;
  const kernels::Window2d& w = plan.w;
  const std::int64_t n = plan.n, o = plan.o, groups = plan.groups;
  // Under bf16 autocast the three products (forward, weight and input gradients) run in bf16 with
  // float32 sums, as matmul and linear do (core/autocast.h); the rest stays float32.
  const Precision precision = setup.precision;
  const GemmKernel gemm = gemm_kernel(precision);

  const Tensor xc = x.detach().contiguous(), wc = weight.detach().contiguous();
  const Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor out = empty({n, o, w.out_h, w.out_w});
  if (plan.direct) {
    const float* px = xc.data<float>();
    const float* pb = bc.defined() ? bc.data<float>() : nullptr;
    float* po = out.data<float>();
    const DirectWeights packed = pack_direct_weights(plan, plan.forward_direct(), false, wc.data<float>());
    const ConvPlan& p = plan;
    parallel_for(0, n, 1, [&](std::int64_t begin, std::int64_t end) {
      Tensor padded = empty({padded_size(p.forward_direct())});
      std::vector<std::uint32_t> pairs;
      for (std::int64_t i = begin; i < end; ++i)
        direct_forward_image(p, px + i * p.image, packed, pb, activation, padded.data<float>(), pairs,
                             po + i * p.o * p.l);
    });
  } else {
    const float* px = xc.data<float>();
    const float* pw = wc.data<float>();
    const float* pb = bc.defined() ? bc.data<float>() : nullptr;
    float* po = out.data<float>();
    const ConvPlan& p = plan;
    parallel_for(0, n, 1, [&](std::int64_t begin, std::int64_t end) {
      // This thread's column block and GEMM result, reused across its blocks of images.
      const std::int64_t cols = std::min(p.block, end - begin) * p.l;
      Tensor col_block = empty({p.rows * cols}), result_block = empty({o * cols});
      float* col = col_block.data<float>();
      float* result = result_block.data<float>();
      for (std::int64_t first = begin; first < end; first += p.block) {
        const std::int64_t count = std::min(p.block, end - first), ld = count * p.l;
        p.fill_columns(px, first, count, col);
        for (std::int64_t g = 0; g < groups; ++g)
          gemm(false, false, p.og, ld, p.k, 1.0f, pw + g * p.og * p.k, p.k, col + g * p.k * ld, ld, 0.0f,
               result + g * p.og * ld, ld, {});
        // Bias and activation on the way out: no extra pass over the output.
        kernels::conv_store(count, o, p.l, result, ld, pb, activation, po + first * o * p.l);
      }
    });
  }

  out = record(
      out, op, {x, weight, bias},
      [xc, wc, plan, activation, precision, y = activation == Activation::relu ? out.detach() : Tensor(),
       has_bias = bias.defined()](const Tensor& grad, const std::vector<bool>& need) {
        const GemmKernel gemm = gemm_kernel(precision);  // backward products in the forward's precision
        const Tensor gc = grad.contiguous();
        const ConvPlan& p = plan;
        const bool need_x = need[0], need_w = need[1], need_b = has_bias && need[2];
        const float* pg = gc.data<float>();
        const float* px = xc.data<float>();
        const float* pw = wc.data<float>();
        const float* py = activation == Activation::relu ? y.data<float>() : nullptr;
        const bool direct_x = need_x && p.direct_input_grad;
        // The direct weight gradient (with the bias gradient from its transposed output gradient).
        const bool direct_w = (need_w || need_b) && p.direct_weight_grad;
        // The output gradient gathered into the GEMMs' [o, ld] column block, for what im2col serves.
        const bool gather = (!direct_w && (need_w || need_b)) || (need_x && !direct_x);
        // The direct kernel writes every element of gx; col2im adds into it.
        Tensor gx = need_x ? (direct_x ? empty(xc.shape()) : zeros(xc.shape())) : Tensor();
        Tensor gw = need_w ? zeros(wc.shape()) : Tensor();
        Tensor gb = need_b ? zeros({p.o}) : Tensor();
        float* pgx = need_x ? gx.data<float>() : nullptr;
        const DirectWeights packed =
            direct_x ? pack_direct_weights(p, p.input_grad_direct(), true, pw) : DirectWeights{};
        std::mutex merge;
        // Per thread: its images' weight gradient (im2col: transposed, [k, og] per group, as the
        // long dimension, the block's positions, is the GEMM's inner one; direct: DirectBackward's)
        // and bias gradient, added up into gw and gb at the end.
        parallel_for(0, p.n, 1, [&](std::int64_t begin, std::int64_t end) {
          const std::int64_t cols = std::min(p.block, end - begin) * p.l;
          const bool columns = (need_w && !direct_w) || (need_x && !direct_x);
          Tensor col = columns ? empty({p.rows * cols}) : Tensor(), gblock = gather ? empty({p.o * cols}) : Tensor();
          const bool im2col_w = need_w && !direct_w, im2col_b = need_b && !direct_w;
          Tensor wpart = im2col_w ? zeros({p.groups * p.k * p.og}) : Tensor();
          Tensor bpart = im2col_b ? zeros({p.o}) : Tensor(), bsum = im2col_b ? empty({p.o}) : Tensor();
          DirectBackward direct(p, direct_w && need_w, direct_w && need_b, direct_x);
          float* pc = columns ? col.data<float>() : nullptr;
          float* pgb = gather ? gblock.data<float>() : nullptr;
          for (std::int64_t first = begin; first < end; first += p.block) {
            const std::int64_t count = std::min(p.block, end - first), ld = count * p.l;
            // The output gradient as [o, ld], the ReLU's mask applied on the way.
            if (gather)
              kernels::conv_gather(count, p.o, p.l, pg + first * p.o * p.l, py ? py + first * p.o * p.l : nullptr,
                                   pgb, ld);
            if (direct_w) {
              for (std::int64_t i = first; i < first + count; ++i)
                direct.weights(px + i * p.image, pg + i * p.o * p.l, py ? py + i * p.o * p.l : nullptr);
            } else {
              if (need_b) {
                kernels::sum_reduce(p.o, ld, 1, pgb, bsum.data<float>());
                float* acc = bpart.data<float>();
                for (std::int64_t r = 0; r < p.o; ++r) acc[r] += bsum.data<float>()[r];
              }
              if (need_w) {
                p.fill_columns(px, first, count, pc);
                for (std::int64_t g = 0; g < p.groups; ++g)
                  gemm(false, true, p.k, p.og, ld, 1.0f, pc + g * p.k * ld, ld, pgb + g * p.og * ld, ld, 1.0f,
                       wpart.data<float>() + g * p.k * p.og, p.og, {});
              }
            }
            if (direct_x) {
              for (std::int64_t i = first; i < first + count; ++i)
                direct.input(pg + i * p.o * p.l, py ? py + i * p.o * p.l : nullptr, packed, pgx + i * p.image);
            } else if (need_x) {
              // dcol = Wᵀ g per group, into the column block, folded back onto the images by col2im.
              for (std::int64_t g = 0; g < p.groups; ++g)
                gemm(true, false, p.k, ld, p.og, 1.0f, pw + g * p.og * p.k, p.k, pgb + g * p.og * ld, ld,
                     0.0f, pc + g * p.k * ld, ld, {});
              for (std::int64_t i = 0; i < count; ++i)
                kernels::col2im(p.w, pc + i * p.l, ld, pgx + (first + i) * p.image);
            }
          }
          std::lock_guard<std::mutex> lock(merge);
          direct.merge(need_w ? gw.data<float>() : nullptr, need_b ? gb.data<float>() : nullptr);
          if (im2col_w) {
            float* dst = gw.data<float>();
            const float* src = wpart.data<float>();
            for (std::int64_t g = 0; g < p.groups; ++g)
              for (std::int64_t r = 0; r < p.og; ++r)
                for (std::int64_t j = 0; j < p.k; ++j)
                  dst[(g * p.og + r) * p.k + j] += src[(g * p.k + j) * p.og + r];
          }
          if (im2col_b)
            for (std::int64_t r = 0; r < p.o; ++r) gb.data<float>()[r] += bpart.data<float>()[r];
        });
        return Grads{gx, gw, gb};
      });
  return unbatch(input, out);
}

Tensor conv2d_max_pool2x2(const Tensor& input, const Tensor& weight, const Tensor& bias, const ConvOptions& options,
                          Activation activation) {
  const ConvSetup setup = conv_setup("conv2d", input, weight, bias, options);
  const ConvPlan& plan = setup.plan;
  // The winners' offsets serve only the backward: none where record() will record nothing.
  const bool recording = grad_enabled() && any_requires_grad({setup.x, weight, bias});
  // Fused where the output holds a 2x2 window and the products run direct: the forward, and the
  // two gradients when they will be asked for (so under no-grad the AVX2 direct forward fuses
  // too, though its weight gradient is im2col + GEMM); elsewhere the two ops, with the same results.
  const bool direct_backward = plan.direct_input_grad && plan.direct_weight_grad;
  if (!plan.direct || (recording && !direct_backward) || plan.w.out_h < 2 || plan.w.out_w < 2)
    return max_pool2d(conv2d(input, weight, bias, options, activation), 2);
  kernels::Window2d pool;  // the 2x2 window over one image's conv output planes
  pool.height = plan.w.out_h;
  pool.width = plan.w.out_w;
  pool.kernel_h = pool.kernel_w = pool.stride_h = pool.stride_w = 2;
  pool.out_h = plan.w.out_h / 2;
  pool.out_w = plan.w.out_w / 2;
  const std::int64_t n = plan.n, o = plan.o, pooled_plane = pool.out_h * pool.out_w;

  const Tensor xc = setup.x.detach().contiguous(), wc = weight.detach().contiguous();
  const Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor out = empty({n, o, pool.out_h, pool.out_w});
  // Each window's winner as its tap, one byte (kernels::max_pool2d_2x2_taps), held in a float
  // tensor's bytes so the allocator counts them: 1/8 of int64 offsets. Intel Xeon (AVX-512), cnn
  // b128: the offsets' 9.6 MB per step were written and read back through memory.
  const std::int64_t windows = n * o * pooled_plane;
  Tensor taps = recording ? empty({(windows + 3) / 4}) : Tensor();
  {
    const float* px = xc.data<float>();
    const float* pb = bc.defined() ? bc.data<float>() : nullptr;
    float* po = out.data<float>();
    auto* pt = recording ? reinterpret_cast<std::uint8_t*>(taps.data<float>()) : nullptr;
    const DirectWeights packed = pack_direct_weights(plan, plan.forward_direct(), false, wc.data<float>());
    const ConvPlan& p = plan;
    parallel_for(0, n, 1, [&](std::int64_t begin, std::int64_t end) {
      // One image's convolution output at a time (100 KB for 32 x 28 x 28), pooled while in cache.
      Tensor padded = empty({padded_size(p.forward_direct())});
      Tensor conv_out = empty({p.o * p.l});
      std::vector<std::uint32_t> pairs;
      for (std::int64_t i = begin; i < end; ++i) {
        direct_forward_image(p, px + i * p.image, packed, pb, activation, padded.data<float>(), pairs,
                             conv_out.data<float>());
        if (pt)
          kernels::max_pool2d_2x2_taps(pool, p.o, conv_out.data<float>(), po + i * p.o * pooled_plane,
                                       pt + i * p.o * pooled_plane);
        else
          kernels::max_pool2d(pool, p.o, conv_out.data<float>(), po + i * p.o * pooled_plane, nullptr);
      }
    });
  }

  out = record(out, "conv2d_max_pool2x2", {setup.x, weight, bias},
               [xc, wc, plan, pool, taps, y = activation == Activation::relu ? out.detach() : Tensor(),
                has_bias = bias.defined()](const Tensor& grad, const std::vector<bool>& need) {
                 const Tensor gc = grad.contiguous();
                 const ConvPlan& p = plan;
                 const bool need_x = need[0], need_w = need[1], need_b = has_bias && need[2];
                 const std::int64_t pooled = p.o * pool.out_h * pool.out_w;  // per image
                 const float* pg = gc.data<float>();
                 const float* px = xc.data<float>();
                 const float* py = y.defined() ? y.data<float>() : nullptr;
                 const auto* pt = reinterpret_cast<const std::uint8_t*>(taps.data<float>());
                 Tensor gx = need_x ? empty(xc.shape()) : Tensor();
                 Tensor gw = need_w ? zeros(wc.shape()) : Tensor();
                 Tensor gb = need_b ? zeros({p.o}) : Tensor();
                 const DirectWeights packed =
                     need_x ? pack_direct_weights(p, p.input_grad_direct(), true, wc.data<float>()) : DirectWeights{};
                 std::mutex merge;
                 parallel_for(0, p.n, 1, [&](std::int64_t begin, std::int64_t end) {
                   DirectBackward direct(p, need_w, need_b, need_x);
                   // One image's gradient at the convolution's output: the pooled gradient at each window's
                   // argmax (masked by the ReLU there, which is the pooled value), 0 elsewhere.
                   Tensor dense = empty({p.o * p.l});
                   for (std::int64_t i = begin; i < end; ++i) {
                     kernels::max_pool2d_2x2_taps_backward(pool, p.o, pg + i * pooled, pt + i * pooled,
                                                           py ? py + i * pooled : nullptr, dense.data<float>());
                     if (need_w || need_b) direct.weights(px + i * p.image, dense.data<float>(), nullptr);
                     if (need_x) direct.input(dense.data<float>(), nullptr, packed, gx.data<float>() + i * p.image);
                   }
                   std::lock_guard<std::mutex> lock(merge);
                   direct.merge(need_w ? gw.data<float>() : nullptr, need_b ? gb.data<float>() : nullptr);
                 });
                 return Grads{gx, gw, gb};
               });
  return unbatch(input, out);
}

namespace {

struct PoolSetup {
  Tensor x;  // [N, C, H, W] view of the input
  kernels::Window2d w;
  std::int64_t planes = 0;
};

PoolSetup pool_setup(const char* op, const Tensor& input, Size2 kernel, const PoolOptions& options, bool dilated) {
  PoolSetup s;
  s.x = as_batch(op, input);
  const Size2 stride = options.stride == Size2(0) ? kernel : options.stride;
  if (!dilated)
    LADON_CHECK(options.dilation == Size2(1), op, "dilation is not supported, got ", pair_str(options.dilation));
  s.w = window(op, s.x.shape(), kernel, stride, options.padding, dilated ? options.dilation : Size2(1));
  LADON_CHECK(2 * options.padding.h <= kernel.h && 2 * options.padding.w <= kernel.w, op, "padding ",
              pair_str(options.padding), " must be at most half the kernel ", pair_str(kernel));
  s.planes = s.x.shape()[0] * s.x.shape()[1];
  return s;
}

// Splits planes across threads; each call handles a contiguous range of planes.
constexpr std::int64_t kPoolGrain = 16384;  // input elements per chunk
std::int64_t plane_grain(const kernels::Window2d& w) {
  return std::max<std::int64_t>(1, kPoolGrain / std::max<std::int64_t>(1, w.height * w.width));
}

}  // namespace

namespace {

// max_pool2d with its winners' offsets, or (with_indices false: only where nothing will be
// recorded) without them: the values alone, a cheaper kernel.
ValuesIndices max_pool2d_impl(const Tensor& input, Size2 kernel, const PoolOptions& options, bool with_indices) {
  const char* op = "max_pool2d";
  const PoolSetup s = pool_setup(op, input, kernel, options, true);
  const kernels::Window2d w = s.w;
  const Tensor xc = s.x.detach().contiguous();
  const Shape shape{s.x.shape()[0], s.x.shape()[1], w.out_h, w.out_w};
  Tensor out = empty(shape);
  const std::int64_t in_plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  if (!with_indices) {
    const float* px = xc.data<float>();
    float* po = out.data<float>();
    parallel_for(0, s.planes, plane_grain(w), [&](std::int64_t begin, std::int64_t end) {
      kernels::max_pool2d(w, end - begin, px + begin * in_plane, po + begin * out_plane, nullptr);
    });
    return {unbatch(input, out), Tensor()};
  }
  Tensor indices = empty(shape, Dtype::int64);
  {
    const float* px = xc.data<float>();
    float* po = out.data<float>();
    std::int64_t* pi = indices.data<std::int64_t>();
    parallel_for(0, s.planes, plane_grain(w), [&](std::int64_t begin, std::int64_t end) {
      kernels::max_pool2d(w, end - begin, px + begin * in_plane, po + begin * out_plane, pi + begin * out_plane);
    });
  }
  out = record(out, op, {s.x},
               [indices, w, shape = s.x.shape(), planes = s.planes, in_plane, out_plane](const Tensor& grad,
                                                                                         const std::vector<bool>&) {
                 const Tensor gc = grad.contiguous();
                 // The 2x2 kernel writes every element of gx; the general one adds at the argmaxes.
                 const bool two_by_two = kernels::max_pool2d_is_2x2(w);
                 Tensor gx = two_by_two ? empty(shape) : zeros(shape);
                 const float* pg = gc.data<float>();
                 const std::int64_t* pi = indices.data<std::int64_t>();
                 float* pgx = gx.data<float>();
                 parallel_for(0, planes, plane_grain(w), [&](std::int64_t begin, std::int64_t end) {
                   if (two_by_two)
                     kernels::max_pool2d_2x2_backward(w, end - begin, pg + begin * out_plane, pi + begin * out_plane,
                                                      nullptr, pgx + begin * in_plane);
                   else
                     kernels::max_pool2d_backward(end - begin, in_plane, out_plane, pg + begin * out_plane,
                                                  pi + begin * out_plane, pgx + begin * in_plane);
                 });
                 return Grads{gx};
               });
  return {unbatch(input, out), unbatch(input, indices)};
}

}  // namespace

ValuesIndices max_pool2d_with_indices(const Tensor& input, Size2 kernel, const PoolOptions& options) {
  return max_pool2d_impl(input, kernel, options, true);
}

Tensor max_pool2d(const Tensor& x, Size2 kernel, const PoolOptions& options) {
  // The indices serve only the backward: none when it would not be recorded (no-grad, or an input
  // that needs no gradient), as record() decides.
  return max_pool2d_impl(x, kernel, options, grad_enabled() && x.requires_grad()).values;
}

Tensor avg_pool2d(const Tensor& input, Size2 kernel, const PoolOptions& options) {
  const char* op = "avg_pool2d";
  const PoolSetup s = pool_setup(op, input, kernel, options, false);
  const kernels::Window2d w = s.w;
  const bool include_pad = options.count_include_pad;
  const Tensor xc = s.x.detach().contiguous();
  Tensor out = empty({s.x.shape()[0], s.x.shape()[1], w.out_h, w.out_w});
  const std::int64_t in_plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  {
    const float* px = xc.data<float>();
    float* po = out.data<float>();
    parallel_for(0, s.planes, plane_grain(w), [&](std::int64_t begin, std::int64_t end) {
      kernels::avg_pool2d(w, end - begin, include_pad, px + begin * in_plane, po + begin * out_plane);
    });
  }
  out = record(out, op, {s.x}, [w, include_pad, shape = s.x.shape(), planes = s.planes](const Tensor& grad,
                                                                                      const std::vector<bool>&) {
    const Tensor gc = grad.contiguous();
    Tensor gx = zeros(shape);
    const std::int64_t in_plane = w.height * w.width, out_plane = w.out_h * w.out_w;
    const float* pg = gc.data<float>();
    float* pgx = gx.data<float>();
    parallel_for(0, planes, plane_grain(w), [&](std::int64_t begin, std::int64_t end) {
      kernels::avg_pool2d_backward(w, end - begin, include_pad, pg + begin * out_plane, pgx + begin * in_plane);
    });
    return Grads{gx};
  });
  return unbatch(input, out);
}

Tensor adaptive_avg_pool2d(const Tensor& input, Size2 output_size) {
  const char* op = "adaptive_avg_pool2d";
  const Tensor x = as_batch(op, input);
  LADON_CHECK(output_size.h > 0 && output_size.w > 0, op, "output size must be positive, got ", pair_str(output_size));
  LADON_CHECK(x.shape()[2] > 0 && x.shape()[3] > 0, op, "input ", shape_str(x.shape()), " has an empty plane");
  kernels::Window2d w;
  w.height = x.shape()[2];
  w.width = x.shape()[3];
  w.out_h = output_size.h;
  w.out_w = output_size.w;
  const std::int64_t planes = x.shape()[0] * x.shape()[1];
  const Tensor xc = x.detach().contiguous();
  Tensor out = empty({x.shape()[0], x.shape()[1], w.out_h, w.out_w});
  const std::int64_t in_plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  {
    const float* px = xc.data<float>();
    float* po = out.data<float>();
    parallel_for(0, planes, plane_grain(w), [&](std::int64_t begin, std::int64_t end) {
      kernels::adaptive_avg_pool2d(w, end - begin, px + begin * in_plane, po + begin * out_plane);
    });
  }
  out = record(out, op, {x}, [w, planes, shape = x.shape()](const Tensor& grad, const std::vector<bool>&) {
    const Tensor gc = grad.contiguous();
    Tensor gx = zeros(shape);
    const std::int64_t in_plane = w.height * w.width, out_plane = w.out_h * w.out_w;
    const float* pg = gc.data<float>();
    float* pgx = gx.data<float>();
    parallel_for(0, planes, plane_grain(w), [&](std::int64_t begin, std::int64_t end) {
      kernels::adaptive_avg_pool2d_backward(w, end - begin, pg + begin * out_plane, pgx + begin * in_plane);
    });
    return Grads{gx};
  });
  return unbatch(input, out);
}

}  // namespace ladon
