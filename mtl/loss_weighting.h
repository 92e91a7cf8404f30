// Joint multi-task loss L = sum_t alpha_t * L_t. Balancers share this interface, so any of them
// works with any architecture.
#pragma once

#include <vector>

#include "../core/tensor.h"

namespace ladon::mtl {

class LossWeighting {
 public:
  virtual ~LossWeighting() = default;
  virtual Tensor operator()(const std::vector<Tensor>& task_losses) = 0;
  virtual std::vector<double> weights() const = 0;  // the alphas used by the last call
};

// Fixed alphas chosen by the user; StaticWeighting::equal(T) gives alpha_t = 1.
class StaticWeighting : public LossWeighting {
 public:
  explicit StaticWeighting(std::vector<double> alphas);
  static StaticWeighting equal(std::size_t tasks) { return StaticWeighting(std::vector<double>(tasks, 1.0)); }
  Tensor operator()(const std::vector<Tensor>& task_losses) override;
  std::vector<double> weights() const override { return alphas_; }

 private:
  std::vector<double> alphas_;
};

}  // namespace ladon::mtl
