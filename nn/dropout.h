// Dropout: during training, zeroes each element with probability p and scales the survivors by
// 1 / (1 - p) (inverted dropout), so the expected value is unchanged and evaluation needs no
// rescaling. In eval mode (see Module::eval) it is the identity.
#pragma once

#include "layer_fence.h"

#include <cstdint>

#include "../core/random.h"
#include "module.h"

namespace ladon::nn {

class Dropout : public Layer {
 public:
  // p in [0, 1). The layer owns its Generator, seeded from `seed`, so a run is reproducible
  // without touching the global generator; give each Dropout in a model its own seed, or their
  // masks will repeat one another.
  explicit Dropout(double p = 0.5, std::uint64_t seed = 0);

  Tensor forward(const Tensor& x) override;  // x: float32, any shape
  double p() const { return p_; }

 private:
  double p_;
  Generator gen_;
};

}  // namespace ladon::nn
