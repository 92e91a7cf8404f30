#include "isa.h"

#include <atomic>
#include <stdexcept>
#include <string>

namespace ladon::kernels {
namespace {

Isa detect() {
#if LADON_X86
  __builtin_cpu_init();
#if defined(__clang__)
  // Clang 14 does not know the level names: the features of x86-64-v3 and v4 one by one. It cannot
  // query F16C, LZCNT or MOVBE either; every CPU with AVX2, BMI2 and FMA (Haswell, Zen 1 on) has them.
  const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
                  __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt");
  const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vl");
  if (v4) return __builtin_cpu_supports("avx512bf16") ? Isa::avx512_bf16 : Isa::avx512;
  if (v3) return Isa::avx2;
#else
  // Exactly the levels the variants are compiled for (GCC knows them by name since GCC 12).
  if (__builtin_cpu_supports("x86-64-v4")) return __builtin_cpu_supports("avx512bf16") ? Isa::avx512_bf16 : Isa::avx512;
  if (__builtin_cpu_supports("x86-64-v3")) return Isa::avx2;
#endif
#endif
  return Isa::baseline;
}

// -1: no override. A relaxed atomic: one load per kernel call, and overrides come from one thread.
std::atomic<int> overridden{-1};

}  // namespace

Isa best_isa() {
  static const Isa isa = detect();  // function-local: safe to call from other static initialisers
  return isa;
}

Isa active_isa() {
  const int o = overridden.load(std::memory_order_relaxed);
  return o < 0 ? best_isa() : static_cast<Isa>(o);
}

bool isa_supported(Isa isa) { return static_cast<int>(isa) <= static_cast<int>(best_isa()); }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512_bf16:
      return "avx512_bf16";
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    case Isa::baseline:
      break;
  }
  return "baseline";
}

IsaOverride::IsaOverride(Isa isa) {
  if (!isa_supported(isa))
    throw std::invalid_argument(std::string("IsaOverride: this CPU does not support ") + isa_name(isa) +
                                " (best: " + isa_name(best_isa()) + ")");
  previous_ = overridden.exchange(static_cast<int>(isa), std::memory_order_relaxed);
}

IsaOverride::~IsaOverride() { overridden.store(previous_, std::memory_order_relaxed); }

}  // namespace ladon::kernels
