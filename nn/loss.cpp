#include "loss.h"

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
      LADON_CHECK(per_element.numel() > 0, loss, "mean over an empty input of shape ",
                  shape_str(per_element.shape()));
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

  const Tensor picked = gather(log_softmax(logits, 1), 1, target.reshape({batch, 1}));
  return reduce(op, neg(picked.reshape({batch})), reduction);
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
