#include "metrics.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include "../core/autograd.h"
#include "binary_metrics.h"

namespace ladon::mtl {

std::vector<std::string> task_metric_names(const TaskSpec& task) {
  switch (task.kind) {
    case TaskKind::binary: return {"accuracy", "auc", "log_loss"};
    case TaskKind::regression: return {"mse"};
    case TaskKind::multiclass: break;
  }
  return {"accuracy"};
}

bool higher_is_better(const std::string& metric) { return metric == "accuracy" || metric == "auc"; }

TaskMetrics::TaskMetrics(std::vector<TaskSpec> tasks)
    : tasks_(std::move(tasks)),
      sums_(tasks_.size(), 0.0),
      counts_(tasks_.size(), 0),
      logits_(tasks_.size()),
      labels_(tasks_.size()) {
  check_tasks("TaskMetrics", tasks_);
}

void TaskMetrics::add(const std::vector<Tensor>& outputs, const std::vector<Tensor>& targets,
                      const std::vector<Tensor>& masks) {
  const std::size_t tasks = tasks_.size();
  LADON_CHECK(outputs.size() == tasks && targets.size() == tasks && (masks.empty() || masks.size() == tasks),
              "TaskMetrics", outputs.size(), " outputs, ", targets.size(), " targets and ", masks.size(),
              " masks for ", tasks, " tasks");
  NoGradGuard no_grad;
  for (std::size_t t = 0; t < tasks; ++t) {
    const TaskSpec& spec = tasks_[t];
    const Tensor out = outputs[t].detach().contiguous();
    LADON_CHECK(out.dim() == 2 && out.shape()[1] == spec.out && out.dtype() == Dtype::float32, "TaskMetrics",
                "task '", spec.name, "' expects float32 outputs [batch, ", spec.out, "], got ", shape_str(out.shape()));
    const std::int64_t batch = out.shape()[0], classes = spec.out;
    const Tensor y = targets[t].contiguous();
    const bool classification = spec.kind == TaskKind::multiclass;
    if (classification)
      LADON_CHECK(y.dtype() == Dtype::int64 && y.dim() == 1 && y.shape()[0] == batch, "TaskMetrics", "task '",
                  spec.name, "' expects int64 class targets [", batch, "], got ", dtype_name(y.dtype()), " ",
                  shape_str(y.shape()));
    else
      LADON_CHECK(y.dtype() == Dtype::float32 && y.numel() == batch * classes && y.dim() >= 1 &&
                      y.shape()[0] == batch,
                  "TaskMetrics", "task '", spec.name, "' expects float32 targets [", batch, "] or [", batch, ", ",
                  classes, "], got ", dtype_name(y.dtype()), " ", shape_str(y.shape()));
    const Tensor mask = masks.empty() || !masks[t].defined() ? Tensor() : masks[t].contiguous();
    if (mask.defined())
      LADON_CHECK(mask.dtype() == Dtype::float32 && mask.dim() == 1 && mask.shape()[0] == batch, "TaskMetrics",
                  "task '", spec.name, "' expects a float32 mask [", batch, "], got ", dtype_name(mask.dtype()), " ",
                  shape_str(mask.shape()));
    const float* o = out.data<float>();
    const float* m = mask.defined() ? mask.data<float>() : nullptr;
    for (std::int64_t b = 0; b < batch; ++b) {
      if (m && m[b] == 0.0f) continue;
      const float* row = o + b * classes;
      if (classification) {
        const std::int64_t label = y.data<std::int64_t>()[b];
        LADON_CHECK(label >= 0 && label < classes, "TaskMetrics", "task '", spec.name, "' target ", label,
                    " out of range for ", classes, " classes");
        std::int64_t best = 0;  // the first maximum, as argmax
        for (std::int64_t c = 1; c < classes; ++c)
          if (row[c] > row[best]) best = c;
        sums_[t] += best == label ? 1.0 : 0.0;
      } else if (spec.kind == TaskKind::binary) {
        const float label = y.data<float>()[b];
        LADON_CHECK(label == 0.0f || label == 1.0f, "TaskMetrics", "binary task '", spec.name, "' target ", label,
                    " is not 0 or 1");
        sums_[t] += (row[0] > 0.0f) == (label == 1.0f) ? 1.0 : 0.0;
        logits_[t].push_back(row[0]);
        labels_[t].push_back(label);
      } else {
        double squared = 0;  // mean over the task's outputs, as mse_loss
        for (std::int64_t c = 0; c < classes; ++c) {
          const double error = static_cast<double>(row[c]) - y.data<float>()[b * classes + c];
          squared += error * error;
        }
        sums_[t] += squared / static_cast<double>(classes);
      }
      counts_[t]++;
    }
  }
}

std::vector<TaskResult> TaskMetrics::results() const {
  std::vector<TaskResult> out;
  for (std::size_t t = 0; t < tasks_.size(); ++t) {
    if (tasks_[t].auxiliary) continue;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::vector<std::string> names = task_metric_names(tasks_[t]);
    out.push_back({tasks_[t].name, names[0], counts_[t] ? sums_[t] / static_cast<double>(counts_[t]) : nan, counts_[t]});
    if (tasks_[t].kind != TaskKind::binary) continue;
    // AUC ranks the logits (sigmoid is monotone, and two large logits stay apart where their
    // probabilities would round to the same double).
    std::vector<double> probs(logits_[t].size());
    for (std::size_t i = 0; i < probs.size(); ++i) probs[i] = 1.0 / (1.0 + std::exp(-logits_[t][i]));
    out.push_back({tasks_[t].name, "auc", auc(logits_[t], labels_[t]), counts_[t]});
    out.push_back({tasks_[t].name, "log_loss", counts_[t] ? log_loss(probs, labels_[t]) : nan, counts_[t]});
  }
  return out;
}

std::string TaskMetrics::format_table() const {
  std::string out;
  char line[160];
  std::snprintf(line, sizeof line, "%-10s  %-8s  %8s  %8s\n", "task", "metric", "value", "samples");
  out += line;
  for (const TaskResult& r : results()) {
    std::snprintf(line, sizeof line, "%-10s  %-8s  %8.4f  %8lld\n", r.task.c_str(), r.metric.c_str(), r.value,
                  static_cast<long long>(r.count));
    out += line;
  }
  return out;
}

void TaskMetrics::reset() {
  sums_.assign(tasks_.size(), 0.0);
  counts_.assign(tasks_.size(), 0);
  logits_.assign(tasks_.size(), {});
  labels_.assign(tasks_.size(), {});
}

}  // namespace ladon::mtl
