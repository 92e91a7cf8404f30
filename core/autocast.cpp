#include "autocast.h"

#include "../kernels/gemm_bf16.h"

namespace ladon {

namespace {
thread_local Precision t_precision = Precision::fp32;
}  // namespace

const char* precision_name(Precision precision) { return precision == Precision::bf16 ? "bf16" : "fp32"; }

Precision autocast_precision() { return t_precision; }

AutocastGuard::AutocastGuard(Precision precision) : previous_(t_precision) { t_precision = precision; }

AutocastGuard::~AutocastGuard() { t_precision = previous_; }

GemmKernel gemm_kernel(Precision precision) {
  return precision == Precision::bf16 ? &kernels::gemm_bf16 : &kernels::sgemm;
}

}  // namespace ladon
