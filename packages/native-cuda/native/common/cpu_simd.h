// Sixteen-lane float vectors (GCC/Clang vector extensions) for the CPU kernels: one source compiles to one zmm op
// in the avx512f clone, two ymm ops in the avx2 clone and four xmm ops in the baseline clone, without intrinsics.
// Loads use memcpy, so any alignment works.
#pragma once
#include <cstdint>
#include <cstring>

#include "dtype.h"

namespace fairprune::simd {

constexpr size_t kWidth = 16;
typedef float FV __attribute__((vector_size(4 * kWidth)));
typedef uint32_t UV __attribute__((vector_size(4 * kWidth)));
typedef int32_t IV __attribute__((vector_size(4 * kWidth)));
typedef uint16_t HV __attribute__((vector_size(2 * kWidth)));

#define FAIRPRUNE_INLINE __attribute__((always_inline)) inline

FAIRPRUNE_INLINE FV splat(float x) { return FV{} + x; }
FAIRPRUNE_INLINE FV select(IV mask, FV ifTrue, FV ifFalse) {
  return (FV)(((UV)mask & (UV)ifTrue) | (~(UV)mask & (UV)ifFalse));
}
FAIRPRUNE_INLINE FV abs(FV v) { return (FV)((UV)v & 0x7fffffffu); }
// NaN-skipping max/min: a NaN candidate never replaces the running value (NaN neurons are marked from sumAbs).
// Written as a vector ternary so it compiles to one maxps/minps, whose NaN rule is exactly this.
FAIRPRUNE_INLINE FV maxSkipNaN(FV running, FV v) { return v > running ? v : running; }
FAIRPRUNE_INLINE FV minSkipNaN(FV running, FV v) { return v < running ? v : running; }

// Exact binary16 → binary32 for kWidth values at once; same bit steps as halfToFloat in dtype.h.
FAIRPRUNE_INLINE FV halfToFloatVector(UV h) {
  UV bits = (h & 0x7fffu) << 13;
  const UV exponent = bits & (0x7c00u << 13);
  bits += (127u - 15u) << 23;
  bits += (UV)(exponent == (0x7c00u << 13)) & ((128u - 16u) << 23);  // Inf/NaN
  const FV subnormal = (FV)(bits + (1u << 23)) - splat(6.103515625e-05f);
  const FV value = select((IV)(exponent == 0u), subnormal, (FV)bits);
  return (FV)((UV)value | ((h & 0x8000u) << 16));
}

// Loads elements [i, i + kWidth) of a little-endian buffer as floats.
template <DType D>
FAIRPRUNE_INLINE FV loadVector(const uint8_t* bytes, size_t i) {
  if constexpr (D == DType::F32) {
    FV v;
    std::memcpy(&v, bytes + i * 4, sizeof v);
    return v;
  } else {
    HV raw;
    std::memcpy(&raw, bytes + i * 2, sizeof raw);
    const UV wide = __builtin_convertvector(raw, UV);
    if constexpr (D == DType::BF16) return (FV)(wide << 16);
    // Bit arithmetic rather than _Float16 conversion: GCC 12 scalarises the latter (one vcvtph2ps per element).
    return halfToFloatVector(wide);
  }
}

// Adds the lanes of v, widened to double, into out[0..kWidth).
FAIRPRUNE_INLINE void addWidened(double* out, FV v) {
  float lanes[kWidth];
  std::memcpy(lanes, &v, sizeof v);
  for (size_t l = 0; l < kWidth; ++l) out[l] += lanes[l];
}

// The lanes of v as an array (used once after a loop, so the vector itself stays in a register).
struct Lanes {
  float values[kWidth];
  explicit Lanes(FV v) { std::memcpy(values, &v, sizeof v); }
  float operator[](size_t l) const { return values[l]; }
};
// Loads/stores kWidth floats of an accumulator array.
FAIRPRUNE_INLINE FV loadFloats(const float* p) {
  FV v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
FAIRPRUNE_INLINE void storeFloats(float* p, FV v) { std::memcpy(p, &v, sizeof v); }

}  // namespace fairprune::simd
