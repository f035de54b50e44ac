// Element types and exact 16-bit float conversions shared by the CPU kernels (the CUDA side uses cuda_fp16/bf16).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace fairprune {

enum class DType { F32, F16, BF16 };

inline size_t dtypeBytes(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

// IEEE binary16 -> binary32, exact for every bit pattern: subnormals become normal floats, Inf stays Inf,
// NaN stays NaN (payload shifted into the wider mantissa). Branch-free enough for the compiler to vectorise.
inline float halfToFloat(uint16_t h) {
  const uint32_t exponentMask = 0x7c00u << 13;
  uint32_t bits = static_cast<uint32_t>(h & 0x7fffu) << 13;
  const uint32_t exponent = bits & exponentMask;
  bits += (127u - 15u) << 23;
  float value;
  if (exponent == exponentMask) {
    bits += (128u - 16u) << 23;  // Inf/NaN: exponent all ones
    std::memcpy(&value, &bits, 4);
  } else if (exponent == 0) {
    // zero/subnormal: build 2^-14 * (1 + m/1024) and subtract the implicit 2^-14, which is exact.
    bits += 1u << 23;
    std::memcpy(&value, &bits, 4);
    value -= 6.103515625e-05f;
  } else {
    std::memcpy(&value, &bits, 4);
  }
  uint32_t out;
  std::memcpy(&out, &value, 4);
  out |= static_cast<uint32_t>(h & 0x8000u) << 16;
  std::memcpy(&value, &out, 4);
  return value;
}

// bfloat16 is the top half of a binary32, so widening is a shift.
inline float bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

// Loads element i from a little-endian byte buffer at any alignment (memcpy compiles to a plain unaligned load).
template <DType D>
inline float loadElement(const uint8_t* bytes, size_t i) {
  if constexpr (D == DType::F32) {
    float value;
    std::memcpy(&value, bytes + i * 4, 4);
    return value;
  } else {
    uint16_t raw;
    std::memcpy(&raw, bytes + i * 2, 2);
    return D == DType::F16 ? halfToFloat(raw) : bf16ToFloat(raw);
  }
}

}  // namespace fairprune
