#include "embedding.h"

#include <cmath>
#include <set>

#include "../core/autograd.h"
#include "../core/ops.h"

namespace ladon::nn {

namespace {

std::optional<std::int64_t> normalize_padding(const char* op, std::optional<std::int64_t> padding_idx,
                                              std::int64_t num) {
  if (!padding_idx) return std::nullopt;
  LADON_CHECK(*padding_idx >= -num && *padding_idx < num, op, "padding_idx ", *padding_idx,
              " is out of range for ", num, " embeddings");
  return *padding_idx < 0 ? *padding_idx + num : *padding_idx;
}

Tensor init_table(const char* op, std::int64_t num, std::int64_t dim, std::optional<std::int64_t> padding_idx,
                  Generator& gen) {
  LADON_CHECK(num > 0 && dim > 0, op, "sizes must be positive, got num_embeddings=", num, " embedding_dim=", dim);
  Tensor weight = randn({num, dim}, gen);
  if (padding_idx) std::fill_n(weight.data<float>() + *padding_idx * dim, dim, 0.0f);
  return weight.requires_grad_();
}

// Checks int64 indices within [0, num) and returns them flattened.
std::vector<std::int64_t> checked_indices(const char* op, const Tensor& indices, std::int64_t num) {
  LADON_CHECK(indices.defined() && indices.dtype() == Dtype::int64, op, "indices must be int64",
              indices.defined() ? std::string(", got ") + dtype_name(indices.dtype()) : std::string());
  std::vector<std::int64_t> idx = indices.to_vector<std::int64_t>();
  for (std::int64_t i : idx)
    LADON_CHECK(i >= 0 && i < num, op, "index ", i, " is out of range for ", num, " embeddings");
  return idx;
}

void check_weight(const char* op, const Tensor& weight) {
  LADON_CHECK(weight.defined() && weight.dtype() == Dtype::float32 && weight.dim() == 2, op,
              "weight must be a 2-D float32 tensor",
              weight.defined() ? std::string(", got ") + shape_str(weight.shape()) : std::string());
}

// Rescales, in place and outside autograd, the looked-up rows whose p-norm exceeds max_norm.
void renorm_rows(const char* op, Tensor& weight, const std::vector<std::int64_t>& idx, double max_norm, double p) {
  LADON_CHECK(weight.is_contiguous(), op, "max_norm needs a contiguous weight");
  const std::int64_t dim = weight.shape()[1];
  float* w = weight.data<float>();
  for (std::int64_t i : std::set<std::int64_t>(idx.begin(), idx.end())) {
    float* row = w + i * dim;
    double norm = 0;
    for (std::int64_t j = 0; j < dim; ++j) norm += std::pow(std::fabs(static_cast<double>(row[j])), p);
    norm = std::pow(norm, 1.0 / p);
    if (norm > max_norm) {
      const float scale = static_cast<float>(max_norm / (norm + 1e-7));
      for (std::int64_t j = 0; j < dim; ++j) row[j] *= scale;
    }
  }
}

}  // namespace

Embedding::Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim, EmbeddingOptions options,
                     Generator& gen)
    : padding_idx_(normalize_padding("Embedding", options.padding_idx, num_embeddings)), options_(options) {
  LADON_CHECK(!options.max_norm || *options.max_norm > 0, "Embedding", "max_norm must be positive, got ",
              options.max_norm.value_or(0));
  weight = init_table("Embedding", num_embeddings, embedding_dim, padding_idx_, gen);
}

Tensor Embedding::forward(const Tensor& indices) {
  check_weight("Embedding", weight);
  const std::vector<std::int64_t> idx = checked_indices("Embedding", indices, num_embeddings());
  if (options_.max_norm) {
    const NoGradGuard no_grad;
    renorm_rows("Embedding", weight, idx, *options_.max_norm, options_.norm_type);
  }
  const Tensor flat = tensor(idx, {static_cast<std::int64_t>(idx.size())});
  Tensor rows = index_select(weight, 0, flat);
  if (padding_idx_ && rows.requires_grad()) {
    // Same values, but the padding positions read a detached copy, so their gradient never arrives.
    const Tensor is_pad = eq(flat, scalar(static_cast<double>(*padding_idx_), Dtype::int64)).unsqueeze(1);
    rows = where(is_pad, rows.detach(), rows);
  }
  Shape shape = indices.shape();
  shape.push_back(embedding_dim());
  return rows.reshape(shape);
}

EmbeddingBag::EmbeddingBag(std::int64_t num_embeddings, std::int64_t embedding_dim, EmbeddingBagOptions options,
                           Generator& gen)
    : padding_idx_(normalize_padding("EmbeddingBag", options.padding_idx, num_embeddings)), options_(options) {
  LADON_CHECK(!options.max_norm || *options.max_norm > 0, "EmbeddingBag", "max_norm must be positive, got ",
              options.max_norm.value_or(0));
  weight = init_table("EmbeddingBag", num_embeddings, embedding_dim, padding_idx_, gen);
}

Tensor EmbeddingBag::forward(const Tensor& indices, const Tensor& offsets) {
  check_weight("EmbeddingBag", weight);
  if (options_.max_norm) {
    const std::vector<std::int64_t> idx = checked_indices("EmbeddingBag", indices, weight.shape()[0]);
    const NoGradGuard no_grad;
    renorm_rows("EmbeddingBag", weight, idx, *options_.max_norm, options_.norm_type);
  }
  return embedding_bag(weight, indices, offsets, options_.mode, padding_idx_);
}

}  // namespace ladon::nn
