// Reductions and softmax over a contiguous [outer, n, inner] block, reducing the middle axis.
#pragma once

#include <cstdint>

namespace ladon::kernels {

// out[o, i] = sum_r x[o, r, i]; accumulates in double when inner == 1 for accuracy on long rows.
void sum_reduce(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* out);
// values[o, i] = max_r x[o, r, i], indices the first r that attains it.
void max_reduce(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* values,
                std::int64_t* indices);
// The Gramian of `rows` rows of n floats, row r at x + r * stride: out[i * rows + j] = sum_k
// x_i[k] x_j[k] for every i, j (out symmetric, rows x rows doubles). The gradient methods' T x T
// task Gramian: a GEMM spent its time packing the [T, n] operands for a T x T result. Products are
// summed in float over blocks of 4096 columns, in 64 lanes; block totals in double, as sum_reduce.
void gram(std::int64_t rows, std::int64_t n, std::int64_t stride, const float* x, double* out);
// A mixture per row: out[r, j] = sum_e w[r * w_stride + e] * x[r, e, j], x contiguous [rows, n, width],
// out [rows, width]. MMoE's gate weights times its experts' outputs: as a batched GEMM it was one
// [1, n] x [n, width] product per row, whose dispatch (and, backward, packing) cost more than it.
void mix(std::int64_t rows, std::int64_t n, std::int64_t width, const float* w, std::int64_t w_stride, const float* x,
         float* out);
// Its backward for the gradient g [rows, width] of out: dw[r, e] = sum_j g[r, j] x[r, e, j] (dw
// contiguous [rows, n]; dot products in 16 float lanes summed as a tree) and dx[r, e, j] = w[r * w_stride + e] g[r, j].
void mix_backward(std::int64_t rows, std::int64_t n, std::int64_t width, const float* w, std::int64_t w_stride,
                  const float* x, const float* g, float* dw, float* dx);
// Softmax (or log-softmax) along the middle axis.
void softmax(std::int64_t outer, std::int64_t n, std::int64_t inner, const float* x, float* out, bool log);
// The softmax's backward along contiguous rows [rows, n]: out = y * (g - sum_i g_i y_i) per row, for
// y the softmax and g the gradient of it; one pass where mul, sum, sub and mul were four.
void softmax_backward(std::int64_t rows, std::int64_t n, const float* y, const float* g, float* out);

// Cross-entropy of each row of logits [rows, classes] against its class, fused with the softmax the
// gradient needs: loss[r] = logsumexp(x[r]) - x[r, target[r]], probs[r] = softmax(x[r]). Targets are
// valid class indices (the caller checks).
void softmax_cross_entropy(std::int64_t rows, std::int64_t classes, const float* logits, const std::int64_t* target,
                           float* probs, float* loss);

}  // namespace ladon::kernels
