// A bank of n MLP experts that all read the same input, computed together: the first layer of all
// experts is one [batch, in] x [in, n*h] GEMM, deeper layers one batched GEMM over experts.
#pragma once

#include "layer_fence.h"

#include "../core/random.h"
#include "../nn/module.h"

namespace ladon::mtl {

class ExpertBank : public nn::Module {
 public:
  // Each expert: in -> hidden[0] -> ... -> hidden.back(), ReLU after every layer.
  ExpertBank(std::int64_t in, std::int64_t experts, std::vector<std::int64_t> hidden,
             Generator& gen = default_generator());

  Tensor forward(const Tensor& x);  // [batch, in] -> [batch, experts, out_features()]
  void visit(Visitor& v) override;

  std::int64_t in_features() const { return in_; }
  std::int64_t num_experts() const { return experts_; }
  std::int64_t out_features() const { return hidden_.back(); }
  // Keeps only the listed experts (ascending, distinct): their weights are copied unchanged, the
  // others' are freed. Parameters change, so build the optimizer again afterwards.
  void keep_experts(const std::vector<std::int64_t>& experts);

 private:
  std::int64_t in_, experts_;
  std::vector<std::int64_t> hidden_;
  Tensor first_weight_;  // [in, experts * hidden[0]]: expert e owns columns [e*h, (e+1)*h)
  Tensor first_bias_;    // [experts * hidden[0]]
  std::vector<Tensor> weights_;  // layer l >= 1: [experts, hidden[l-1], hidden[l]]
  std::vector<Tensor> biases_;   // layer l >= 1: [experts, 1, hidden[l]]
};

}  // namespace ladon::mtl
