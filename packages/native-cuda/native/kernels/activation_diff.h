// Activation difference between two activation tensors [pairs, tokens, width] of one dtype, per pair:
//   positionwise[j] = mean_t |a[t,j] - b[t,j]|,  pooled[j] = |mean_t a[t,j] - mean_t b[t,j]|,
//   meanAbs = mean over t,j of |a - b|.
// Differences are taken in float; sums run in float over at most 16 tokens, then in double; results are rounded to
// float once (relative error ≲ 16·2^-24 of sum |a − b|). NaN/Inf follow IEEE arithmetic into the results (Inf - Inf = NaN), so callers can detect them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/dtype.h"

namespace fairprune {

struct ActivationDiffInput {
  const uint8_t* a;  // [pairs, tokens, width], any alignment
  const uint8_t* b;
  size_t pairs;
  size_t tokens;
  size_t width;
  DType dtype;
  size_t bytes() const { return 2 * pairs * tokens * width * dtypeBytes(dtype); }  // both tensors
};

struct ActivationDiffOutput {
  float* positionwise;  // [pairs, width]
  float* pooled;        // [pairs, width]
  double* meanAbs;      // [pairs]
};

void activationDiffCpu(const ActivationDiffInput& input, const ActivationDiffOutput& output);

// CUDA entries (stubs that throw in a build without CUDA, addon/cuda_off.cc).
void activationDiffCuda(const ActivationDiffInput& input, const ActivationDiffOutput& output);
double activationDiffCudaDeviceBenchmark(const ActivationDiffInput& hostInput, int repeats,
                                         const ActivationDiffOutput& output);

}  // namespace fairprune
