// Multi-versioning: a kernel body written once in plain C++ (loops the compiler vectorises) is
// compiled for each instruction set of isa.h by Multiversion<body>, and run() calls the variant for
// the active set. One binary is fast here and still runs on any x86-64; never build with
// -march=native. The bodies must be LADON_INLINE so each variant inlines and vectorises its own copy.
#pragma once

#include "isa.h"

#define LADON_INLINE [[gnu::always_inline]] inline

namespace ladon::kernels {

// Every kernel whose body runs through Multiversion, by its body's name without "_body". The
// variants test (tests/kernels/test_variants.cpp) walks this list, and checks that it names every
// Multiversion<..._body> in kernels/: a new kernel without a list entry or a variants row fails.
inline constexpr const char* kMultiversioned[] = {
    "unary",          "binary",           "compare",          "clamp",           "relu_grad",
    "sum_reduce",     "gram",             "softmax",          "softmax_cross_entropy",
    "sgd_update",     "adam_update",      "rmsprop_update",   "adagrad_update",
    "sgd_update_rows", "adam_update_rows", "adagrad_update_rows",
    "channel_mean_var", "channel_scale_shift", "channel_grad_sums", "channel_combine",
    "max_pool2d_2x2", "conv_pad",       "conv_store",     "conv_gather",      "layer_norm_rows", "layer_norm_backward_rows",
    "max_pool2d_2x2_backward", "round_to_bf16", "max_pool2d_2x2_values", "max_pool2d_2x2_taps",
    "max_pool2d_2x2_taps_backward", "mix", "mix_backward", "softmax_backward",
};
// Not through Multiversion, and so not in the list: sgemm (gemm.cpp) and gemm_bf16 (gemm_bf16.cpp)
// dispatch on active_isa() themselves, with their own micro-kernels per set; their tests
// (tests/kernels/test_gemm*.cpp) run every set of kIsas the CPU supports against the reference.
// Nor conv2d_direct (conv_direct.cpp): AVX-512 and AVX2 kernels hand-written like the GEMM
// micro-kernels; tests/kernels/test_conv_direct.cpp checks each against a plain loop. conv_pad, max_pool2d_2x2 and
// max_pool2d_2x2_backward are listed: their baseline and avx2 variants run through Multiversion,
// their avx512 ones are hand-written (conv.cpp), and the variants test holds those to the baseline
// like the others.

template <auto Body>
struct Multiversion {
#if LADON_X86
  template <typename... Args>
  [[gnu::target("arch=x86-64-v4")]] static void avx512(Args... args) {
    Body(args...);
  }
  template <typename... Args>
  [[gnu::target("arch=x86-64-v3")]] static void avx2(Args... args) {
    Body(args...);
  }
#endif
  template <typename... Args>
  static void baseline(Args... args) {
    Body(args...);
  }

  template <typename... Args>
  static void run(Args... args) {
#if LADON_X86
    switch (active_isa()) {
      case Isa::avx512_bf16:  // no bf16 in these bodies: the x86-64-v4 variant
      case Isa::avx512:
        return avx512(args...);
      case Isa::avx2:
        return avx2(args...);
      case Isa::baseline:
        return baseline(args...);
    }
#else
    baseline(args...);  // the only variant off x86 (isa_supported accepts baseline alone)
#endif
  }
};

}  // namespace ladon::kernels
