// Matrix multiply on raw pointers: C = alpha * op(A) * op(B) + beta * C, row-major, with leading
// dimensions, so transposed views need no copy. op(A) is m x k, op(B) is k x n, C is m x n.
//
// sgemm is our own packed, cache-blocked GEMM (the BLIS/GotoBLAS loop structure) with
// register-blocked micro-kernels for AVX-512, AVX2 and plain C++, chosen by active_isa() (isa.h).
// It is single-threaded: callers split the work across threads through core/parallel.h.
//
// Contract, as in BLAS: beta == 0 means C is only written, never read (NaN garbage in C is
// overwritten); alpha == 0 or k == 0 means A and B are not read and C = beta * C.
#pragma once

#include <cstdint>

#include "isa.h"

namespace ladon::kernels {

enum class Activation { none, relu };

// Work fused into the store of C: C = activation(alpha * op(A) * op(B) + beta * C + bias), with
// bias[j] added to column j. Each register tile gets it right after its last k block, while it is
// still in L1, so Linear's bias and ReLU cost no extra pass over memory.
struct Epilogue {
  const float* bias = nullptr;  // n values, or none
  Activation activation = Activation::none;
};

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
           std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc,
           const Epilogue& epilogue = {});

// Same contract through OpenBLAS's cblas_sgemm: the reference tests and benchmarks compare against.
void sgemm_reference(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                     const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                     std::int64_t ldc, const Epilogue& epilogue = {});

// Same contract through the portable (no SIMD intrinsics) micro-kernel.
void sgemm_scalar(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                  const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                  std::int64_t ldc, const Epilogue& epilogue = {});

// sgemm forced onto one micro-kernel, for tests and benchmarks (sgemm itself follows active_isa(),
// so an IsaOverride forces it too). The ISA must be supported by the CPU. allow_unpacked = false
// forces the packed path even where small products would skip packing.
void sgemm_with_isa(Isa isa, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                    const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                    std::int64_t ldc, bool allow_unpacked = true, const Epilogue& epilogue = {});

}  // namespace ladon::kernels
