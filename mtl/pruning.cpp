#include "pruning.h"

#include <algorithm>
#include <cmath>

#include "../core/autograd.h"

namespace ladon::mtl {

namespace {
std::int64_t count_nonzero(const Tensor& t) {
  const float* p = t.data<float>();
  return std::count_if(p, p + t.numel(), [](float v) { return v != 0.0f; });
}

// The magnitude below which `fraction` of the values fall.
float threshold(std::vector<float> magnitudes, double fraction) {
  const auto k = static_cast<std::size_t>(std::floor(fraction * static_cast<double>(magnitudes.size())));
  if (k == 0) return -1.0f;  // prune nothing
  std::nth_element(magnitudes.begin(), magnitudes.begin() + static_cast<std::ptrdiff_t>(k - 1), magnitudes.end());
  return magnitudes[k - 1];
}
}  // namespace

MagnitudePruner::MagnitudePruner(std::vector<Tensor> parameters, double sparsity, bool global)
    : parameters_(std::move(parameters)), sparsity_(sparsity), global_(global) {
  LADON_CHECK(sparsity >= 0.0 && sparsity < 1.0, "MagnitudePruner", "sparsity must be in [0, 1), got ", sparsity);
  LADON_CHECK(!parameters_.empty(), "MagnitudePruner", "needs at least one parameter to prune, got none");
  for (const Tensor& p : parameters_)
    LADON_CHECK(p.dtype() == Dtype::float32 && p.is_contiguous(), "MagnitudePruner",
                "parameters must be contiguous float32, got ", dtype_name(p.dtype()), " ", shape_str(p.shape()));
}

PruningReport MagnitudePruner::prune() {
  NoGradGuard no_grad;
  PruningReport report;
  std::vector<float> all;
  for (const Tensor& p : parameters_) {
    report.parameters += p.numel();
    report.nonzero_before += count_nonzero(p);
    if (global_)
      for (std::int64_t i = 0; i < p.numel(); ++i) all.push_back(std::fabs(p.data<float>()[i]));
  }
  const float global_cut = global_ ? threshold(std::move(all), sparsity_) : 0.0f;
  masks_.clear();
  for (const Tensor& p : parameters_) {
    const float* w = p.data<float>();
    float cut = global_cut;
    if (!global_) {
      std::vector<float> magnitudes(static_cast<std::size_t>(p.numel()));
      for (std::int64_t i = 0; i < p.numel(); ++i) magnitudes[i] = std::fabs(w[i]);
      cut = threshold(std::move(magnitudes), sparsity_);
    }
    Tensor mask = empty(p.shape());
    float* m = mask.data<float>();
    for (std::int64_t i = 0; i < p.numel(); ++i) m[i] = std::fabs(w[i]) <= cut ? 0.0f : 1.0f;
    masks_.push_back(mask);
  }
  apply();
  for (const Tensor& p : parameters_) report.nonzero_after += count_nonzero(p);
  return report;
}

void MagnitudePruner::apply() {
  for (std::size_t k = 0; k < masks_.size(); ++k) {
    Tensor p = parameters_[k];
    float* w = p.data<float>();
    const float* m = masks_[k].data<float>();
    for (std::int64_t i = 0; i < p.numel(); ++i) w[i] *= m[i];
  }
}

}  // namespace ladon::mtl
