#include "report.h"

#include <cmath>
#include <cstdio>

#include "../core/autograd.h"
#include "../core/ops.h"

namespace ladon::mtl {

GateStats gate_stats(const Tensor& gate_weights) {
  LADON_CHECK(gate_weights.dim() == 2 && gate_weights.shape()[0] > 0, "gate_stats",
              "expects gate weights [batch, experts], got ", shape_str(gate_weights.shape()));
  const Tensor w = gate_weights.detach().contiguous();
  const std::int64_t batch = w.shape()[0], experts = w.shape()[1];
  const float* p = w.data<float>();
  GateStats s;
  s.mean_weight.assign(static_cast<std::size_t>(experts), 0.0);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t e = 0; e < experts; ++e) {
      const double v = p[b * experts + e];
      s.mean_weight[e] += v / static_cast<double>(batch);
      if (v > 0) s.entropy -= v * std::log(v) / static_cast<double>(batch);
    }
  for (std::int64_t e = 0; e < experts; ++e) {
    s.load_imbalance = std::max(s.load_imbalance, s.mean_weight[e] * static_cast<double>(experts));
    if (s.unused(e)) s.unused_experts++;
  }
  return s;
}

std::string format_gate_table(const std::vector<std::string>& tasks, const std::vector<GateStats>& stats) {
  LADON_CHECK(tasks.size() == stats.size(), "format_gate_table", tasks.size(), " task names for ", stats.size(),
              " gate statistics");
  std::string out;
  char cell[64];
  if (stats.empty()) return out;
  std::snprintf(cell, sizeof cell, "%-10s", "task");
  out += cell;
  for (std::size_t e = 0; e < stats[0].mean_weight.size(); ++e) {
    std::snprintf(cell, sizeof cell, "  e%-4zu", e);
    out += cell;
  }
  out += "  entropy  imbalance\n";
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    std::snprintf(cell, sizeof cell, "%-10s", tasks[t].c_str());
    out += cell;
    for (double m : stats[t].mean_weight) {
      std::snprintf(cell, sizeof cell, "  %.3f", m);
      out += cell;
    }
    std::snprintf(cell, sizeof cell, "  %7.3f  %9.2f\n", stats[t].entropy, stats[t].load_imbalance);
    out += cell;
  }
  return out;
}

GradientConflicts gradient_conflicts(const std::vector<Tensor>& task_losses, const std::vector<Tensor>& shared) {
  LADON_CHECK(!task_losses.empty() && !shared.empty(), "gradient_conflicts", "needs task losses and shared parameters");
  const std::size_t tasks = task_losses.size();
  std::vector<std::vector<float>> flat(tasks);
  for (std::size_t t = 0; t < tasks; ++t)
    for (const Tensor& g : grad({task_losses[t]}, shared, {.retain_graph = true})) {
      const std::vector<float> v = g.to_vector<float>();
      flat[t].insert(flat[t].end(), v.begin(), v.end());
    }
  GradientConflicts c;
  std::vector<std::vector<double>> dot(tasks, std::vector<double>(tasks, 0.0));
  for (std::size_t i = 0; i < tasks; ++i)
    for (std::size_t j = i; j < tasks; ++j) {
      double s = 0;
      for (std::size_t e = 0; e < flat[i].size(); ++e) s += static_cast<double>(flat[i][e]) * flat[j][e];
      dot[i][j] = dot[j][i] = s;
    }
  for (std::size_t i = 0; i < tasks; ++i) c.norms.push_back(std::sqrt(dot[i][i]));
  c.cosine.assign(tasks, std::vector<double>(tasks, 0.0));
  for (std::size_t i = 0; i < tasks; ++i)
    for (std::size_t j = 0; j < tasks; ++j) {
      const double denom = c.norms[i] * c.norms[j];
      c.cosine[i][j] = denom > 0 ? dot[i][j] / denom : 0.0;
      if (j > i && c.cosine[i][j] < 0) c.conflicts++;
    }
  return c;
}

std::string format_conflict_table(const std::vector<std::string>& tasks, const GradientConflicts& conflicts) {
  LADON_CHECK(tasks.size() == conflicts.cosine.size(), "format_conflict_table", tasks.size(), " task names for ",
              conflicts.cosine.size(), " tasks");
  std::string out;
  char cell[64];
  std::snprintf(cell, sizeof cell, "%-10s", "cosine");
  out += cell;
  for (const std::string& t : tasks) {
    std::snprintf(cell, sizeof cell, "  %8s", t.c_str());
    out += cell;
  }
  out += "      |g|\n";
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    std::snprintf(cell, sizeof cell, "%-10s", tasks[i].c_str());
    out += cell;
    for (double v : conflicts.cosine[i]) {
      std::snprintf(cell, sizeof cell, "  %8.3f", v);
      out += cell;
    }
    std::snprintf(cell, sizeof cell, "  %8.4f\n", conflicts.norms[i]);
    out += cell;
  }
  std::snprintf(cell, sizeof cell, "conflicting pairs: %lld\n", static_cast<long long>(conflicts.conflicts));
  return out + cell;
}

std::string format_router_table(const SparseMoEStats& stats) {
  const std::size_t experts = stats.selected.size();
  LADON_CHECK(stats.kept.size() == experts && stats.utilisation.size() == experts && stats.mean_gate.size() == experts,
              "format_router_table", "inconsistent statistics: ", experts, " experts selected but ", stats.kept.size(),
              " kept, ", stats.utilisation.size(), " utilisation and ", stats.mean_gate.size(), " mean gate entries");
  std::string out = "expert    routed  computed  share  mean gate\n";
  char row[128];
  for (std::size_t e = 0; e < experts; ++e) {
    std::snprintf(row, sizeof row, "%-6zu  %8lld  %8lld  %5.3f  %9.4f\n", e, static_cast<long long>(stats.selected[e]),
                  static_cast<long long>(stats.kept[e]), stats.utilisation[e], stats.mean_gate[e]);
    out += row;
  }
  std::snprintf(row, sizeof row, "tokens %lld  capacity %s  load imbalance %.3f  dropped %.4f\n",
                static_cast<long long>(stats.tokens), stats.capacity ? std::to_string(stats.capacity).c_str() : "none",
                stats.load_imbalance, stats.dropped_fraction);
  return out + row;
}

}  // namespace ladon::mtl
