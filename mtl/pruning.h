// Compression by magnitude pruning: the smallest-magnitude weights of the chosen parameters are
// zeroed to reach a target sparsity, and the masks stay applied through further training (call
// apply() after every optimizer step), so pruned weights never come back.
#pragma once

#include "layer_fence.h"

#include <vector>

#include "../core/tensor.h"

namespace ladon::mtl {

struct PruningReport {
  std::int64_t parameters = 0;  // elements under pruning
  std::int64_t nonzero_before = 0;
  std::int64_t nonzero_after = 0;
  double sparsity() const {
    return parameters ? 1.0 - static_cast<double>(nonzero_after) / static_cast<double>(parameters) : 0.0;
  }
};

class MagnitudePruner {
 public:
  // global: one threshold across all tensors; otherwise each tensor reaches the sparsity itself.
  MagnitudePruner(std::vector<Tensor> parameters, double sparsity, bool global = true);
  PruningReport prune();  // computes the masks from the current weights and applies them
  void apply();           // re-zeroes pruned weights (after an optimizer step)
  const std::vector<Tensor>& masks() const { return masks_; }

 private:
  std::vector<Tensor> parameters_;
  std::vector<Tensor> masks_;
  double sparsity_;
  bool global_;
};

}  // namespace ladon::mtl
