// Synthetic multi-task regression data with controllable task relatedness (MMoE, Ma et al. KDD
// 2018, section 3.2; see shared/reference/mtl-methods.md section 1).
#pragma once

#include "layer_fence.h"

#include <cstdint>

#include "dataset.h"

namespace ladon::data {

struct SyntheticOptions {
  std::int64_t samples = 12000;
  std::int64_t dim = 100;    // d, at least 2 (two orthogonal directions are needed)
  double correlation = 0.5;  // p = cos(w1, w2), in [-1, 1]
  double scale = 1.0;        // c = |w1| = |w2|
  int sinusoids = 10;        // m
  double noise_std = 0.1;    // standard deviation of ε (the paper's variance 0.01)
  std::uint64_t seed = 0;
};

// x ~ N(0, 1) float32 [samples, dim]; two regression tasks "task1", "task2", float32 [samples, 1]:
//   y_k = w_kᵀx + Σ_i sin(α_i w_kᵀx + β_i) + ε_k,   w1 = c·u1,   w2 = c·(p·u1 + √(1−p²)·u2),
// with u1, u2 orthonormal (Gram-Schmidt on Gaussian vectors) and α_i, β_i ~ N(0, 1) shared by both
// tasks. Everything is drawn from one generator seeded with `seed`, in a fixed order (u1, u2, α,
// β, x, ε), so the same seed with a different p gives the same x and directions: only w2 moves.
// Throws ladon::Error on samples < 0, dim < 2, |p| > 1, sinusoids < 0 or noise_std < 0.
Dataset mmoe_synthetic(const SyntheticOptions& options = {});

}  // namespace ladon::data
