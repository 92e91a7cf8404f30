// Metrics of a binary task over a whole evaluation set (scores are probabilities in [0, 1] or any
// monotone score where only the order matters, as for AUC), each respecting a label mask.
//
//   std::vector<double> p = ..., y = ...;            // or from tensors: to_vector<float>()
//   double a = mtl::auc(p, y);                        // exact, ties counted half, O(n log n)
//
// Inputs: scores, labels (0 or 1) and an optional mask (same length; 0 leaves a sample out).
// AUC and GAUC are NaN when the counted samples hold only one class (the AUC is undefined then);
// every metric is NaN when no sample counts. Lengths that differ, labels other than 0/1, a NaN
// score, or (for log loss) a probability outside [0, 1] throw ladon::Error naming the metric.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <vector>

namespace ladon::mtl {

// Area under the ROC curve: the probability that a random positive scores above a random negative,
// a tie counting 1/2 (Mann-Whitney U over average ranks).
double auc(const std::vector<double>& scores, const std::vector<double>& labels, const std::vector<double>& mask = {});
// Mean of -[y log p + (1 - y) log(1 - p)], p clipped to [1e-7, 1 - 1e-7] (float32 probabilities).
double log_loss(const std::vector<double>& probs, const std::vector<double>& labels,
                const std::vector<double>& mask = {});
// Fraction with (p >= 0.5) == y.
double accuracy_at_half(const std::vector<double>& probs, const std::vector<double>& labels,
                        const std::vector<double>& mask = {});
// Group AUC (as in DIN, Zhou et al. 2018): the AUC within each group (a user id), averaged with
// weights equal to each group's counted samples, over groups holding both classes.
double gauc(const std::vector<double>& scores, const std::vector<double>& labels, const std::vector<std::int64_t>& groups,
            const std::vector<double>& mask = {});
// Mean squared error (for regression tasks).
double mse(const std::vector<double>& preds, const std::vector<double>& targets, const std::vector<double>& mask = {});

}  // namespace ladon::mtl
