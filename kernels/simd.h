// Multi-versioning: a kernel body written once in plain C++ (loops the compiler vectorises) is
// compiled for each instruction set of isa.h by Multiversion<body>, and run() calls the variant for
// the active set. One binary is fast here and still runs on any x86-64; never build with
// -march=native. The bodies must be LADON_INLINE so each variant inlines and vectorises its own copy.
#pragma once

#include "isa.h"

#define LADON_INLINE [[gnu::always_inline]] inline

namespace ladon::kernels {

template <auto Body>
struct Multiversion {
  template <typename... Args>
  [[gnu::target("arch=x86-64-v4")]] static void avx512(Args... args) {
    Body(args...);
  }
  template <typename... Args>
  [[gnu::target("arch=x86-64-v3")]] static void avx2(Args... args) {
    Body(args...);
  }
  template <typename... Args>
  static void baseline(Args... args) {
    Body(args...);
  }

  template <typename... Args>
  static void run(Args... args) {
    switch (active_isa()) {
      case Isa::avx512_bf16:  // no bf16 in these bodies: the x86-64-v4 variant
      case Isa::avx512:
        return avx512(args...);
      case Isa::avx2:
        return avx2(args...);
      case Isa::baseline:
        return baseline(args...);
    }
  }
};

}  // namespace ladon::kernels
