// Gradient checking: compares autograd's gradients with central finite differences.
#pragma once

#include "layer_fence.h"

#include <functional>
#include <string>
#include <vector>

#include "tensor.h"

namespace ladon {

struct GradcheckOptions {
  double eps = 1e-2;   // finite-difference step (float32 data: larger steps beat rounding error)
  double atol = 2e-3;
  double rtol = 2e-2;
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // the worst mismatch, for test output
};

// f maps the inputs (float32, requires_grad set by gradcheck) to one output of any shape. The
// scalar checked is sum(f(inputs) * w) for a fixed random w, so every output element counts.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
                          const GradcheckOptions& options = {});

}  // namespace ladon
