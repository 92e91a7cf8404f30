// bf16 mixed precision: while an AutocastGuard(Precision::bf16) is alive on a thread, the matrix
// products of the ops it runs (matmul, linear, and through them the MMoE expert bank and every
// Linear layer; conv2d) compute in bfloat16 with float32 accumulation (kernels/gemm_bf16.h, and
// kernels/conv.h's direct convolutions). Nothing else
// changes: tensors stay float32 (the GEMM rounds its operands to bf16 while packing them, so no bf16
// copy exists), as do parameters, optimizer state, losses, softmax, normalisation statistics,
// reductions and elementwise ops. What PyTorch's CPU autocast and oneDNN run in bf16, minus the
// bf16 outputs: ladon's products keep their float32 sums.
//
// Backward: an op records the precision of its forward and runs its backward products (dX = dY W,
// dW = dYᵀ X) in it too, whatever scope backward() is called from, as PyTorch's autocast does (the
// backward of a bf16 matmul is a bf16 matmul). The gradients are float32 sums of bf16 products and
// reach the float32 master weights as float32; they are two thirds of a step's GEMM work, so keeping
// them in float32 would forfeit most of the speed-up. bf16 has float32's exponent range, so no loss
// scaling is needed.
//
//   {
//     ladon::AutocastGuard bf16_scope(ladon::Precision::bf16);
//     auto loss = nn::cross_entropy(model(x), y);
//     loss.backward();  // inside or outside the scope: the same
//   }
//
// On CPUs without AVX512_BF16 the same numerics run emulated (correct everywhere, slower than float32).
#pragma once

#include "layer_fence.h"

#include "../kernels/gemm.h"

namespace ladon {

enum class Precision { fp32, bf16 };

const char* precision_name(Precision precision);  // "fp32", "bf16"

// The precision this thread's matrix products run in: fp32 unless an AutocastGuard is alive.
Precision autocast_precision();

// Sets autocast_precision() for its lifetime on this thread (RAII, nests like NoGradGuard).
class AutocastGuard {
 public:
  explicit AutocastGuard(Precision precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  Precision previous_;
};

// The GEMM an op calls for its products in `precision`: kernels::sgemm or kernels::gemm_bf16 (same
// signature and contract). Ops read autocast_precision() once, in their forward, and keep it for
// their backward.
using GemmKernel = decltype(&kernels::sgemm);
GemmKernel gemm_kernel(Precision precision);

}  // namespace ladon
