// Dropout: during training, zeroes each element with probability p and scales the survivors by
// 1 / (1 - p) (inverted dropout), so the expected value is unchanged and evaluation needs no
// rescaling. In eval mode (see Module::eval) it is the identity.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <optional>

#include "../core/random.h"
#include "module.h"

namespace ladon::nn {

class Dropout : public Layer {
 public:
  // p in [0, 1). The layer owns its Generator. Without a seed it draws one from the global
  // generator, so two Dropouts draw different masks and manual_seed() makes a run reproducible;
  // with a seed, its masks are fixed by that seed alone.
  explicit Dropout(double p = 0.5, std::optional<std::uint64_t> seed = std::nullopt);

  Tensor forward(const Tensor& x) override;  // x: float32, any shape
  double p() const { return p_; }
  void visit(Visitor& v) override { v.generator("generator", gen_); }

 private:
  double p_;
  Generator gen_;
};

}  // namespace ladon::nn
