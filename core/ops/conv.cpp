// conv2d (im2col + GEMM), max/avg/adaptive-avg pooling, with their backwards.
#include <mutex>
#include <sstream>

#include "../../kernels/conv.h"
#include "../../kernels/gemm.h"
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

// Per-thread scratch for one image's column buffer, reused across the images of a chunk.
struct Columns {
  std::vector<float> buffer;
  float* get(std::int64_t n) {
    if (static_cast<std::int64_t>(buffer.size()) < n) buffer.resize(static_cast<std::size_t>(n));
    return buffer.data();
  }
};

// A 1x1 kernel with unit stride and no padding reads the image itself as its column matrix.
bool is_pointwise(const kernels::Window2d& w) {
  return w.kernel_h == 1 && w.kernel_w == 1 && w.stride_h == 1 && w.stride_w == 1 && w.pad_h == 0 && w.pad_w == 0;
}

}  // namespace

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, const ConvOptions& options) {
  const char* op = "conv2d";
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

  const std::int64_t cg = c / groups, og = o / groups;
  const std::int64_t k = cg * w.kernel_h * w.kernel_w;  // GEMM inner size per group
  const std::int64_t l = w.out_h * w.out_w;              // output positions
  const std::int64_t image = c * w.height * w.width;
  const bool pointwise = is_pointwise(w);

  const Tensor xc = x.detach().contiguous(), wc = weight.detach().contiguous();
  const Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor out = empty({n, o, w.out_h, w.out_w});
  {
    const float* px = xc.data<float>();
    const float* pw = wc.data<float>();
    const float* pb = bc.defined() ? bc.data<float>() : nullptr;
    float* po = out.data<float>();
    parallel_for(0, n, 1, [&](std::int64_t begin, std::int64_t end) {
      Columns scratch;
      for (std::int64_t i = begin; i < end; ++i) {
        const float* col = px + i * image;
        if (!pointwise) {
          float* buf = scratch.get(c * w.kernel_h * w.kernel_w * l);
          kernels::im2col(w, px + i * image, buf);
          col = buf;
        }
        for (std::int64_t g = 0; g < groups; ++g)
          kernels::sgemm(false, false, og, l, k, 1.0f, pw + g * og * k, k, col + g * k * l, l, 0.0f,
                         po + (i * o + g * og) * l, l);
        if (pb)
          for (std::int64_t j = 0; j < o; ++j) {
            float* row = po + (i * o + j) * l;
            for (std::int64_t p = 0; p < l; ++p) row[p] += pb[j];
          }
      }
    });
  }

  out = record(out, op, {x, weight, bias},
               [xc, wc, w, groups, has_bias = bias.defined()](const Tensor& grad, const std::vector<bool>& need) {
                 const Tensor gc = grad.contiguous();
                 const std::int64_t n = xc.shape()[0], c = xc.shape()[1], o = wc.shape()[0];
                 const std::int64_t cg = c / groups, og = o / groups;
                 const std::int64_t k = cg * w.kernel_h * w.kernel_w, l = w.out_h * w.out_w;
                 const std::int64_t image = c * w.height * w.width;
                 const bool pointwise = is_pointwise(w);
                 const float* pg = gc.data<float>();
                 const float* px = xc.data<float>();
                 const float* pw = wc.data<float>();
                 Grads grads(3);
                 if (need[0]) {
                   // dcol = Wᵀ g per group, folded back onto the image by col2im.
                   Tensor gx = zeros(xc.shape());
                   float* pgx = gx.data<float>();
                   parallel_for(0, n, 1, [&](std::int64_t begin, std::int64_t end) {
                     Columns scratch;
                     for (std::int64_t i = begin; i < end; ++i) {
                       float* dcol = pointwise ? pgx + i * image : scratch.get(c * w.kernel_h * w.kernel_w * l);
                       for (std::int64_t g = 0; g < groups; ++g)
                         kernels::sgemm(true, false, k, l, og, 1.0f, pw + g * og * k, k, pg + (i * o + g * og) * l, l,
                                        0.0f, dcol + g * k * l, l);
                       if (!pointwise) kernels::col2im(w, dcol, pgx + i * image);
                     }
                   });
                   grads[0] = gx;
                 }
                 if (need[1]) {
                   // dW = sum over images of g colᵀ; each chunk sums its images, then chunks add up.
                   Tensor gw = zeros(wc.shape());
                   float* pgw = gw.data<float>();
                   std::mutex merge;
                   parallel_for(0, n, 1, [&](std::int64_t begin, std::int64_t end) {
                     Columns scratch;
                     std::vector<float> partial(static_cast<std::size_t>(o * k), 0.0f);
                     for (std::int64_t i = begin; i < end; ++i) {
                       const float* col = px + i * image;
                       if (!pointwise) {
                         float* buf = scratch.get(c * w.kernel_h * w.kernel_w * l);
                         kernels::im2col(w, px + i * image, buf);
                         col = buf;
                       }
                       for (std::int64_t g = 0; g < groups; ++g)
                         kernels::sgemm(false, true, og, k, l, 1.0f, pg + (i * o + g * og) * l, l, col + g * k * l, l,
                                        1.0f, partial.data() + g * og * k, k);
                     }
                     std::lock_guard<std::mutex> lock(merge);
                     for (std::int64_t j = 0; j < o * k; ++j) pgw[j] += partial[static_cast<std::size_t>(j)];
                   });
                   grads[1] = gw;
                 }
                 if (has_bias && need[2]) grads[2] = sum(gc, {0, 2, 3});
                 return grads;
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

ValuesIndices max_pool2d_with_indices(const Tensor& input, Size2 kernel, const PoolOptions& options) {
  const char* op = "max_pool2d";
  const PoolSetup s = pool_setup(op, input, kernel, options, true);
  const kernels::Window2d w = s.w;
  const Tensor xc = s.x.detach().contiguous();
  const Shape shape{s.x.shape()[0], s.x.shape()[1], w.out_h, w.out_w};
  Tensor out = empty(shape);
  Tensor indices = empty(shape, Dtype::int64);
  const std::int64_t in_plane = w.height * w.width, out_plane = w.out_h * w.out_w;
  {
    const float* px = xc.data<float>();
    float* po = out.data<float>();
    std::int64_t* pi = indices.data<std::int64_t>();
    parallel_for(0, s.planes, plane_grain(w), [&](std::int64_t begin, std::int64_t end) {
      kernels::max_pool2d(w, end - begin, px + begin * in_plane, po + begin * out_plane, pi + begin * out_plane);
    });
  }
  out = record(out, op, {s.x}, [indices, shape = s.x.shape(), planes = s.planes, in_plane, out_plane](
                                   const Tensor& grad, const std::vector<bool>&) {
    const Tensor gc = grad.contiguous();
    Tensor gx = zeros(shape);
    const float* pg = gc.data<float>();
    const std::int64_t* pi = indices.data<std::int64_t>();
    float* pgx = gx.data<float>();
    parallel_for(0, planes, std::max<std::int64_t>(1, kPoolGrain / std::max<std::int64_t>(1, in_plane)),
                 [&](std::int64_t begin, std::int64_t end) {
                   kernels::max_pool2d_backward(end - begin, in_plane, out_plane, pg + begin * out_plane,
                                                pi + begin * out_plane, pgx + begin * in_plane);
                 });
    return Grads{gx};
  });
  return {unbatch(input, out), unbatch(input, indices)};
}

Tensor max_pool2d(const Tensor& x, Size2 kernel, const PoolOptions& options) {
  return max_pool2d_with_indices(x, kernel, options).values;
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
