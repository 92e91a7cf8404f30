#include "loss.h"

#include <algorithm>

#include "../core/ops.h"

namespace ladon::nn {

namespace {

Tensor reduce(const char* loss, const Tensor& per_element, Reduction reduction) {
  switch (reduction) {
    case Reduction::none:
      return per_element;
    case Reduction::sum:
      return sum(per_element);
    case Reduction::mean:
      LADON_CHECK(per_element.numel() > 0, loss, "mean over an empty input of shape ", shape_str(per_element.shape()));
      return mean(per_element);
  }
  detail::fail(loss, "unknown reduction ", static_cast<int>(reduction));
}

// Elementwise losses compare two float32 tensors of exactly one shape.
void check_pair(const char* loss, const char* a_name, const Tensor& a, const char* b_name, const Tensor& b) {
  LADON_CHECK(a.defined() && b.defined(), loss, a_name, " or ", b_name, " is an undefined tensor");
  LADON_CHECK(a.shape() == b.shape(), loss, a_name, " ", shape_str(a.shape()), " and ", b_name, " ",
              shape_str(b.shape()), ": shapes differ");
  LADON_CHECK(a.dtype() == Dtype::float32, loss, a_name, " ", shape_str(a.shape()), " must be float32, got ",
              dtype_name(a.dtype()));
  LADON_CHECK(b.dtype() == Dtype::float32, loss, b_name, " ", shape_str(b.shape()), " must be float32, got ",
              dtype_name(b.dtype()));
}

// Checks an optional per-sample / per-element weight against the unreduced loss's shape.
void check_weight(const char* loss, const Tensor& weight, const Shape& shape) {
  LADON_CHECK(weight.dtype() == Dtype::float32, loss, "weight ", shape_str(weight.shape()), " must be float32, got ",
              dtype_name(weight.dtype()));
  bool ok = weight.dim() <= static_cast<std::int64_t>(shape.size());
  for (std::int64_t i = 1; ok && i <= weight.dim(); ++i) {
    const std::int64_t w = weight.shape()[weight.dim() - i], l = shape[shape.size() - i];
    ok = w == l || w == 1;
  }
  LADON_CHECK(ok, loss, "weight ", shape_str(weight.shape()), " does not broadcast to the loss's shape ",
              shape_str(shape));
}

// reduce() with an optional weight: weight * loss, and a mean divided by the sum of the broadcast
// weights (per_sample_elements: how many elements make one "sample" for batchmean; 1 otherwise).
Tensor reduce_weighted(const char* loss, const Tensor& per_element, const Tensor& weight, Reduction reduction,
                       std::int64_t per_sample_elements = 1) {
  if (!weight.defined() && per_sample_elements == 1) return reduce(loss, per_element, reduction);
  Tensor weighted = per_element;
  if (weight.defined()) {
    check_weight(loss, weight, per_element.shape());
    weighted = mul(per_element, weight);
  }
  if (reduction != Reduction::mean) return reduce(loss, weighted, reduction);
  LADON_CHECK(per_element.numel() > 0, loss, "mean over an empty input of shape ", shape_str(per_element.shape()));
  const Tensor total = sum(weighted);
  Tensor denom;
  if (weight.defined()) {
    // Broadcasting repeats every weight element the same number of times.
    const double copies = static_cast<double>(per_element.numel()) /
                          static_cast<double>(std::max<std::int64_t>(weight.numel(), 1) * per_sample_elements);
    denom = mul(sum(weight), scalar(copies));
  } else {
    denom = scalar(static_cast<double>(per_element.numel() / per_sample_elements));
  }
  // No sample counts (every label missing): 0 with zero gradients, not 0 / 0.
  if (denom.item() == 0.0) return mul(total, scalar(0.0));
  return div(total, denom);
}

// The class-index losses, PyTorch's weighting and ignore_index rules. `input` holds log-probabilities
// (nll_loss) or, with from_logits, logits (cross_entropy: the fused softmax_cross_entropy op).
Tensor class_loss(const char* op, const Tensor& input, bool from_logits, const Tensor& target, Reduction reduction,
                  const Tensor& sample_weight, const Tensor& class_weight, std::int64_t ignore_index,
                  double smoothing) {
  const std::int64_t batch = input.shape()[0], classes = input.shape()[1];
  if (class_weight.defined()) {
    LADON_CHECK(class_weight.dtype() == Dtype::float32, op, "class_weight must be float32, got ",
                dtype_name(class_weight.dtype()));
    LADON_CHECK(class_weight.shape() == Shape{classes}, op, "class_weight ", shape_str(class_weight.shape()),
                " must be [", classes, "], one per class (input ", shape_str(input.shape()), ")");
  }
  if (sample_weight.defined()) {
    LADON_CHECK(sample_weight.dtype() == Dtype::float32, op, "weight must be float32, got ",
                dtype_name(sample_weight.dtype()));
    LADON_CHECK(sample_weight.shape() == Shape{batch}, op, "weight ", shape_str(sample_weight.shape()), " must be [",
                batch, "], one per sample (input ", shape_str(input.shape()), ")");
  }
  LADON_CHECK(smoothing >= 0.0 && smoothing <= 1.0, op, "label_smoothing must be in [0, 1], got ", smoothing);
  const std::vector<std::int64_t> t = target.to_vector<std::int64_t>();
  std::vector<std::int64_t> safe(static_cast<std::size_t>(batch));
  std::vector<float> valid(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b) {
    const bool ignored = t[b] == ignore_index;
    LADON_CHECK(ignored || (t[b] >= 0 && t[b] < classes), op, "target[", b, "] = ", t[b], " is out of range for ",
                classes, " classes (input ", shape_str(input.shape()), ")");
    safe[b] = ignored ? 0 : t[b];
    valid[b] = ignored ? 0.0f : 1.0f;
  }
  if (reduction == Reduction::mean)
    LADON_CHECK(batch > 0, op, "mean over an empty input of shape ", shape_str(target.shape()));
  const Tensor safe_t = tensor(std::move(safe), {batch});
  Tensor scale = tensor(std::move(valid), {batch});  // which samples count, and how much
  if (sample_weight.defined()) scale = mul(scale, sample_weight);
  Tensor per = from_logits ? softmax_cross_entropy(input, safe_t)
                           : neg(gather(input, 1, safe_t.reshape({batch, 1})).reshape({batch}));
  Tensor omega = scale;  // each sample's share of the mean's denominator
  if (class_weight.defined()) {
    const Tensor w_t = index_select(class_weight, 0, safe_t);
    per = mul(per, w_t);
    omega = mul(omega, w_t);
  }
  if (smoothing > 0.0) {
    const Tensor all_log_probs = from_logits ? log_softmax(input, 1) : input;
    const Tensor weighted =
        class_weight.defined() ? mul(all_log_probs, class_weight.reshape({1, classes})) : all_log_probs;
    const Tensor smooth = neg(sum(weighted, {1}));
    per = add(mul(per, scalar(1.0 - smoothing)), mul(smooth, scalar(smoothing / static_cast<double>(classes))));
  }
  per = mul(per, scale);
  switch (reduction) {
    case Reduction::none:
      return per;
    case Reduction::sum:
      return sum(per);
    case Reduction::mean: {
      const Tensor denom = sum(omega);
      if (denom.item() == 0.0) return mul(sum(per), scalar(0.0));
      return div(sum(per), denom);
    }
  }
  ::ladon::detail::fail(op, "unknown reduction ", static_cast<int>(reduction));
}

void check_class_input(const char* op, const char* input_name, const Tensor& input, const Tensor& target) {
  LADON_CHECK(input.defined() && target.defined(), op, input_name, " or target is an undefined tensor");
  LADON_CHECK(input.dim() == 2, op, input_name, " must be 2-D [batch, classes], got ", shape_str(input.shape()));
  LADON_CHECK(input.dtype() == Dtype::float32, op, input_name, " ", shape_str(input.shape()), " must be float32, got ",
              dtype_name(input.dtype()));
  LADON_CHECK(target.dim() == 1, op, "target must be 1-D [batch] class indices, got ", shape_str(target.shape()), " (",
              input_name, " ", shape_str(input.shape()), ")");
  LADON_CHECK(target.dtype() == Dtype::int64, op, "target ", shape_str(target.shape()),
              " must be int64 class indices, got ", dtype_name(target.dtype()));
  LADON_CHECK(target.shape()[0] == input.shape()[0], op, input_name, " ", shape_str(input.shape()), " and target ",
              shape_str(target.shape()), ": batch sizes differ");
}

// log(x) clamped to >= -100, with a finite gradient (zero where clamped) even at x = 0.
Tensor clamped_log(const Tensor& x) {
  const Tensor positive = gt(x, scalar(0.0));
  const Tensor log_x = log(where(positive, x, scalar(1.0)));
  return maximum(where(positive, log_x, scalar(-100.0)), scalar(-100.0));
}

}  // namespace

Tensor mse_loss(const Tensor& pred, const Tensor& target, Reduction reduction) {
  check_pair("mse_loss", "pred", pred, "target", target);
  const Tensor diff = sub(pred, target);
  return reduce("mse_loss", mul(diff, diff), reduction);
}

Tensor l1_loss(const Tensor& pred, const Tensor& target, Reduction reduction) {
  check_pair("l1_loss", "pred", pred, "target", target);
  return reduce("l1_loss", abs(sub(pred, target)), reduction);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction) {
  const char* op = "cross_entropy";
  LADON_CHECK(logits.defined() && target.defined(), op, "logits or target is an undefined tensor");
  LADON_CHECK(logits.dim() == 2, op, "logits must be 2-D [batch, classes], got ", shape_str(logits.shape()));
  LADON_CHECK(logits.dtype() == Dtype::float32, op, "logits ", shape_str(logits.shape()), " must be float32, got ",
              dtype_name(logits.dtype()));
  LADON_CHECK(target.dim() == 1, op, "target must be 1-D [batch] class indices, got ", shape_str(target.shape()),
              " (logits ", shape_str(logits.shape()), ")");
  LADON_CHECK(target.dtype() == Dtype::int64, op, "target ", shape_str(target.shape()),
              " must be int64 class indices, got ", dtype_name(target.dtype()));
  const std::int64_t batch = logits.shape()[0], classes = logits.shape()[1];
  LADON_CHECK(target.shape()[0] == batch, op, "logits ", shape_str(logits.shape()), " and target ",
              shape_str(target.shape()), ": batch sizes differ");
  // gather would also reject a bad index, but only this message says which sample and which loss.
  const std::vector<std::int64_t> classes_of = target.to_vector<std::int64_t>();
  for (std::int64_t b = 0; b < batch; ++b)
    LADON_CHECK(classes_of[b] >= 0 && classes_of[b] < classes, op, "target[", b, "] = ", classes_of[b],
                " is out of range for ", classes, " classes (logits ", shape_str(logits.shape()), ")");

  return reduce(op, softmax_cross_entropy(logits, target), reduction);
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction reduction) {
  const char* op = "binary_cross_entropy_with_logits";
  check_pair(op, "logits", logits, "target", target);
  // max(x, 0) - x y + log(1 + exp(-|x|)): exp only ever sees a non-positive argument.
  const Tensor per_element =
      add(sub(maximum(logits, scalar(0.0)), mul(logits, target)), log(add(scalar(1.0), exp(neg(abs(logits))))));
  return reduce(op, per_element, reduction);
}

}  // namespace ladon::nn

namespace ladon::nn {

Tensor mse_loss(const Tensor& pred, const Tensor& target, const LossOptions& options) {
  check_pair("mse_loss", "pred", pred, "target", target);
  const Tensor diff = sub(pred, target);
  return reduce_weighted("mse_loss", mul(diff, diff), options.weight, options.reduction);
}

Tensor l1_loss(const Tensor& pred, const Tensor& target, const LossOptions& options) {
  check_pair("l1_loss", "pred", pred, "target", target);
  return reduce_weighted("l1_loss", abs(sub(pred, target)), options.weight, options.reduction);
}

Tensor huber_loss(const Tensor& pred, const Tensor& target, const HuberOptions& options) {
  const char* op = "huber_loss";
  check_pair(op, "pred", pred, "target", target);
  const double delta = options.delta;
  LADON_CHECK(delta > 0.0, op, "delta must be > 0, got ", delta);
  const Tensor d = sub(pred, target);
  const Tensor a = abs(d);
  const Tensor per =
      where(lt(a, scalar(delta)), mul(mul(d, d), scalar(0.5)), mul(sub(a, scalar(0.5 * delta)), scalar(delta)));
  return reduce_weighted(op, per, options.weight, options.reduction);
}

Tensor smooth_l1_loss(const Tensor& pred, const Tensor& target, const SmoothL1Options& options) {
  const char* op = "smooth_l1_loss";
  check_pair(op, "pred", pred, "target", target);
  const double beta = options.beta;
  LADON_CHECK(beta >= 0.0, op, "beta must be >= 0, got ", beta);
  const Tensor d = sub(pred, target);
  const Tensor a = abs(d);
  const Tensor per =
      beta == 0.0 ? a : where(lt(a, scalar(beta)), mul(mul(d, d), scalar(0.5 / beta)), sub(a, scalar(0.5 * beta)));
  return reduce_weighted(op, per, options.weight, options.reduction);
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NLLOptions& options) {
  const char* op = "nll_loss";
  check_class_input(op, "log_probs", log_probs, target);
  return class_loss(op, log_probs, false, target, options.reduction, options.weight, options.class_weight,
                    options.ignore_index, 0.0);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& options) {
  const char* op = "cross_entropy";
  check_class_input(op, "logits", logits, target);
  return class_loss(op, logits, true, target, options.reduction, options.weight, options.class_weight,
                    options.ignore_index, options.label_smoothing);
}

Tensor binary_cross_entropy(const Tensor& probs, const Tensor& target, const LossOptions& options) {
  const char* op = "binary_cross_entropy";
  check_pair(op, "probs", probs, "target", target);
  const std::vector<float> p = probs.to_vector<float>();
  for (std::size_t i = 0; i < p.size(); ++i)
    LADON_CHECK(p[i] >= 0.0f && p[i] <= 1.0f, op, "probs must be in [0, 1], element ", i, " is ", p[i],
                " (for logits use binary_cross_entropy_with_logits)");
  const Tensor per =
      neg(add(mul(target, clamped_log(probs)), mul(sub(scalar(1.0), target), clamped_log(sub(scalar(1.0), probs)))));
  return reduce_weighted(op, per, options.weight, options.reduction);
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const BCEWithLogitsOptions& options) {
  const char* op = "binary_cross_entropy_with_logits";
  if (!options.pos_weight.defined())
    return reduce_weighted(op, binary_cross_entropy_with_logits(logits, target, Reduction::none), options.weight,
                           options.reduction);
  check_pair(op, "logits", logits, "target", target);
  const Tensor& pw = options.pos_weight;
  LADON_CHECK(pw.dtype() == Dtype::float32, op, "pos_weight must be float32, got ", dtype_name(pw.dtype()));
  bool ok = pw.dim() <= logits.dim();
  for (std::int64_t i = 1; ok && i <= pw.dim(); ++i)
    ok = pw.shape()[pw.dim() - i] == logits.shape()[logits.dim() - i] || pw.shape()[pw.dim() - i] == 1;
  LADON_CHECK(ok, op, "pos_weight ", shape_str(pw.shape()), " does not broadcast to the logits' shape ",
              shape_str(logits.shape()));
  // -log sigmoid(x) = log(1 + exp(-|x|)) + max(-x, 0), stable for any x.
  const Tensor neg_log_sigmoid = add(log(add(scalar(1.0), exp(neg(abs(logits))))), maximum(neg(logits), scalar(0.0)));
  const Tensor log_weight = add(scalar(1.0), mul(sub(pw, scalar(1.0)), target));
  const Tensor per = add(mul(sub(scalar(1.0), target), logits), mul(log_weight, neg_log_sigmoid));
  return reduce_weighted(op, per, options.weight, options.reduction);
}

Tensor kl_div(const Tensor& input, const Tensor& target, const KLDivOptions& options) {
  const char* op = "kl_div";
  check_pair(op, "input", input, "target", target);
  Tensor per;
  if (options.log_target) {
    per = mul(exp(target), sub(target, input));
  } else {
    // target log target is 0 where target = 0 (its limit), never 0 * -inf.
    const Tensor positive = gt(target, scalar(0.0));
    const Tensor t_log_t = where(positive, mul(target, log(where(positive, target, scalar(1.0)))), scalar(0.0));
    per = sub(t_log_t, mul(target, input));
  }
  if (!options.batchmean) return reduce_weighted(op, per, options.weight, options.reduction);
  LADON_CHECK(options.reduction == Reduction::mean, op, "batchmean needs Reduction::mean");
  LADON_CHECK(input.dim() >= 1, op, "batchmean needs a batch dim, got a 0-d input");
  const std::int64_t batch = input.shape()[0];
  LADON_CHECK(input.numel() > 0, op, "mean over an empty input of shape ", shape_str(input.shape()));
  return reduce_weighted(op, per, options.weight, Reduction::mean, input.numel() / batch);
}

}  // namespace ladon::nn
