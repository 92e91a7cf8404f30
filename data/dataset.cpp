#include "dataset.h"

namespace ladon::data {

void check_dataset(const Dataset& dataset, const char* op) {
  LADON_CHECK(dataset.x.defined(), op, "dataset has no inputs (x is undefined)");
  LADON_CHECK(dataset.x.dim() >= 1, op, "dataset inputs must have a row dimension, got shape ",
              shape_str(dataset.x.shape()));
  const std::int64_t rows = dataset.x.size(0);
  LADON_CHECK(dataset.task_names.empty() || dataset.task_names.size() == dataset.y.size(), op, "dataset has ",
              dataset.y.size(), " label tensors but ", dataset.task_names.size(), " task names");
  for (std::size_t t = 0; t < dataset.y.size(); ++t) {
    const Tensor& y = dataset.y[t];
    const std::string name = dataset.task_names.empty() ? "" : " (task '" + dataset.task_names[t] + "')";
    LADON_CHECK(y.defined(), op, "y[", t, "]", name, " is undefined");
    LADON_CHECK(y.dim() >= 1 && y.size(0) == rows, op, "x has ", rows, " rows (shape ", shape_str(dataset.x.shape()),
                ") but y[", t, "]", name, " has shape ", shape_str(y.shape()));
  }
}

Dataset slice(const Dataset& dataset, std::int64_t begin, std::int64_t end) {
  check_dataset(dataset, "slice");
  LADON_CHECK(0 <= begin && begin <= end && end <= dataset.size(), "slice", "rows [", begin, ", ", end,
              ") are not a range within a dataset of ", dataset.size(), " rows");
  Dataset out;
  out.x = dataset.x.narrow(0, begin, end - begin);
  for (const Tensor& y : dataset.y) out.y.push_back(y.narrow(0, begin, end - begin));
  out.task_names = dataset.task_names;
  return out;
}

}  // namespace ladon::data
