// Internal: the strided loop every elementwise op runs on. Dims are coalesced where all operands
// are contiguous across them, so most calls become one long row handed to a vectorised kernel.
#pragma once

#include "../layer_fence.h"

#include <array>
#include <cstdint>
#include <vector>

#include "../parallel.h"
#include "../tensor.h"

namespace ladon::detail {

// Elements per parallel chunk: below this, threading costs more than it saves.
constexpr std::int64_t kElementwiseGrain = 32768;

// ReLU's backward from its output y: g where y > 0, else 0 (relu and the fused linear share it).
Tensor relu_grad(const Tensor& y, const Tensor& g);

// Calls row(n, offsets, strides) for every innermost row of `shape`, where offsets[k] is operand
// k's element offset of the row start and strides[k] its innermost stride. Rows are split across
// threads; a single long row is split into pieces.
template <std::size_t K, typename Row>
void for_each_row(const Shape& shape, const std::array<const Shape*, K>& strides,
                  const std::array<std::int64_t, K>& offsets, Row&& row) {
  // Coalesce: drop size-1 dims, merge neighbours that are contiguous for every operand.
  std::vector<std::int64_t> sizes;
  std::vector<std::array<std::int64_t, K>> dim_strides;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    std::array<std::int64_t, K> s;
    for (std::size_t k = 0; k < K; ++k) s[k] = (*strides[k])[d];
    if (!sizes.empty()) {
      bool mergeable = true;
      for (std::size_t k = 0; k < K; ++k) mergeable &= dim_strides.back()[k] == s[k] * shape[d];
      if (mergeable) {
        sizes.back() *= shape[d];
        dim_strides.back() = s;
        continue;
      }
    }
    sizes.push_back(shape[d]);
    dim_strides.push_back(s);
  }
  if (shape_numel(shape) == 0) return;
  if (sizes.empty()) {
    row(std::int64_t{1}, offsets, std::array<std::int64_t, K>{});
    return;
  }
  const std::int64_t inner = sizes.back();
  const std::array<std::int64_t, K> inner_strides = dim_strides.back();
  const std::size_t outer_dims = sizes.size() - 1;
  std::int64_t rows = 1;
  for (std::size_t d = 0; d < outer_dims; ++d) rows *= sizes[d];

  if (rows == 1) {
    parallel_for(0, inner, kElementwiseGrain, [&](std::int64_t begin, std::int64_t end) {
      std::array<std::int64_t, K> start = offsets;
      for (std::size_t k = 0; k < K; ++k) start[k] += begin * inner_strides[k];
      row(end - begin, start, inner_strides);
    });
    return;
  }
  const std::int64_t grain_rows = std::max<std::int64_t>(1, kElementwiseGrain / inner);
  parallel_for(0, rows, grain_rows, [&](std::int64_t begin, std::int64_t end) {
    std::vector<std::int64_t> index(outer_dims);
    std::array<std::int64_t, K> at = offsets;
    std::int64_t rest = begin;
    for (std::size_t d = outer_dims; d-- > 0;) {
      index[d] = rest % sizes[d];
      rest /= sizes[d];
      for (std::size_t k = 0; k < K; ++k) at[k] += index[d] * dim_strides[d][k];
    }
    for (std::int64_t r = begin; r < end; ++r) {
      row(inner, at, inner_strides);
      for (std::size_t d = outer_dims; d-- > 0;) {  // odometer increment
        for (std::size_t k = 0; k < K; ++k) at[k] += dim_strides[d][k];
        if (++index[d] < sizes[d]) break;
        for (std::size_t k = 0; k < K; ++k) at[k] -= sizes[d] * dim_strides[d][k];
        index[d] = 0;
      }
    }
  });
}

// Strides of t seen as broadcast to `shape` (0 along broadcast dims), right-aligned.
inline Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape strides(shape.size(), 0);
  const std::size_t lead = shape.size() - t.shape().size();
  for (std::size_t d = 0; d < t.shape().size(); ++d)
    strides[lead + d] = t.shape()[d] == 1 ? 0 : t.strides()[d];
  return strides;
}

// A tensor sharing t's storage with new geometry; no autograd.
inline Tensor make_view(const Tensor& t, Shape shape, Shape strides, std::int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.impl()->storage;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = t.dtype();
  return Tensor(std::move(impl));
}

inline void check_float(const char* op, const Tensor& t) {
  LADON_CHECK(t.defined(), op, "undefined tensor");
  LADON_CHECK(t.dtype() == Dtype::float32, op, "expected a float32 tensor, got ", dtype_name(t.dtype()),
              " of shape ", shape_str(t.shape()));
}

}  // namespace ladon::detail
