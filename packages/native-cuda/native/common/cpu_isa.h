// Instruction-set levels of the hot CPU loops. Each kernel file includes its loop source (a *_simd.inc) once per
// level, between cpu_isa_begin.inc and cpu_isa_end.inc, which compile it for that level (#pragma GCC target) into its
// own namespace: isa4 (x86-64-v4: AVX-512), isa3 (x86-64-v3: AVX2, FMA, F16C), isa1 (the build's baseline). The
// kernel calls the level cpuIsaLevel() detects. Why not target_clones: F16C/AVX-512 intrinsics (hardware f16
// decode) can't be inlined into the templates a clone calls, but can into templates defined inside a target region.
#pragma once

// GCC ≥ 12 on x86-64 only (x86-64-vN names in targets and __builtin_cpu_supports; Clang doesn't apply
// #pragma GCC target to C++ functions); elsewhere only isa1 is built.
#if defined(__x86_64__) && defined(__GNUC__) && __GNUC__ >= 12 && !defined(__clang__) && !defined(__CUDACC__)
#define FAIRPRUNE_ISA_LEVELS 1
#include <immintrin.h>
#endif

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "dtype.h"

#define FAIRPRUNE_INLINE __attribute__((always_inline)) inline

namespace fairprune {

// 4, 3 or 1: the best level this CPU runs and this build contains (detected once), capped by FAIRPRUNE_CPU_ISA
// ("avx2" or "baseline"; read on every call, so tests can run each level's code on one machine).
inline int cpuIsaLevel() {
#ifdef FAIRPRUNE_ISA_LEVELS
  static const int detected = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return 4;
    if (__builtin_cpu_supports("x86-64-v3")) return 3;
    return 1;
  }();
  const char* cap = std::getenv("FAIRPRUNE_CPU_ISA");
  if (cap && std::strcmp(cap, "baseline") == 0) return 1;
  if (cap && std::strcmp(cap, "avx2") == 0) return detected < 3 ? detected : 3;
  return detected;
#else
  return 1;
#endif
}

}  // namespace fairprune

// Calls isaN::function(args...) for the level cpuIsaLevel() returns.
#ifdef FAIRPRUNE_ISA_LEVELS
#define FAIRPRUNE_ISA_CALL(function, ...)                                              \
  [&] {                                                                                \
    const int level = ::fairprune::cpuIsaLevel();                                      \
    return level == 4   ? isa4::function(__VA_ARGS__)                                  \
           : level == 3 ? isa3::function(__VA_ARGS__)                                  \
                        : isa1::function(__VA_ARGS__);                                 \
  }()
#else
#define FAIRPRUNE_ISA_CALL(function, ...) isa1::function(__VA_ARGS__)
#endif
