// Reductions: sum, mean, max (with indices), argmax, and sum_to for broadcasting backwards.
#include <algorithm>
#include <numeric>

#include "../../kernels/reduce.h"
#include "../autograd.h"
#include "../ops.h"
#include "iterate.h"

namespace ladon {

namespace {

struct Reduction {
  std::vector<bool> reduced;  // per input dim
  Shape kept_shape;           // output shape with keepdim
  Shape out_shape;            // output shape as requested
};

Reduction plan(const char* op, const Tensor& x, const std::vector<std::int64_t>& dims, bool keepdim) {
  Reduction r;
  r.reduced.assign(static_cast<std::size_t>(x.dim()), dims.empty());
  for (std::int64_t d : dims) {
    const std::int64_t n = detail::normalize_dim(op, d, x.dim());
    if (x.dim() == 0) continue;
    LADON_CHECK(!r.reduced[n], op, "dim ", d, " given twice");
    r.reduced[n] = true;
  }
  for (std::int64_t d = 0; d < x.dim(); ++d) {
    r.kept_shape.push_back(r.reduced[d] ? 1 : x.shape()[d]);
    if (!r.reduced[d] || keepdim) r.out_shape.push_back(r.kept_shape.back());
  }
  return r;
}

// Lays x out as contiguous [outer, n, inner] with the reduced dims in the middle. When they are
// already one contiguous block of a contiguous tensor this is free; otherwise the kept dims are
// permuted to the front and copied.
struct Blocked {
  Tensor data;
  std::int64_t outer = 1, n = 1, inner = 1;
};

Blocked block(const Tensor& x, const std::vector<bool>& reduced) {
  Blocked b;
  std::int64_t first = -1, last = -1;
  for (std::int64_t d = 0; d < x.dim(); ++d)
    if (reduced[d] && x.shape()[d] != 1) {
      if (first < 0) first = d;
      last = d;
    }
  bool block_contiguous = first >= 0;
  for (std::int64_t d = first; block_contiguous && d <= last; ++d) block_contiguous = reduced[d] || x.shape()[d] == 1;
  if (first < 0) {  // nothing of size > 1 to reduce
    b.data = x.contiguous();
    b.outer = x.numel();
    return b;
  }
  if (block_contiguous) {
    b.data = x.contiguous();
    for (std::int64_t d = 0; d < x.dim(); ++d) (d < first ? b.outer : d <= last ? b.n : b.inner) *= x.shape()[d];
    return b;
  }
  Shape order;
  for (std::int64_t d = 0; d < x.dim(); ++d)
    if (!reduced[d]) order.push_back(d), b.outer *= x.shape()[d];
  for (std::int64_t d = 0; d < x.dim(); ++d)
    if (reduced[d]) order.push_back(d), b.n *= x.shape()[d];
  b.data = x.detach().permute(order).contiguous();
  return b;
}

Tensor sum_forward(const Tensor& x, const Reduction& r) {
  const Blocked b = block(x.detach(), r.reduced);
  Tensor out = empty(r.out_shape);
  const float* in = b.data.data<float>();
  float* o = out.data<float>();
  if (b.outer == 1 && b.inner == 1 && b.n >= 2 * detail::kElementwiseGrain && num_threads() > 1) {
    // One long row (a full reduction): threads sum slices, the slices are added in double.
    const std::int64_t slices = num_threads();
    std::vector<float> partial(static_cast<std::size_t>(slices));
    parallel_for(0, slices, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t s = begin; s < end; ++s) {
        const std::int64_t first = b.n * s / slices, last = b.n * (s + 1) / slices;
        kernels::sum_reduce(1, last - first, 1, in + first, &partial[static_cast<std::size_t>(s)]);
      }
    });
    double total = 0;
    for (float p : partial) total += p;
    o[0] = static_cast<float>(total);
    return out;
  }
  const std::int64_t grain = std::max<std::int64_t>(1, detail::kElementwiseGrain / std::max<std::int64_t>(b.n * b.inner, 1));
  parallel_for(0, b.outer, grain, [&](std::int64_t begin, std::int64_t end) {
    kernels::sum_reduce(end - begin, b.n, b.inner, in + begin * b.n * b.inner, o + begin * b.inner);
  });
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<std::int64_t>& dims, bool keepdim) {
  detail::check_float("sum", x);
  const Reduction r = plan("sum", x, dims, keepdim);
  Tensor out = sum_forward(x, r);
  return record(out, "sum", {x}, [kept = r.kept_shape, shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
    return Grads{g.reshape(kept).expand(shape).contiguous()};
  });
}

Tensor mean(const Tensor& x, const std::vector<std::int64_t>& dims, bool keepdim) {
  detail::check_float("mean", x);
  const Reduction r = plan("mean", x, dims, keepdim);
  // The count of the reduced dims alone: a mean over a non-empty set of an empty batch (LayerNorm
  // on 0 rows) is an empty result, not an error.
  std::int64_t count = 1;
  for (std::int64_t d = 0; d < x.dim(); ++d)
    if (r.reduced[d]) count *= x.shape()[d];
  LADON_CHECK(count > 0, "mean", "mean over dims of size 0 in a tensor of shape ", shape_str(x.shape()));
  return mul(sum(x, dims, keepdim), scalar(1.0 / static_cast<double>(count)));
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  LADON_CHECK(x.shape().size() >= shape.size(), "sum_to", "cannot sum ", shape_str(x.shape()), " to ", shape_str(shape));
  const std::size_t lead = x.shape().size() - shape.size();
  std::vector<std::int64_t> dims;
  for (std::size_t d = 0; d < x.shape().size(); ++d) {
    if (d < lead) {
      dims.push_back(static_cast<std::int64_t>(d));
    } else if (shape[d - lead] == 1 && x.shape()[d] != 1) {
      dims.push_back(static_cast<std::int64_t>(d));
    } else {
      LADON_CHECK(shape[d - lead] == x.shape()[d], "sum_to", "cannot sum ", shape_str(x.shape()), " to ",
                  shape_str(shape));
    }
  }
  return sum(x, dims, true).reshape(shape);
}

ValuesIndices max(const Tensor& x, std::int64_t dim, bool keepdim) {
  detail::check_float("max", x);
  LADON_CHECK(x.dim() > 0, "max", "needs a tensor with at least one dim to reduce over dim ", dim);
  const Reduction r = plan("max", x, {dim}, keepdim);
  const std::int64_t d = detail::normalize_dim("max", dim, x.dim());
  LADON_CHECK(x.shape()[d] > 0, "max", "dim ", d, " of ", shape_str(x.shape()), " is empty");
  std::int64_t outer = 1, inner = 1;
  for (std::int64_t i = 0; i < d; ++i) outer *= x.shape()[i];
  for (std::int64_t i = d + 1; i < x.dim(); ++i) inner *= x.shape()[i];
  const Tensor xc = x.detach().contiguous();
  Tensor values = empty(r.out_shape), indices = empty(r.out_shape, Dtype::int64);
  kernels::max_reduce(outer, x.shape()[d], inner, xc.data<float>(), values.data<float>(), indices.data<std::int64_t>());
  values = record(values, "max", {x},
                  [indices = indices, kept = r.kept_shape, shape = x.shape(), d](const Tensor& g, const std::vector<bool>&) {
                    // Scatter each gradient to the position its maximum came from.
                    Tensor grad = zeros(shape);
                    const Tensor gc = g.reshape(kept).contiguous();
                    const Tensor ic = indices.reshape(kept).contiguous();
                    std::int64_t outer = 1, inner = 1;
                    for (std::int64_t i = 0; i < d; ++i) outer *= shape[i];
                    for (std::int64_t i = d + 1; i < static_cast<std::int64_t>(shape.size()); ++i) inner *= shape[i];
                    const std::int64_t n = shape[d];
                    float* out = grad.data<float>();
                    const float* gp = gc.data<float>();
                    const std::int64_t* ip = ic.data<std::int64_t>();
                    for (std::int64_t o = 0; o < outer; ++o)
                      for (std::int64_t i = 0; i < inner; ++i)
                        out[(o * n + ip[o * inner + i]) * inner + i] += gp[o * inner + i];
                    return Grads{grad};
                  });
  return {values, indices};
}

Tensor max(const Tensor& x) {
  detail::check_float("max", x);
  LADON_CHECK(x.numel() > 0, "max", "max of an empty tensor of shape ", shape_str(x.shape()));
  Tensor out;
  {
    NoGradGuard no_grad;
    out = max(x.reshape({-1}), 0).values;
  }
  // Tied maxima share the gradient equally (PyTorch's choice for a full reduction): no one
  // position is preferred, and the gradient's total is the same as with a single maximum.
  return record(out, "max", {x}, [x = x.detach(), out = out.detach()](const Tensor& g, const std::vector<bool>&) {
    const Tensor at_max = eq(x, out);
    return Grads{mul(at_max, div(g, sum(at_max)))};
  });
}

Tensor argmax(const Tensor& x, std::int64_t dim, bool keepdim) {
  NoGradGuard no_grad;
  return max(x, dim, keepdim).indices;
}

}  // namespace ladon
