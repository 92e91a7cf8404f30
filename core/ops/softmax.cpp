// softmax and log_softmax along one dim.
#include "../../kernels/reduce.h"
#include "../autograd.h"
#include "../ops.h"
#include "iterate.h"

namespace ladon {

namespace {
Tensor softmax_forward(const char* op, const Tensor& x, std::int64_t dim, bool log) {
  detail::check_float(op, x);
  const std::int64_t d = detail::normalize_dim(op, dim, x.dim());
  const Tensor c = x.detach().contiguous();
  std::int64_t outer = 1, inner = 1;
  for (std::int64_t i = 0; i < d; ++i) outer *= x.shape()[i];
  for (std::int64_t i = d + 1; i < x.dim(); ++i) inner *= x.shape()[i];
  const std::int64_t n = x.dim() == 0 ? 1 : x.shape()[d];
  Tensor out = empty(x.shape());
  const float* in = c.data<float>();
  float* o = out.data<float>();
  const std::int64_t grain = std::max<std::int64_t>(1, detail::kElementwiseGrain / std::max<std::int64_t>(n * inner, 1));
  parallel_for(0, outer, grain, [&](std::int64_t begin, std::int64_t end) {
    kernels::softmax(end - begin, n, inner, in + begin * n * inner, o + begin * n * inner, log);
  });
  return out;
}
}  // namespace

Tensor softmax(const Tensor& x, std::int64_t dim) {
  Tensor out = softmax_forward("softmax", x, dim, false);
  return record(out, "softmax", {x}, [y = out.detach(), dim](const Tensor& g, const std::vector<bool>&) {
    // dx = y * (g - sum(g * y)): along the last dim in one fused pass (y is contiguous), else composed.
    const std::int64_t d = detail::normalize_dim("softmax", dim, y.dim());
    if (y.dim() == 0 || d != y.dim() - 1) return Grads{mul(y, sub(g, sum(mul(g, y), {dim}, true)))};
    const std::int64_t n = y.shape()[d], rows = n == 0 ? 0 : y.numel() / n;
    const Tensor gc = g.contiguous();
    Tensor dx = empty(y.shape());
    const float* py = y.data<float>();
    const float* pg = gc.data<float>();
    float* pd = dx.data<float>();
    const std::int64_t grain = std::max<std::int64_t>(1, detail::kElementwiseGrain / std::max<std::int64_t>(n, 1));
    parallel_for(0, rows, grain, [&](std::int64_t begin, std::int64_t end) {
      kernels::softmax_backward(end - begin, n, py + begin * n, pg + begin * n, pd + begin * n);
    });
    return Grads{dx};
  });
}

Tensor log_softmax(const Tensor& x, std::int64_t dim) {
  Tensor out = softmax_forward("log_softmax", x, dim, true);
  return record(out, "log_softmax", {x}, [y = out.detach(), dim](const Tensor& g, const std::vector<bool>&) {
    // dx = g - softmax(x) * sum(g)
    return Grads{sub(g, mul(exp(y), sum(g, {dim}, true)))};
  });
}

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& target) {
  const char* op = "softmax_cross_entropy";
  detail::check_float(op, logits);
  LADON_CHECK(logits.dim() == 2, op, "logits must be 2-D [batch, classes], got ", shape_str(logits.shape()));
  LADON_CHECK(target.dtype() == Dtype::int64 && target.dim() == 1, op, "target must be 1-D int64 class indices, got ",
              dtype_name(target.dtype()), " ", shape_str(target.shape()));
  const std::int64_t batch = logits.shape()[0], classes = logits.shape()[1];
  LADON_CHECK(target.shape()[0] == batch, op, "logits ", shape_str(logits.shape()), " and target ",
              shape_str(target.shape()), ": batch sizes differ");
  LADON_CHECK(classes > 0, op, "logits ", shape_str(logits.shape()), " have no classes");
  const Tensor t = target.contiguous();
  const std::int64_t* cls = t.data<std::int64_t>();
  for (std::int64_t b = 0; b < batch; ++b)
    LADON_CHECK(cls[b] >= 0 && cls[b] < classes, op, "target[", b, "] = ", cls[b], " is out of range for ", classes,
                " classes");
  const Tensor x = logits.detach().contiguous();
  Tensor probs = empty({batch, classes});
  Tensor loss = empty({batch});
  const std::int64_t grain = std::max<std::int64_t>(1, detail::kElementwiseGrain / classes);
  parallel_for(0, batch, grain, [&](std::int64_t begin, std::int64_t end) {
    kernels::softmax_cross_entropy(end - begin, classes, x.data<float>() + begin * classes, cls + begin,
                                   probs.data<float>() + begin * classes, loss.data<float>() + begin);
  });
  return record(loss, op, {logits}, [probs, t](const Tensor& g, const std::vector<bool>&) {
    const std::int64_t rows = probs.shape()[0], n = probs.shape()[1];
    const Tensor gc = g.contiguous();
    Tensor dx = empty({rows, n});
    const float* p = probs.data<float>();
    const float* gv = gc.data<float>();
    const std::int64_t* c = t.data<std::int64_t>();
    float* d = dx.data<float>();
    for (std::int64_t b = 0; b < rows; ++b) {
      for (std::int64_t j = 0; j < n; ++j) d[b * n + j] = p[b * n + j] * gv[b];
      d[b * n + c[b]] -= gv[b];
    }
    return Grads{dx};
  });
}

}  // namespace ladon
