// Elementwise kernels over raw pointers: n elements, each operand with its own stride (0 means
// broadcast one value). Compiled for AVX-512, AVX2 and baseline x86-64; the loader picks one by CPUID.
#pragma once

#include <cstdint>

namespace ladon::kernels {

// gelu is exact (x * Phi(x), through verf); gelu_tanh the tanh approximation; *_grad their derivatives.
enum class UnaryOp { copy, neg, exp, log, sqrt, abs, relu, sigmoid, tanh, gelu, gelu_grad, gelu_tanh, gelu_tanh_grad, sign };
enum class BinaryOp { add, sub, mul, div, pow, maximum, minimum };
enum class CompareOp { eq, ne, lt, le, gt, ge };

void unary(UnaryOp op, std::int64_t n, const float* x, std::int64_t sx, float* out, std::int64_t so);
void binary(BinaryOp op, std::int64_t n, const float* a, std::int64_t sa, const float* b, std::int64_t sb,
            float* out, std::int64_t so);
// Comparisons write 1.0f where true and 0.0f where false.
void compare(CompareOp op, std::int64_t n, const float* a, std::int64_t sa, const float* b, std::int64_t sb,
             float* out, std::int64_t so);
void compare(CompareOp op, std::int64_t n, const std::int64_t* a, std::int64_t sa, const std::int64_t* b,
             std::int64_t sb, float* out, std::int64_t so);
void clamp(std::int64_t n, const float* x, std::int64_t sx, float low, float high, float* out, std::int64_t so);
void where(std::int64_t n, const float* cond, std::int64_t sc, const float* a, std::int64_t sa, const float* b,
           std::int64_t sb, float* out, std::int64_t so);
// out = 0 where y <= 0, else g: ReLU's backward, read from its output y (a NaN output passes g on).
void relu_grad(std::int64_t n, const float* y, const float* g, float* out);
void copy_i64(std::int64_t n, const std::int64_t* x, std::int64_t sx, std::int64_t* out, std::int64_t so);

}  // namespace ladon::kernels
