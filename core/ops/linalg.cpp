// matmul: 2-D, batched 3-D, and 3-D by a shared 2-D matrix; linear; mix (a gated mixture). Transposed views reach the
// GEMM kernel as a transpose flag, never as a copy.
#include "../../kernels/gemm.h"
#include "../../kernels/reduce.h"
#include "../autocast.h"
#include "../autograd.h"
#include "../ops.h"
#include "iterate.h"

namespace ladon {

namespace {

// One matrix operand as the GEMM kernel wants it.
struct Operand {
  Tensor storage_owner;  // keeps a copy alive when one was needed
  const float* data = nullptr;
  std::int64_t batch_stride = 0;
  std::int64_t ld = 0;
  bool trans = false;
};

// Describes the last two dims of t (rows x cols) for GEMM, copying only if neither dim is unit-stride.
Operand operand(const Tensor& t) {
  const std::int64_t r = t.dim() - 2, c = t.dim() - 1;
  const std::int64_t rows = t.shape()[r], cols = t.shape()[c];
  Operand op;
  const Shape& st = t.strides();
  if (st[c] == 1 && st[r] >= std::max<std::int64_t>(cols, 1)) {
    op.storage_owner = t;
    op.ld = st[r];
  } else if (st[r] == 1 && st[c] >= std::max<std::int64_t>(rows, 1)) {
    op.storage_owner = t;
    op.ld = st[c];
    op.trans = true;
  } else {
    op.storage_owner = t.detach().contiguous();
    op.ld = std::max<std::int64_t>(cols, 1);
  }
  if (t.dim() == 3) op.batch_stride = op.storage_owner.strides()[0];
  op.data = op.storage_owner.data<float>();
  return op;
}

// Below this many multiply-adds one thread is faster than two.
constexpr std::int64_t kParallelGemmWork = 1 << 20;

// out[b] = a[b] @ b[b] for contiguous out of shape [batch, m, n] through `gemm` (the kernel of the
// op's precision), with the epilogue (bias over the n columns) applied by the GEMM.
void gemm_batched(GemmKernel gemm, std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k,
                  const Operand& a, const Operand& b, float* out, const kernels::Epilogue& epilogue = {}) {
  if (batch >= num_threads() && batch > 1) {
    parallel_for(0, batch, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i)
        gemm(a.trans, b.trans, m, n, k, 1.0f, a.data + i * a.batch_stride, a.ld, b.data + i * b.batch_stride,
                       b.ld, 0.0f, out + i * m * n, n, epilogue);
    });
    return;
  }
  for (std::int64_t i = 0; i < batch; ++i) {
    const float* pa = a.data + i * a.batch_stride;
    const float* pb = b.data + i * b.batch_stride;
    float* pc = out + i * m * n;
    const bool split_rows = m >= n;
    const std::int64_t extent = split_rows ? m : n;
    const std::int64_t grain = std::max<std::int64_t>(16, extent * kParallelGemmWork / std::max<std::int64_t>(m * n * k, 1));
    parallel_for(0, extent, grain, [&](std::int64_t begin, std::int64_t end) {
      if (split_rows) {
        const float* rows_a = a.trans ? pa + begin : pa + begin * a.ld;
        gemm(a.trans, b.trans, end - begin, n, k, 1.0f, rows_a, a.ld, pb, b.ld, 0.0f, pc + begin * n, n,
                       epilogue);
      } else {
        const float* cols_b = b.trans ? pb + begin * b.ld : pb + begin;
        kernels::Epilogue columns = epilogue;
        if (columns.bias != nullptr) columns.bias += begin;
        gemm(a.trans, b.trans, m, end - begin, k, 1.0f, pa, a.ld, cols_b, b.ld, 0.0f, pc + begin, n,
                       columns);
      }
    });
  }
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_float("matmul", a);
  detail::check_float("matmul", b);
  LADON_CHECK((a.dim() == 2 || a.dim() == 3) && (b.dim() == 2 || b.dim() == 3) && !(a.dim() == 2 && b.dim() == 3),
              "matmul", shape_str(a.shape()), " @ ", shape_str(b.shape()),
              ": supports 2-D @ 2-D, 3-D @ 3-D and 3-D @ 2-D");
  LADON_CHECK(a.shape().back() == b.shape()[b.dim() - 2], "matmul", shape_str(a.shape()), " @ ", shape_str(b.shape()),
              ": inner sizes differ (", a.shape().back(), " vs ", b.shape()[b.dim() - 2], ")");
  if (a.dim() == 3 && b.dim() == 2) {
    // One big GEMM over the flattened batch beats a loop of small ones.
    const std::int64_t batch = a.shape()[0], m = a.shape()[1];
    return matmul(a.reshape({batch * m, a.shape()[2]}), b).reshape({batch, m, b.shape()[1]});
  }
  const std::int64_t batch = a.dim() == 3 ? a.shape()[0] : 1;
  if (a.dim() == 3)
    LADON_CHECK(a.shape()[0] == b.shape()[0], "matmul", shape_str(a.shape()), " @ ", shape_str(b.shape()),
                ": batch sizes differ (", a.shape()[0], " vs ", b.shape()[0], ")");
  const std::int64_t m = a.shape()[a.dim() - 2], k = a.shape().back(), n = b.shape().back();
  Tensor out = empty(a.dim() == 3 ? Shape{batch, m, n} : Shape{m, n});
  const Precision precision = autocast_precision();
  gemm_batched(gemm_kernel(precision), batch, m, n, k, operand(a), operand(b), out.data<float>());
  return record(out, "matmul", {a, b}, [a = a.detach(), b = b.detach(), precision](const Tensor& g,
                                                                                   const std::vector<bool>& need) {
    const AutocastGuard forward_precision(precision);  // backward products in the forward's precision
    const std::int64_t r = a.dim() - 2, c = a.dim() - 1;
    // Each gradient is made in its operand's layout: for a transposed view (Linear's weight.t())
    // the product is computed transposed, so the view's backward hands the weight a contiguous
    // gradient instead of one that must be copied column by column.
    const auto product_like = [r, c](const Tensor& operand, const Tensor& x, const Tensor& y) {
      const bool transposed = operand.strides()[r] == 1 && operand.strides()[c] != 1;
      return transposed ? matmul(y.transpose(r, c), x.transpose(r, c)).transpose(r, c) : matmul(x, y);
    };
    return Grads{need[0] ? product_like(a, g, b.transpose(r, c)) : Tensor(),
                 need[1] ? product_like(b, a.transpose(r, c), g) : Tensor()};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Activation activation) {
  const char* op = "linear";
  detail::check_float(op, x);
  detail::check_float(op, weight);
  LADON_CHECK(x.dim() == 2 && weight.dim() == 2 && x.shape()[1] == weight.shape()[1], op, "input ",
              shape_str(x.shape()), " and weight ", shape_str(weight.shape()),
              ": expects input [batch, in] and weight [out, in]");
  const std::int64_t batch = x.shape()[0], in = x.shape()[1], out_features = weight.shape()[0];
  Tensor b;  // contiguous bias, read by the epilogue
  if (bias.defined()) {
    detail::check_float(op, bias);
    LADON_CHECK(bias.shape() == Shape{out_features}, op, "bias ", shape_str(bias.shape()), " must be [", out_features,
                "] for weight ", shape_str(weight.shape()));
    b = bias.detach().contiguous();
  }
  Tensor y = empty({batch, out_features});
  const Precision precision = autocast_precision();
  gemm_batched(gemm_kernel(precision), 1, batch, out_features, in, operand(x), operand(weight.t()), y.data<float>(),
               {.bias = b.defined() ? b.data<float>() : nullptr, .activation = activation});
  std::vector<Tensor> inputs = {x, weight};
  if (bias.defined()) inputs.push_back(bias);
  return record(y, op, std::move(inputs),
                [x = x.detach(), w = weight.detach(), y = y.detach(), activation, precision](
                    const Tensor& g, const std::vector<bool>& need) {
                  const AutocastGuard forward_precision(precision);  // dX and dW products as in the forward
                  Tensor dy = g;
                  if (activation == Activation::relu) dy = detail::relu_grad(y, g);
                  // dW in the weight's layout, as matmul does: a transposed view (an [in, out]
                  // matrix passed as .t(), like ExpertBank's) gets its gradient without a strided copy.
                  const bool transposed = w.strides()[0] == 1 && w.strides()[1] != 1;
                  Tensor dw;
                  if (need[1]) dw = transposed ? matmul(x.t(), dy).t() : matmul(dy.t(), x);
                  Grads grads = {need[0] ? matmul(dy, w) : Tensor(), dw};
                  if (need.size() > 2) grads.push_back(need[2] ? sum(dy, {0}) : Tensor());
                  return grads;
                });
}

namespace {
// Rows per thread of mix and its backward: at least ~16k multiply-adds, so a [2048, 4, 64] mixture
// takes both threads and a handful of rows stays on one.
std::int64_t mix_grain(std::int64_t experts, std::int64_t width) {
  return std::max<std::int64_t>(1, (std::int64_t{1} << 14) / std::max<std::int64_t>(experts * width, 1));
}
}  // namespace

Tensor mix(const Tensor& weights, const Tensor& values) {
  const char* op = "mix";
  detail::check_float(op, weights);
  detail::check_float(op, values);
  LADON_CHECK(weights.dim() == 2 && values.dim() == 3 && weights.shape()[0] == values.shape()[0] &&
                  weights.shape()[1] == values.shape()[1],
              op, "weights ", shape_str(weights.shape()), " and values ", shape_str(values.shape()),
              ": expects weights [batch, n] and values [batch, n, width]");
  const std::int64_t rows = values.shape()[0], n = values.shape()[1], width = values.shape()[2];
  // A gate's column of [batch, gates, n] weights is read in place; anything else is made contiguous.
  const Tensor w = weights.strides()[1] == 1 ? weights.detach() : weights.detach().contiguous();
  const Tensor x = values.detach().contiguous();
  const std::int64_t w_stride = w.strides()[0];
  Tensor out = empty({rows, width});
  {
    const float* pw = w.data<float>();
    const float* px = x.data<float>();
    float* po = out.data<float>();
    parallel_for(0, rows, mix_grain(n, width), [&](std::int64_t begin, std::int64_t end) {
      kernels::mix(end - begin, n, width, pw + begin * w_stride, w_stride, px + begin * n * width, po + begin * width);
    });
  }
  return record(out, op, {weights, values}, [w, x](const Tensor& g, const std::vector<bool>&) {
    const std::int64_t rows = x.shape()[0], n = x.shape()[1], width = x.shape()[2];
    const Tensor gc = g.contiguous();
    Tensor dw = empty({rows, n}), dx = empty(x.shape());
    const std::int64_t w_stride = w.strides()[0];
    const float* pw = w.data<float>();
    const float* px = x.data<float>();
    const float* pg = gc.data<float>();
    float* pdw = dw.data<float>();
    float* pdx = dx.data<float>();
    parallel_for(0, rows, mix_grain(n, width), [&](std::int64_t begin, std::int64_t end) {
      kernels::mix_backward(end - begin, n, width, pw + begin * w_stride, w_stride, px + begin * n * width,
                            pg + begin * width, pdw + begin * n, pdx + begin * n * width);
    });
    return Grads{dw, dx};
  });
}

}  // namespace ladon
