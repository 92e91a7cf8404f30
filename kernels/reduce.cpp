#include "reduce.h"

#include <cmath>
#include <limits>
#include <vector>

#include "simd.h"

namespace ladon::kernels {

LADON_SIMD_CLONES
void sum_reduce(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* out) {
  for (std::int64_t o = 0; o < outer; ++o) {
    const float* block = x + o * n * inner;
    float* dst = out + o * inner;
    if (inner == 1) {
      // Eight float partial sums vectorise; combining them in double keeps long rows accurate.
      float partial[8] = {};
      std::int64_t r = 0;
      for (; r + 8 <= n; r += 8)
        for (int k = 0; k < 8; ++k) partial[k] += block[r + k];
      double total = 0;
      for (float p : partial) total += p;
      for (; r < n; ++r) total += block[r];
      dst[0] = static_cast<float>(total);
    } else {
      for (std::int64_t i = 0; i < inner; ++i) dst[i] = 0.0f;
      for (std::int64_t r = 0; r < n; ++r) {
        const float* row = block + r * inner;
        for (std::int64_t i = 0; i < inner; ++i) dst[i] += row[i];
      }
    }
  }
}

void max_reduce(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* values,
                std::int64_t* indices) {
  for (std::int64_t o = 0; o < outer; ++o) {
    const float* block = x + o * n * inner;
    for (std::int64_t i = 0; i < inner; ++i) {
      float best = -std::numeric_limits<float>::infinity();
      std::int64_t best_index = 0;
      for (std::int64_t r = 0; r < n; ++r) {
        const float v = block[r * inner + i];
        if (v > best || std::isnan(v)) {
          best = v;
          best_index = r;
          if (std::isnan(v)) break;  // NaN propagates, as in NumPy
        }
      }
      values[o * inner + i] = best;
      if (indices) indices[o * inner + i] = best_index;
    }
  }
}

void softmax(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* out, bool log) {
  std::vector<float> top(static_cast<std::size_t>(inner)), total(static_cast<std::size_t>(inner));
  for (std::int64_t o = 0; o < outer; ++o) {
    const float* src = x + o * n * inner;
    float* dst = out + o * n * inner;
    for (std::int64_t i = 0; i < inner; ++i) top[i] = -std::numeric_limits<float>::infinity();
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t i = 0; i < inner; ++i) top[i] = std::max(top[i], src[r * inner + i]);
    for (std::int64_t i = 0; i < inner; ++i) total[i] = 0.0f;
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t i = 0; i < inner; ++i) {
        const float e = std::exp(src[r * inner + i] - top[i]);
        total[i] += e;
        if (!log) dst[r * inner + i] = e;
      }
    for (std::int64_t i = 0; i < inner; ++i) {
      if (log)
        total[i] = top[i] + std::log(total[i]);
      else
        total[i] = 1.0f / total[i];
    }
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t i = 0; i < inner; ++i) {
        if (log)
          dst[r * inner + i] = src[r * inner + i] - total[i];
        else
          dst[r * inner + i] *= total[i];
      }
  }
}

}  // namespace ladon::kernels
