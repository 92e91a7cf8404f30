#include "loss_weighting.h"

#include "../core/ops.h"

namespace ladon::mtl {

StaticWeighting::StaticWeighting(std::vector<double> alphas) : alphas_(std::move(alphas)) {
  LADON_CHECK(!alphas_.empty(), "StaticWeighting", "needs at least one task weight");
  for (double a : alphas_) LADON_CHECK(a >= 0.0, "StaticWeighting", "task weights must be non-negative, got ", a);
}

Tensor StaticWeighting::operator()(const std::vector<Tensor>& task_losses) {
  LADON_CHECK(task_losses.size() == alphas_.size(), "StaticWeighting", task_losses.size(), " task losses for ",
              alphas_.size(), " weights");
  Tensor total;
  for (std::size_t t = 0; t < task_losses.size(); ++t) {
    LADON_CHECK(task_losses[t].numel() == 1, "StaticWeighting", "task ", t, " loss has shape ",
                shape_str(task_losses[t].shape()), "; expected a scalar");
    const Tensor term = task_losses[t] * alphas_[t];
    total = total.defined() ? total + term : term;
  }
  return total;
}

}  // namespace ladon::mtl
