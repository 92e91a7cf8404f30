// Seeing what a multi-task model does: per-task gate statistics and the conflict between task
// gradients on the shared parameters, as data and as a readable table.
#pragma once

#include "layer_fence.h"

#include <string>
#include <vector>

#include "../core/tensor.h"
#include "sparse_moe.h"

namespace ladon::mtl {

struct GateStats {
  std::vector<double> mean_weight;  // per expert: the average gate weight over the batch
  double entropy = 0;               // mean per-sample entropy of the gate (nats); log(E) is uniform
  double load_imbalance = 0;        // max over experts of mean_weight * E: 1 is perfectly even
  std::int64_t unused_experts = 0;  // experts whose mean weight is below 1% of uniform

  // Expert e's mean weight is below 1% of uniform (1 / experts): the gate all but ignores it.
  bool unused(std::int64_t expert) const {
    return mean_weight.at(static_cast<std::size_t>(expert)) * static_cast<double>(mean_weight.size()) < 0.01;
  }
};

// Statistics of one task's gate weights [batch, experts] (rows sum to 1).
GateStats gate_stats(const Tensor& gate_weights);
// One row per task: "task  expert weights...  entropy  imbalance".
std::string format_gate_table(const std::vector<std::string>& tasks, const std::vector<GateStats>& stats);

struct GradientConflicts {
  std::vector<std::vector<double>> cosine;  // [T][T] cosine similarity of task gradients
  std::vector<double> norms;                // |g_t|
  std::int64_t conflicts = 0;               // task pairs with negative cosine
};

// Per-task gradients of the shared parameters (through grad(), leaving .grad() untouched; the
// graph is retained so the caller can still backward).
GradientConflicts gradient_conflicts(const std::vector<Tensor>& task_losses, const std::vector<Tensor>& shared);
std::string format_conflict_table(const std::vector<std::string>& tasks, const GradientConflicts& conflicts);

// What a sparse MoE layer's router did in its last forward (SparseMoE::stats()): one row per expert
// with its routed and computed assignments, share of all assignments and mean gate weight, then the
// load imbalance and the fraction of assignments dropped by capacity.
std::string format_router_table(const SparseMoEStats& stats);

}  // namespace ladon::mtl
