// Embedding tables for categorical features: Embedding looks rows up one index at a time;
// EmbeddingBag pools (sums or averages) the rows of each bag of indices, PyTorch-style, for sparse
// multi-valued features such as a user's recent items.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <optional>

#include "../core/ops.h"
#include "../core/random.h"
#include "../core/tensor.h"
#include "module.h"

namespace ladon::nn {

struct EmbeddingOptions {
  // The row for padding: initialised to zeros and never receives a gradient. Negative counts from the end.
  std::optional<std::int64_t> padding_idx = std::nullopt;
  // Before each lookup, rows looked up whose norm exceeds max_norm are rescaled in place (no grad)
  // to norm max_norm, as in PyTorch: w *= max_norm / (norm + 1e-7).
  std::optional<double> max_norm = std::nullopt;
  double norm_type = 2.0;  // the p of the p-norm for max_norm
};

class Embedding : public Layer {
 public:
  // Weight [num_embeddings, embedding_dim] drawn from N(0, 1), as PyTorch does.
  Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim, EmbeddingOptions options = {},
            Generator& gen = default_generator());

  // indices: int64 of any shape -> float32 of shape indices.shape() + [embedding_dim].
  Tensor forward(const Tensor& indices) override;
  void visit(Visitor& v) override { v("weight", weight); }

  std::int64_t num_embeddings() const { return weight.shape()[0]; }
  std::int64_t embedding_dim() const { return weight.shape()[1]; }
  std::optional<std::int64_t> padding_idx() const { return padding_idx_; }  // normalised to >= 0

  Tensor weight;  // [num_embeddings, embedding_dim]

 private:
  std::optional<std::int64_t> padding_idx_;
  EmbeddingOptions options_;
};

// Pools with ladon::embedding_bag (core/ops.h).
struct EmbeddingBagOptions {
  BagMode mode = BagMode::mean;  // PyTorch's default
  std::optional<std::int64_t> padding_idx = std::nullopt;
  std::optional<double> max_norm = std::nullopt;
  double norm_type = 2.0;
};

class EmbeddingBag : public Module {
 public:
  EmbeddingBag(std::int64_t num_embeddings, std::int64_t embedding_dim, EmbeddingBagOptions options = {},
               Generator& gen = default_generator());

  Tensor forward(const Tensor& indices, const Tensor& offsets = Tensor());
  Tensor operator()(const Tensor& indices, const Tensor& offsets = Tensor()) { return forward(indices, offsets); }
  void visit(Visitor& v) override { v("weight", weight); }

  Tensor weight;  // [num_embeddings, embedding_dim]

 private:
  std::optional<std::int64_t> padding_idx_;
  EmbeddingBagOptions options_;
};

}  // namespace ladon::nn
