#include "binary_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "../core/error.h"

namespace ladon::mtl {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_inputs(const char* op, const std::vector<double>& scores, const std::vector<double>& labels,
                  const std::vector<double>& mask, bool binary) {
  LADON_CHECK(scores.size() == labels.size(), op, scores.size(), " scores but ", labels.size(), " labels");
  LADON_CHECK(mask.empty() || mask.size() == labels.size(), op, "mask has ", mask.size(), " entries, labels ",
              labels.size());
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (!mask.empty() && mask[i] == 0) continue;
    LADON_CHECK(!std::isnan(scores[i]), op, "score ", i, " is NaN");
    if (binary) LADON_CHECK(labels[i] == 0 || labels[i] == 1, op, "label ", i, " is ", labels[i], ", not 0 or 1");
  }
}

bool counted(const std::vector<double>& mask, std::size_t i) { return mask.empty() || mask[i] != 0; }

// AUC of the samples listed in `idx` (already checked).
double auc_of(const std::vector<double>& scores, const std::vector<double>& labels, std::vector<std::size_t>& idx) {
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  double rank_sum = 0, positives = 0;
  for (std::size_t i = 0; i < idx.size();) {
    std::size_t j = i;
    while (j < idx.size() && scores[idx[j]] == scores[idx[i]]) ++j;
    const double average_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2;  // ranks from 1
    for (std::size_t k = i; k < j; ++k)
      if (labels[idx[k]] == 1) {
        rank_sum += average_rank;
        positives += 1;
      }
    i = j;
  }
  const double negatives = static_cast<double>(idx.size()) - positives;
  if (positives == 0 || negatives == 0) return kNaN;
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

}  // namespace

double auc(const std::vector<double>& scores, const std::vector<double>& labels, const std::vector<double>& mask) {
  check_inputs("auc", scores, labels, mask, true);
  std::vector<std::size_t> idx;
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (counted(mask, i)) idx.push_back(i);
  return auc_of(scores, labels, idx);
}

double log_loss(const std::vector<double>& probs, const std::vector<double>& labels, const std::vector<double>& mask) {
  check_inputs("log_loss", probs, labels, mask, true);
  double sum = 0, n = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (!counted(mask, i)) continue;
    LADON_CHECK(probs[i] >= 0 && probs[i] <= 1, "log_loss", "probability ", i, " is ", probs[i], ", outside [0, 1]");
    const double p = std::clamp(probs[i], 1e-7, 1 - 1e-7);
    sum -= labels[i] == 1 ? std::log(p) : std::log1p(-p);
    n += 1;
  }
  return n == 0 ? kNaN : sum / n;
}

double accuracy_at_half(const std::vector<double>& probs, const std::vector<double>& labels,
                        const std::vector<double>& mask) {
  check_inputs("accuracy_at_half", probs, labels, mask, true);
  double right = 0, n = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (!counted(mask, i)) continue;
    right += (probs[i] >= 0.5) == (labels[i] == 1);
    n += 1;
  }
  return n == 0 ? kNaN : right / n;
}

double gauc(const std::vector<double>& scores, const std::vector<double>& labels, const std::vector<std::int64_t>& groups,
            const std::vector<double>& mask) {
  check_inputs("gauc", scores, labels, mask, true);
  LADON_CHECK(groups.size() == labels.size(), "gauc", groups.size(), " group ids but ", labels.size(), " labels");
  std::unordered_map<std::int64_t, std::vector<std::size_t>> members;
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (counted(mask, i)) members[groups[i]].push_back(i);
  double weighted = 0, weight = 0;
  for (auto& [group, idx] : members) {
    const double n = static_cast<double>(idx.size());
    const double a = auc_of(scores, labels, idx);
    if (std::isnan(a)) continue;
    weighted += n * a;
    weight += n;
  }
  return weight == 0 ? kNaN : weighted / weight;
}

double mse(const std::vector<double>& preds, const std::vector<double>& targets, const std::vector<double>& mask) {
  check_inputs("mse", preds, targets, mask, false);
  double sum = 0, n = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    if (!counted(mask, i)) continue;
    sum += (preds[i] - targets[i]) * (preds[i] - targets[i]);
    n += 1;
  }
  return n == 0 ? kNaN : sum / n;
}

}  // namespace ladon::mtl
