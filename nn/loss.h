// Loss functions, composed from core ops so autograd differentiates them (no hand-written
// backward). Each takes a Reduction: mean (the default) or sum over every element, or none, which
// returns the per-element (per-sample for cross_entropy) losses.
//
// Shapes must match exactly where the formula is elementwise: unlike NumPy broadcasting, a
// [B, 1] prediction against a [B] target is an error, not a silent [B, B] loss. Bad shapes,
// dtypes and class indices throw ladon::Error naming the loss and the shapes. A mean over zero
// elements is an error rather than NaN.
//
// Every loss also takes an options struct with the reduction and an optional `weight`: a float32
// per-sample (or per-element) weight or 0/1 mask that broadcasts to the unreduced loss's shape
// (e.g. [B] for a [B] loss, [B, 1] for a [B, T] one). The loss becomes weight * loss; with mean
// reduction it is divided by the sum of the (broadcast) weights, so a mask gives the mean over the
// samples that have a label. When every weight is 0 (a batch with no labels for a task) the mean
// is 0 with zero gradients rather than NaN.
//
//   nn::cross_entropy(logits, y, {.weight = has_label});            // mean over labelled rows
//   nn::cross_entropy(logits, y, {.class_weight = w, .ignore_index = -1, .label_smoothing = 0.1});
#pragma once

#include "layer_fence.h"

#include <cstdint>

#include "../core/tensor.h"

namespace ladon::nn {

enum class Reduction { mean, sum, none };

// Options shared by the elementwise losses.
struct LossOptions {
  Reduction reduction = Reduction::mean;
  Tensor weight = {};  // per-sample / per-element weight or mask, broadcast to the loss's shape
};

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

Tensor mse_loss(const Tensor& pred, const Tensor& target, const LossOptions& options);
Tensor l1_loss(const Tensor& pred, const Tensor& target, const LossOptions& options);

// Huber: 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta), d = pred - target (delta > 0).
struct HuberOptions {
  Reduction reduction = Reduction::mean;
  Tensor weight = {};
  double delta = 1.0;
};
Tensor huber_loss(const Tensor& pred, const Tensor& target, const HuberOptions& options = {});

// Smooth L1: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta; beta = 0 is the L1 loss.
// (Huber with delta = beta, divided by beta.)
struct SmoothL1Options {
  Reduction reduction = Reduction::mean;
  Tensor weight = {};
  double beta = 1.0;
};
Tensor smooth_l1_loss(const Tensor& pred, const Tensor& target, const SmoothL1Options& options = {});

// Class-index losses. PyTorch semantics: a sample whose target is ignore_index contributes 0 and
// is left out of the mean; with class weights w the sample's loss is scaled by w[target] and the
// mean divides by the sum of w[target] over the samples that count (times their `weight`, when
// given). `weight` is per sample, [B].
struct NLLOptions {
  Reduction reduction = Reduction::mean;
  Tensor weight = {};        // per sample [B]: weight or 0/1 mask
  Tensor class_weight = {};  // [C]
  std::int64_t ignore_index = -100;
};
// Negative log-likelihood of log-probabilities: -log_probs[b, target[b]]. log_probs: float32
// [B, C]; target: int64 [B] in [0, C) or equal to ignore_index.
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NLLOptions& options = {});

struct CrossEntropyOptions {
  Reduction reduction = Reduction::mean;
  Tensor weight = {};
  Tensor class_weight = {};
  std::int64_t ignore_index = -100;
  // In [0, 1]: the target becomes (1 - s) onehot + s / C. As in PyTorch the loss is
  // (1 - s) nll + s / C sum_c w_c (-log p_c), normalised by the same denominator as the nll part.
  double label_smoothing = 0;
};
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& options);

// Binary cross-entropy of probabilities in [0, 1] (checked): -[y log p + (1 - y) log(1 - p)], with
// each log clamped to >= -100 as PyTorch does, so p = 0 or 1 gives a finite loss and gradient.
// Prefer binary_cross_entropy_with_logits, which is exact for large logits.
Tensor binary_cross_entropy(const Tensor& probs, const Tensor& target, const LossOptions& options = {});

// pos_weight scales the positive term: -[pw y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))],
// computed stably as (1 - y) x + (1 + (pw - 1) y) (log(1 + exp(-|x|)) + max(-x, 0)). pos_weight
// broadcasts to the logits' shape, typically [C] for [B, C] logits (one per class / task).
struct BCEWithLogitsOptions {
  Reduction reduction = Reduction::mean;
  Tensor weight = {};
  Tensor pos_weight = {};
};
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const BCEWithLogitsOptions& options);

// Kullback-Leibler divergence KL(target || input) with input given as log-probabilities:
// target (log target - input) per element, 0 where target = 0 (or, with log_target, the target is
// given as log-probabilities too: exp(t) (t - input)). batchmean divides the sum by the batch size
// (dim 0), which is the true KL per sample; mean divides by the element count (PyTorch's default,
// kept for compatibility). input and target: float32 of one shape.
struct KLDivOptions {
  Reduction reduction = Reduction::mean;
  bool batchmean = false;  // with Reduction::mean: divide by the batch size, not the element count
  bool log_target = false;
  Tensor weight = {};
};
Tensor kl_div(const Tensor& input, const Tensor& target, const KLDivOptions& options = {});

}  // namespace ladon::nn
