// The instruction sets ladon's kernels are compiled for. Every hot kernel exists once per set in
// the same binary (no -march=native); the best one the CPU supports is picked by CPUID on first use.
// Tests and benchmarks can run any supported variant with IsaOverride, so each one is checked
// against the portable baseline on this machine.
#pragma once

// The SIMD variants, their target attributes and intrinsics exist only for x86-64; elsewhere every
// kernel is its portable body alone, and only Isa::baseline is supported.
#if defined(__x86_64__)
#define LADON_X86 1
#else
#define LADON_X86 0
#endif

namespace ladon::kernels {

// baseline: x86-64 with SSE2; avx2: x86-64-v3; avx512: x86-64-v4; avx512_bf16: x86-64-v4 plus AVX512_BF16
// (vdpbf16ps: Cooper Lake, Sapphire Rapids, Zen 4/5). Each level includes the ones before it. Only the
// bf16 GEMM (gemm_bf16.h) has an avx512_bf16 variant; every other kernel runs its avx512 one there, and
// under a lower level the bf16 GEMM runs its emulation (the same numerics without vdpbf16ps).
enum class Isa { baseline, avx2, avx512, avx512_bf16 };
// Every set, weakest first: the one list that tests, benchmarks and dispatch walk.
inline constexpr Isa kIsas[] = {Isa::baseline, Isa::avx2, Isa::avx512, Isa::avx512_bf16};

Isa best_isa();    // the best set this CPU supports
Isa active_isa();  // best_isa() unless an IsaOverride is alive
bool isa_supported(Isa isa);
const char* isa_name(Isa isa);  // "baseline", "avx2", "avx512", "avx512_bf16"

// While alive, every kernel in the process runs its `isa` variant (for tests and benchmarks; not
// thread-safe against kernels running concurrently). Throws std::invalid_argument when the CPU
// lacks `isa`: running it would die on an illegal instruction.
class IsaOverride {
 public:
  explicit IsaOverride(Isa isa);
  ~IsaOverride();
  IsaOverride(const IsaOverride&) = delete;
  IsaOverride& operator=(const IsaOverride&) = delete;

 private:
  int previous_;  // the override this one replaced (-1: none)
};

}  // namespace ladon::kernels
