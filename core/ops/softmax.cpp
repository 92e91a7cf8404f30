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
    // dx = y * (g - sum(g * y))
    return Grads{mul(y, sub(g, sum(mul(g, y), {dim}, true)))};
  });
}

Tensor log_softmax(const Tensor& x, std::int64_t dim) {
  Tensor out = softmax_forward("log_softmax", x, dim, true);
  return record(out, "log_softmax", {x}, [y = out.detach(), dim](const Tensor& g, const std::vector<bool>&) {
    // dx = g - softmax(x) * sum(g)
    return Grads{sub(g, mul(exp(y), sum(g, {dim}, true)))};
  });
}

}  // namespace ladon
