#include "gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd.h"
#include "ops.h"
#include "random.h"

namespace ladon {

namespace {
// sum(out * w) in double, to keep the finite differences above float32 rounding noise.
double weighted_sum(const Tensor& out, const std::vector<float>& w) {
  const std::vector<float> v = out.to_vector<float>();
  double total = 0;
  for (std::size_t i = 0; i < v.size(); ++i) total += static_cast<double>(v[i]) * w[i];
  return total;
}
}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
                          const GradcheckOptions& options) {
  for (Tensor& input : inputs) input = input.detach().clone().requires_grad_();
  Tensor out = f(inputs);
  Generator gen(1234);
  const Tensor w_tensor = uniform(out.shape(), 0.5, 1.5, gen);
  const std::vector<float> w = w_tensor.to_vector<float>();
  const std::vector<Tensor> analytic = grad({out}, inputs, {.seeds = {w_tensor}});

  GradcheckResult result;
  double worst = 0;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    float* p = x.data<float>();  // inputs are fresh contiguous clones
    const std::vector<float> a = analytic[k].to_vector<float>();
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const float saved = p[i];
      p[i] = static_cast<float>(saved + options.eps);
      NoGradGuard no_grad;
      const double plus = weighted_sum(f(inputs), w);
      p[i] = static_cast<float>(saved - options.eps);
      const double minus = weighted_sum(f(inputs), w);
      p[i] = saved;
      const double numeric = (plus - minus) / (2 * options.eps);
      const double error = std::fabs(numeric - a[i]);
      const double allowed = options.atol + options.rtol * std::fabs(numeric);
      if (!(error <= allowed) && error / allowed > worst) {
        worst = error / allowed;
        std::ostringstream s;
        s << "input " << k << " " << shape_str(x.shape()) << " element " << i << ": analytic " << a[i]
          << " vs numeric " << numeric;
        result.ok = false;
        result.message = s.str();
      }
    }
  }
  return result;
}

}  // namespace ladon
