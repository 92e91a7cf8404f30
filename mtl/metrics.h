// Test metrics per task, accumulated over batches, chosen by the task's kind: argmax accuracy for
// a multiclass task (int64 class targets [batch]), accuracy at logit 0 (probability 0.5) for a
// binary one (float32 0/1 targets [batch]), mean squared error for a regression task (float32
// targets [batch] or [batch, out]). Auxiliary tasks are left out of the results.
//
//   mtl::TaskMetrics metrics(model.tasks());
//   for (auto& batch : test_batches) metrics.add(model(batch.x), batch.y);
//   std::printf("%s", metrics.format_table().c_str());
#pragma once

#include "layer_fence.h"

#include <string>
#include <vector>

#include "model.h"

namespace ladon::mtl {

struct TaskResult {
  std::string task;
  std::string metric;      // "accuracy" or "mse"
  double value = 0;        // NaN when no sample counted
  std::int64_t count = 0;  // samples that counted (masked-out ones do not)
};

class TaskMetrics {
 public:
  explicit TaskMetrics(std::vector<TaskSpec> tasks);

  // One batch: one output and one target per task. masks is empty, or has one entry per task:
  // undefined (every sample counts) or float32 [batch], nonzero where the sample has a label for
  // that task, so partly labelled data is measured only where labels exist.
  void add(const std::vector<Tensor>& outputs, const std::vector<Tensor>& targets,
           const std::vector<Tensor>& masks = {});
  std::vector<TaskResult> results() const;  // the non-auxiliary tasks, in model order
  std::string format_table() const;         // "task  metric  value  samples", one row per result
  void reset();

 private:
  std::vector<TaskSpec> tasks_;
  std::vector<double> sums_;  // correct predictions, or summed squared errors
  std::vector<std::int64_t> counts_;
};

}  // namespace ladon::mtl
