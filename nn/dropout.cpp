#include "dropout.h"

#include "../core/ops.h"

namespace ladon::nn {

Dropout::Dropout(double p, std::optional<std::uint64_t> seed)
    : p_(p), gen_(seed ? *seed : default_generator().next_u64()) {
  LADON_CHECK(p >= 0.0 && p < 1.0, "Dropout", "p must be in [0, 1), got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
  LADON_CHECK(x.defined() && x.dtype() == Dtype::float32, "Dropout", "expected a float32 tensor",
              x.defined() ? std::string(", got ") + dtype_name(x.dtype()) + " of shape " + shape_str(x.shape()) : "");
  if (!is_training() || p_ == 0.0) return x;
  // The mask already holds the 1 / (1 - p) scale, so one mul gives both output and gradient.
  const float keep_scale = static_cast<float>(1.0 / (1.0 - p_));
  Tensor mask = empty(x.shape());
  float* m = mask.data<float>();
  for (std::int64_t i = 0, n = mask.numel(); i < n; ++i) m[i] = gen_.uniform() < p_ ? 0.0f : keep_scale;
  return mul(x, mask);
}

}  // namespace ladon::nn
