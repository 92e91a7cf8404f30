#include "clip.h"

#include <cmath>

#include "../core/autograd.h"

namespace ladon::nn {

namespace {

// The gradient of p as a contiguous float32 tensor, or undefined.
Tensor grad_of(const char* op, const Tensor& p, std::size_t i) {
  LADON_CHECK(p.defined(), op, "parameter ", i, " is an undefined tensor");
  const Tensor g = p.grad();
  if (!g.defined()) return g;
  LADON_CHECK(g.dtype() == Dtype::float32, op, "gradient of parameter ", i, " is ", dtype_name(g.dtype()),
              ", not float32");
  return g.contiguous();
}

// A fresh gradient holding f(x) for each element x of g.
template <typename F>
void replace_grad(const Tensor& p, const Tensor& g, F f) {
  Tensor out = empty(g.shape());
  const float* in = g.data<float>();
  float* o = out.data<float>();
  for (std::int64_t k = 0; k < g.numel(); ++k) o[k] = f(in[k]);
  p.set_grad(out);
}

}  // namespace

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  const char* op = "clip_grad_norm";
  LADON_CHECK(max_norm >= 0.0, op, "max_norm must be >= 0, got ", max_norm);
  LADON_CHECK(norm_type > 0.0, op, "norm_type must be > 0 (or infinity), got ", norm_type);
  NoGradGuard no_grad;
  std::vector<Tensor> grads(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) grads[i] = grad_of(op, params[i], i);
  const bool inf_norm = std::isinf(norm_type);
  double acc = 0.0;  // in double: a sum of many squares in float loses the small ones
  for (const Tensor& g : grads) {
    if (!g.defined()) continue;
    const float* x = g.data<float>();
    for (std::int64_t k = 0; k < g.numel(); ++k) {
      const double a = std::fabs(static_cast<double>(x[k]));
      if (inf_norm)
        acc = (a > acc || std::isnan(a)) ? a : acc;
      else if (norm_type == 2.0)
        acc += a * a;
      else if (norm_type == 1.0)
        acc += a;
      else
        acc += std::pow(a, norm_type);
    }
  }
  const double total = inf_norm           ? acc
                       : norm_type == 1.0 ? acc
                       : norm_type == 2.0 ? std::sqrt(acc)
                                          : std::pow(acc, 1.0 / norm_type);
  LADON_CHECK(!error_if_nonfinite || std::isfinite(total), op, "the total gradient norm is ", total,
              "; pass error_if_nonfinite = false to scale anyway");
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    const float c = static_cast<float>(coef);
    for (std::size_t i = 0; i < params.size(); ++i)
      if (grads[i].defined()) replace_grad(params[i], grads[i], [c](float x) { return x * c; });
  }
  return total;
}

void clip_grad_value(const std::vector<Tensor>& params, double clip_value) {
  const char* op = "clip_grad_value";
  LADON_CHECK(clip_value >= 0.0, op, "clip_value must be >= 0, got ", clip_value);
  NoGradGuard no_grad;
  const float hi = static_cast<float>(clip_value), lo = -hi;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Tensor g = grad_of(op, params[i], i);
    if (g.defined()) replace_grad(params[i], g, [lo, hi](float x) { return x < lo ? lo : x > hi ? hi : x; });
  }
}

}  // namespace ladon::nn
