// Gradient clipping, called between backward() and the optimizer step:
//
//   loss.backward();
//   double norm = nn::clip_grad_norm(model.parameters(), 1.0);
//   opt.step();
//
// Parameters without a gradient are skipped. Clipped gradients are replaced by new tensors (never
// scaled in place), so a gradient shared with another tensor is not scaled twice.
#pragma once

#include "layer_fence.h"

#include <limits>
#include <vector>

#include "../core/tensor.h"

namespace ladon::nn {

// Scales every gradient by max_norm / (total + 1e-6) when that is below 1, where total is the
// norm_type-norm of all the gradients together (as one long vector; norm_type may be infinity for
// the largest absolute value). Returns total, measured before clipping (PyTorch's
// clip_grad_norm_). With error_if_nonfinite, a NaN or infinite total throws instead of scaling.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                      bool error_if_nonfinite = false);

// Clamps every gradient element into [-clip_value, clip_value].
void clip_grad_value(const std::vector<Tensor>& params, double clip_value);

}  // namespace ladon::nn
