// Every differentiable op, declared in one place. Binary ops broadcast by NumPy rules. Each op's
// forward and backward live together in one file of core/ops/ (see core/ops/README.md).
#pragma once

#include "layer_fence.h"

#include <optional>
#include <utility>
#include <vector>

#include "../kernels/gemm.h"
#include "tensor.h"

namespace ladon {

// Elementwise binary (float32), broadcasting.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);  // ties send half the gradient to each side
Tensor minimum(const Tensor& a, const Tensor& b);

// Elementwise unary (float32).
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);  // NaN stays NaN
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
// GELU: x * Phi(x), Phi the standard normal CDF. Gelu::exact (the default, PyTorch's) computes Phi
// through erf; Gelu::tanh is the approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
// PyTorch's approximate="tanh". The two differ by up to 4.7e-4 (near |x| = 2).
enum class Gelu { exact, tanh };
Tensor gelu(const Tensor& x, Gelu form = Gelu::exact);
Tensor clamp(const Tensor& x, double low, double high);
Tensor normal_cdf(const Tensor& x);  // the standard normal CDF: erfc(-x / sqrt 2) / 2

// Reductions. An empty dims list reduces over every dim.
Tensor sum(const Tensor& x, const std::vector<std::int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<std::int64_t>& dims = {}, bool keepdim = false);
// The largest element, 0-d. Tied maxima share the gradient equally (as PyTorch's max() and amax
// do); max(x, dim) below sends it to the first of them, the one its index names.
Tensor max(const Tensor& x);
struct ValuesIndices {
  Tensor values;
  Tensor indices;  // int64
};
ValuesIndices max(const Tensor& x, std::int64_t dim, bool keepdim = false);
// Sums a gradient of a broadcast result back down to shape (used by every broadcasting backward).
Tensor sum_to(const Tensor& x, const Shape& shape);

// Linear algebra: 2-D @ 2-D, 3-D @ 3-D (batched), 3-D @ 2-D (the matrix shared across the batch).
Tensor matmul(const Tensor& a, const Tensor& b);
// activation(x @ weight^T + bias) for x [batch, in], weight [out, in], bias [out] (or undefined): one
// GEMM whose epilogue adds the bias and applies the activation; the backward is three GEMM-shaped
// products and a column sum, with no transposed copies. nn::Linear is built on it.
using Activation = kernels::Activation;
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Activation activation = Activation::none);
// out[b] = sum_e weights[b, e] * values[b, e] for weights [batch, n], values [batch, n, width]:
// [batch, width], the mixture of n experts' outputs by one gate (MMoE, OMoE). The same as
// matmul(weights.unsqueeze(1), values).squeeze(1) without a tiny GEMM per row either way.
Tensor mix(const Tensor& weights, const Tensor& values);

Tensor softmax(const Tensor& x, std::int64_t dim);
Tensor log_softmax(const Tensor& x, std::int64_t dim);
// Per-sample cross-entropy -log softmax(logits[b])[target[b]] of logits [batch, classes] against
// int64 class indices [batch], in one pass (softmax, loss and the saved probabilities together);
// the backward is (softmax - onehot) * grad. nn::cross_entropy is built on it.
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& target);

// Joining and splitting.
Tensor cat(const std::vector<Tensor>& tensors, std::int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, std::int64_t dim);
std::vector<Tensor> split(const Tensor& x, std::int64_t size, std::int64_t dim);  // chunks of `size`

// Indexing with int64 indices.
Tensor index_select(const Tensor& x, std::int64_t dim, const Tensor& index);  // index is 1-D
// Scatter-add, the adjoint of index_select: out = base, then out[.., index[j], ..] += source[.., j, ..]
// along dim (repeated indices accumulate). index is 1-D; source has base's shape except along dim,
// where it has index.numel() entries. Gradients: g to base, index_select(g, dim, index) to source.
Tensor index_add(const Tensor& base, std::int64_t dim, const Tensor& index, const Tensor& source);
// out[i][j] = x[i][index[i][j]] for dim 1; index has x's shape except along dim.
Tensor gather(const Tensor& x, std::int64_t dim, const Tensor& index);
// Pools rows of weight [num, dim] per bag -> [bags, dim]. Either indices is 1-D and offsets (1-D,
// int64) gives each bag's start (bag b is indices[offsets[b] .. offsets[b + 1]), the last runs to
// the end), or indices is 2-D [bags, n] with offsets undefined. Entries equal to padding_idx
// (negative counts from the end) are skipped and not counted by mean; an empty bag gives zeros.
// Differentiable in weight; with sparse, weight's gradient is row-sparse (row_sparse_gradient: one
// row per lookup), which a leaf table keeps as Tensor::row_grad. nn::EmbeddingBag is built on it.
enum class BagMode { sum, mean };
Tensor embedding_bag(const Tensor& weight, const Tensor& indices, const Tensor& offsets = Tensor(),
                     BagMode mode = BagMode::mean, std::optional<std::int64_t> padding_idx = std::nullopt,
                     bool sparse = false);
// Picks a where condition is non-zero, else b; all three broadcast.
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);

// Not differentiable: comparisons give float32 0/1 masks; argmax gives int64.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor argmax(const Tensor& x, std::int64_t dim, bool keepdim = false);
bool equal(const Tensor& a, const Tensor& b);  // same shape, dtype and values
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

// ---- Convolution and pooling (core/ops/conv.cpp) ------------------------------------------------
// Images are [N, C, H, W] float32 (a 3-D [C, H, W] input is treated as a batch of one and gives a
// 3-D result). Output sizes follow PyTorch: out = floor((in + 2 * pad - dilation * (k - 1) - 1) /
// stride) + 1.

// A pair of sizes for height and width; a single number means both: `.stride = 2`, `.padding = {1, 0}`.
struct Size2 {
  std::int64_t h = 0, w = 0;
  constexpr Size2(std::int64_t both) : h(both), w(both) {}  // implicit: one number means both
  constexpr Size2(std::int64_t h_, std::int64_t w_) : h(h_), w(w_) {}
  friend bool operator==(const Size2&, const Size2&) = default;
};

struct ConvOptions {
  Size2 stride = 1;
  Size2 padding = 0;  // zeros on both sides
  Size2 dilation = 1;
  std::int64_t groups = 1;  // C and O must both divide by it
};
// x [N, C, H, W], weight [O, C / groups, kh, kw], bias [O] or undefined -> activation(conv + bias),
// [N, O, out_h, out_w]. im2col over blocks of images + one GEMM per block and group, bias and
// activation applied as the result is stored; backward gives input (col2im), weight and bias
// gradients, the ReLU's mask applied as the output gradient is read.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), const ConvOptions& options = {},
              Activation activation = Activation::none);
// max_pool2d(conv2d(x, weight, bias, options, activation), 2) as one op, with the same values and
// gradients: where the direct convolution runs all three products (stride 1, dilation 1, one group,
// AVX-512) it pools each image's convolution output while it is in cache, so the full-size output
// and its gradient are never written; elsewhere it runs the two ops. Sequential uses it for Conv2d,
// ReLU, MaxPool2d(2).
Tensor conv2d_max_pool2x2(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                          const ConvOptions& options = {}, Activation activation = Activation::none);

struct PoolOptions {
  Size2 stride = 0;   // 0: the kernel size, as in PyTorch
  Size2 padding = 0;  // at most half the kernel
  Size2 dilation = 1;             // max_pool2d only
  bool count_include_pad = true;  // avg_pool2d only: padding zeros count in the divisor
};
// Window maximum; padding never wins. Backward routes each output gradient to its window's argmax
// (the first maximum on ties).
Tensor max_pool2d(const Tensor& x, Size2 kernel, const PoolOptions& options = {});
ValuesIndices max_pool2d_with_indices(const Tensor& x, Size2 kernel, const PoolOptions& options = {});  // flat h * W + w
Tensor avg_pool2d(const Tensor& x, Size2 kernel, const PoolOptions& options = {});
// Averages PyTorch's adaptive windows [floor(o * in / out), ceil((o + 1) * in / out)) to output_size.
Tensor adaptive_avg_pool2d(const Tensor& x, Size2 output_size);

// ---- Normalisation (core/ops/norm.cpp) ----------------------------------------------------------

struct BatchNormOutput {
  Tensor y;     // x's shape
  Tensor mean;  // [C]: the batch mean per channel (not differentiable)
  Tensor var;   // [C]: the biased batch variance per channel (not differentiable)
};
// Batch normalisation with the batch's own statistics (training mode): x [N, C, ...] normalised per
// channel over every dim but 1, y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c. weight
// and bias are [C], or both undefined for no affine. Two passes over x forward, two backward.
BatchNormOutput batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
// Normalises each sample of x over its trailing dims, which must equal normalized_shape:
// y = (x - mean) / sqrt(var + eps) * weight + bias (biased variance), weight and bias of
// normalized_shape, or both undefined for no affine. One fused op: one pass over x forward, one
// backward (the composite took seven).
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps);

// Operators: tensor with tensor, or with a scalar on either side.
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, scalar(b)); }
inline Tensor operator-(const Tensor& a, double b) { return sub(a, scalar(b)); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, scalar(b)); }
inline Tensor operator/(const Tensor& a, double b) { return div(a, scalar(b)); }
inline Tensor operator+(double a, const Tensor& b) { return add(scalar(a), b); }
inline Tensor operator-(double a, const Tensor& b) { return sub(scalar(a), b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(scalar(a), b); }
inline Tensor operator/(double a, const Tensor& b) { return div(scalar(a), b); }

namespace detail {
// Copies src (broadcast to dst's shape) into the possibly strided dst; the building block of
// contiguous(), cat() and narrow's backward. Not recorded by autograd.
void copy_into(const Tensor& dst, const Tensor& src);
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);
std::int64_t normalize_dim(const char* op, std::int64_t dim, std::int64_t rank);
}  // namespace detail

}  // namespace ladon
