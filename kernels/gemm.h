// Matrix multiply on raw pointers: C = alpha * op(A) * op(B) + beta * C, row-major, with leading
// dimensions, so transposed views need no copy. This first version calls OpenBLAS's single-threaded
// cblas_sgemm; callers split the work across threads through core/parallel.h.
#pragma once

#include <cstdint>

namespace ladon::kernels {

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc);

}  // namespace ladon::kernels
