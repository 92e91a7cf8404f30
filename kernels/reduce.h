// Reductions and softmax over a contiguous [outer, n, inner] block, reducing the middle axis.
#pragma once

#include <cstdint>

namespace ladon::kernels {

// out[o, i] = sum_r x[o, r, i]; accumulates in double when inner == 1 for accuracy on long rows.
void sum_reduce(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* out);
// values[o, i] = max_r x[o, r, i], indices the first r that attains it.
void max_reduce(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* values,
                std::int64_t* indices);
// Softmax (or log-softmax) along the middle axis.
void softmax(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* out, bool log);

// Cross-entropy of each row of logits [rows, classes] against its class, fused with the softmax the
// gradient needs: loss[r] = logsumexp(x[r]) - x[r, target[r]], probs[r] = softmax(x[r]). Targets are
// valid class indices (the caller checks).
void softmax_cross_entropy(std::int64_t rows, std::int64_t classes, const float* logits, const std::int64_t* target,
                           float* probs, float* loss);

}  // namespace ladon::kernels
