// Dataset: inputs plus one label tensor per task, all sharing the first (row) dimension.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <string>
#include <vector>

#include "../core/tensor.h"

namespace ladon::data {

struct Dataset {
  Tensor x;                             // [N, ...] float32
  std::vector<Tensor> y;                // y[t]: int64 [N] (classification) or float32 [N, 1] (regression)
  std::vector<std::string> task_names;  // one per task, or empty
  std::int64_t size() const { return x.defined() && x.dim() > 0 ? x.size(0) : 0; }
};

struct FashionMnist {
  Dataset train, test;
};

// Throws ladon::Error (prefixed with `op`) unless x is defined with at least one dim, every y[t]
// is defined with x's row count, and task_names is empty or has one name per task.
void check_dataset(const Dataset& dataset, const char* op);

// Rows [begin, end) of every tensor, as views sharing the dataset's storage (no copy). Throws
// unless 0 <= begin <= end <= size().
Dataset slice(const Dataset& dataset, std::int64_t begin, std::int64_t end);

}  // namespace ladon::data
