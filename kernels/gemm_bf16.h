// Matrix multiply in bfloat16 with float32 accumulation: the GEMM of bf16 mixed precision
// (core/autocast.h). Same contract as sgemm (gemm.h): C = activation(alpha * op(A) * op(B) + beta * C
// + bias), row-major, float32 in and out, except that every element of op(A) and op(B) is first
// rounded to bfloat16 (float_to_bf16). Products of two bf16 values are exact in float32; they are
// summed in float32, a k-pair at a time (p even, then p odd, as vdpbf16ps does it):
//
//   acc = ftz(acc + A(i,p+1) B(p+1,j));  acc = ftz(acc + A(i,p) B(p,j))      (ftz: denormal -> 0)
//
// so the only error beyond float32 is the input rounding: |C - A B| <= (2^-8 + 2^-8 + k 2^-24) sum
// |A||B| roughly, i.e. about 3 significant decimal digits per input and float32 sums.
//
// Variants (isa.h): under Isa::avx512_bf16 one of three micro-kernels (Bf16Kernel): `dot`, a packed
// 14 x 32 tile on vdpbf16ps; `fma`, the same sums in float32 FMAs on the bf16 halves split in
// registers, with flush-to-zero on for the k loop; `amx`, 32 x 32 blocks of C on the AMX tiles
// (tdpbf16ps). `fma` is for the CPUs whose vdpbf16ps is slower than their FMAs: on the Intel Xeon
// of this project's machine (AVX-512, AVX512_BF16, AMX) vdpbf16ps issues at 0.5 per cycle against 2
// FMAs, so its 64 flops per instruction peak at half the FP32 GEMM's roof (measured: 117 against
// 234 GFLOP/s in one core's register-only loop), while tdpbf16ps reaches 3.1 TFLOP/s there. gemm_bf16
// picks `amx` where the CPU has it (Sapphire Rapids on), else `fma` on Intel CPUs and `dot` on
// others (Zen 4/5: two vdpbf16ps per cycle on Zen 5). Under any lower level the same numerics
// emulated in float32 multiply-adds, so every program and test runs on every x86-64. dot, fma and
// the emulation agree bit for bit on normal inputs (same products, same order, same flushing); amx
// sums the same exact products in tdpbf16ps's own order and precision (closer to the exact sum than
// the sequential order, on the Intel Xeon) and flushes denormal results too: all are held to the
// bound in test_gemm_bf16.cpp. Single-threaded, like sgemm: callers split the work.
#pragma once

#include <cstdint>

#include "gemm.h"
#include "isa.h"

namespace ladon::kernels {

// float32 -> bfloat16 bits, round to nearest even. NaN stays NaN (made quiet: top mantissa bit set,
// sign kept), infinities stay infinite, finite values too large round to infinity, and float32
// denormals become a zero of the same sign (as vcvtneps2bf16 and vdpbf16ps treat them).
std::uint16_t float_to_bf16(float x);
// bfloat16 bits -> float32, exact.
float bf16_to_float(std::uint16_t bits);
// x[i] = bf16_to_float(float_to_bf16(x[i])) in place: float32 operands that hold bf16 values, for
// kernels that multiply them in float32 (the direct convolution under bf16 autocast: a product of
// two bf16 values is exact in float32).
void round_to_bf16(std::int64_t n, float* x);

void gemm_bf16(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
               std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc,
               const Epilogue& epilogue = {});

// gemm_bf16 forced onto one variant (avx512_bf16: gemm_bf16_kernel(); lower: emulated), for tests
// and benchmarks. The ISA must be supported by the CPU (gemm_bf16 itself follows active_isa(), so
// an IsaOverride forces it too).
void gemm_bf16_with_isa(Isa isa, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                        float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                        float* c, std::int64_t ldc, const Epilogue& epilogue = {});

// The micro-kernels of the Isa::avx512_bf16 level: dot on vdpbf16ps, fma (the emulation's sums in
// FMAs), both needing AVX512_BF16 (their packing converts with it), amx on the AMX tiles (needs
// AMX-BF16 and, on Linux, the kernel's leave to use the tile state, asked for once per process).
// gemm_bf16_kernel(): amx where it is available; else fma on Intel CPUs (their vdpbf16ps is slower
// than their FMAs) and dot elsewhere. gemm_bf16_kernel_for(m, n, k): the one gemm_bf16 runs for a
// product at that level (dot for small ones, see gemm_bf16.cpp). gemm_bf16_with_kernel forces one,
// for tests and benchmarks: std::invalid_argument when the machine lacks it. dot and fma give the
// emulation's bits; amx its own sums, within the bound above.
enum class Bf16Kernel { dot, fma, amx };
bool bf16_kernel_supported(Bf16Kernel kernel);
const char* bf16_kernel_name(Bf16Kernel kernel);  // "dot (vdpbf16ps)", "fma", "amx"
Bf16Kernel gemm_bf16_kernel();
Bf16Kernel gemm_bf16_kernel_for(std::int64_t m, std::int64_t n, std::int64_t k);
void gemm_bf16_with_kernel(Bf16Kernel kernel, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
                           std::int64_t k, float alpha, const float* a, std::int64_t lda, const float* b,
                           std::int64_t ldb, float beta, float* c, std::int64_t ldc, const Epilogue& epilogue = {});

}  // namespace ladon::kernels
