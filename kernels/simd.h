// Multi-versioning: a function marked LADON_SIMD_CLONES is compiled once per instruction set and
// the dynamic loader picks the best one for the CPU at start-up (GCC target_clones + ifunc), so one
// binary is fast here and still runs on any x86-64. Never build with -march=native.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define LADON_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LADON_SIMD_CLONES
#endif
#define LADON_INLINE [[gnu::always_inline]] inline
