// Loss functions, composed from core ops so autograd differentiates them (no hand-written
// backward). Each takes a Reduction: mean (the default) or sum over every element, or none, which
// returns the per-element (per-sample for cross_entropy) losses.
//
// Shapes must match exactly where the formula is elementwise: unlike NumPy broadcasting, a
// [B, 1] prediction against a [B] target is an error, not a silent [B, B] loss. Bad shapes,
// dtypes and class indices throw ladon::Error naming the loss and the shapes. A mean over zero
// elements is an error rather than NaN.
#pragma once

#include "../core/tensor.h"

namespace ladon::nn {

enum class Reduction { mean, sum, none };

// Squared error (pred - target)^2. pred and target: float32 of one shape.
Tensor mse_loss(const Tensor& pred, const Tensor& target, Reduction reduction = Reduction::mean);

// Absolute error |pred - target|; the gradient at pred == target is 0.
Tensor l1_loss(const Tensor& pred, const Tensor& target, Reduction reduction = Reduction::mean);

// Softmax cross-entropy, -log_softmax(logits)[b, target[b]] per sample. logits: float32 [B, C]
// (unnormalised scores); target: int64 [B] with every value in [0, C). With mean reduction the
// gradient with respect to logits is (softmax(logits) - onehot(target)) / B.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction = Reduction::mean);

// Sigmoid binary cross-entropy, -[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], computed in the
// stable form max(x, 0) - x y + log(1 + exp(-|x|)) so large |x| never overflows. logits and target:
// float32 of one shape; targets may be soft labels in [0, 1]. The gradient is sigmoid(x) - y
// everywhere, including at x = 0 (maximum's tie rule splits the kink's gradient evenly).
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        Reduction reduction = Reduction::mean);

}  // namespace ladon::nn
