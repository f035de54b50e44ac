// Device-side element loading shared by the CUDA kernels: exact f16/bf16 widening and 16-byte vector loads.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "../common/dtype.h"

namespace fairprune {

template <DType D>
struct DeviceElement {
  static constexpr int kBytes = D == DType::F32 ? 4 : 2;
  static constexpr int kPerVector = 16 / kBytes;  // elements in one 16-byte load

  __device__ __forceinline__ static float load(const uint8_t* base, size_t i) {
    if constexpr (D == DType::F32) {
      return reinterpret_cast<const float*>(base)[i];
    } else {
      return widen(reinterpret_cast<const uint16_t*>(base)[i]);
    }
  }

  __device__ __forceinline__ static float widen(uint16_t bits) {
    if constexpr (D == DType::F16) return __half2float(__ushort_as_half(bits));
    return __uint_as_float(static_cast<uint32_t>(bits) << 16);  // bf16: the top half of a binary32
  }

  // Loads kPerVector consecutive elements from a 16-byte aligned address, bypassing L1 (streamed once).
  __device__ __forceinline__ static void loadVector(const uint8_t* address, float (&out)[kPerVector]) {
    const uint4 v = __ldcs(reinterpret_cast<const uint4*>(address));
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
    if constexpr (D == DType::F32) {
#pragma unroll
      for (int k = 0; k < 4; ++k) out[k] = __uint_as_float(words[k]);
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        out[2 * k] = widen(static_cast<uint16_t>(words[k] & 0xffffu));
        out[2 * k + 1] = widen(static_cast<uint16_t>(words[k] >> 16));
      }
    }
  }
};

// NaN-skipping max/min (NaN neurons are marked from sumAbs at the end, as on the CPU).
__device__ __forceinline__ float maxSkipNaN(float a, float b) { return b > a ? b : a; }
__device__ __forceinline__ float minSkipNaN(float a, float b) { return b < a ? b : a; }

template <typename T>
__device__ __forceinline__ T warpSum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = maxSkipNaN(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ __forceinline__ float warpMin(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = minSkipNaN(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

inline int multiprocessorCount() {
  static const int count = [] {
    int device = 0, value = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&value, cudaDevAttrMultiProcessorCount, device);
    return value > 0 ? value : 1;
  }();
  return count;
}

}  // namespace fairprune
