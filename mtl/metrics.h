// Test metrics per task, accumulated over batches, chosen by the task's kind (task_metric_names):
// argmax accuracy for a multiclass task (int64 class targets [batch]); for a binary one (float32
// 0/1 targets [batch] or [batch, 1], one logit each) accuracy at logit 0 (probability 0.5), AUC
// (exact over every sample added, ties counting half; NaN while the counted labels hold one class)
// and log loss of sigmoid(logit), as mtl::auc and mtl::log_loss compute them (binary_metrics.h);
// mean squared error for a regression task (float32 targets [batch] or [batch, out]). Auxiliary
// tasks are left out of the results. A binary task keeps its logits and labels until
// reset(), since AUC needs them all: 16 bytes a sample.
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
  std::string metric;      // "accuracy", "auc", "log_loss" or "mse"
  double value = 0;        // NaN when no sample counted
  std::int64_t count = 0;  // samples that counted (masked-out ones do not)
};

// The metrics TaskMetrics reports for a task of this kind, the first being the task's main one:
// {"accuracy"} (multiclass), {"accuracy", "auc", "log_loss"} (binary), {"mse"} (regression).
std::vector<std::string> task_metric_names(const TaskSpec& task);
// Whether a larger value of the metric is better: true for "accuracy" and "auc".
bool higher_is_better(const std::string& metric);

class TaskMetrics {
 public:
  explicit TaskMetrics(std::vector<TaskSpec> tasks);

  // One batch: one output and one target per task. masks is empty, or has one entry per task:
  // undefined (every sample counts) or float32 [batch], nonzero where the sample has a label for
  // that task, so partly labelled data is measured only where labels exist.
  void add(const std::vector<Tensor>& outputs, const std::vector<Tensor>& targets,
           const std::vector<Tensor>& masks = {});
  // The non-auxiliary tasks in model order, each task's metrics in task_metric_names order.
  std::vector<TaskResult> results() const;
  std::string format_table() const;         // "task  metric  value  samples", one row per result
  void reset();

 private:
  std::vector<TaskSpec> tasks_;
  std::vector<double> sums_;  // correct predictions, or summed squared errors
  std::vector<std::int64_t> counts_;
  std::vector<std::vector<double>> logits_, labels_;  // binary tasks: every counted sample
};

}  // namespace ladon::mtl
