// One learned number per task with its own Adam, for the loss balancers that learn per-task
// scalars (UncertaintyWeighting's log variances, IMTL-L's scales, GradNorm's weights, FAMO's
// logits): each computes their gradient itself and steps them after its backward, so no network
// optimizer can miss them, and saves them with the Adam state in its own state.
#pragma once

#include "layer_fence.h"

#include <memory>
#include <string>
#include <vector>

#include "../nn/optim.h"
#include "../nn/state.h"

namespace ladon::mtl {

class TaskScalars {
 public:
  TaskScalars(std::size_t tasks, float initial, nn::AdamOptions options);

  Tensor tensor() const { return values_; }  // [T] float32
  std::vector<double> values() const;
  // One Adam step with this gradient (one entry per task).
  void step(const std::vector<double>& gradient);
  // The values in place, for a method that projects them after its step (GradNorm renormalises).
  float* data() { return values_.data<float>(); }

  // The values under `key` ([T] tensor) and the Adam state under "adam.".
  void save(nn::StateDict& state, const std::string& key) const;
  void check(const nn::StateDict& state, const std::string& key, const char* op) const;
  void load(const nn::StateDict& state, const std::string& key);

 private:
  Tensor values_;
  std::unique_ptr<nn::Adam> adam_;
};

}  // namespace ladon::mtl
