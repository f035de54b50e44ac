// Activation difference between two activation tensors [pairs, tokens, width] of one dtype, per pair:
//   positionwise[j] = mean_t |a[t,j] - b[t,j]|,  pooled[j] = |mean_t a[t,j] - mean_t b[t,j]|,
//   meanAbs = mean over t,j of |a - b|.
// Differences are taken in float; sums run in float over at most 16 tokens, then in double; results are rounded to
// float once (relative error ≲ 16·2^-24 of sum |a − b|). NaN/Inf follow IEEE arithmetic into the results (Inf - Inf = NaN), so callers can detect them.
//
// Welford accumulation: running per-neuron mean, population variance and max of one per-pair statistic vector.
// The update is sequential per neuron, so adding pairs in a batch gives bit-identical results to adding them one
// by one. A NaN statistic makes that neuron's mean, variance and max NaN from then on.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

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

enum class DiffStatistic { Positionwise, Pooled };

// Running state in double; max in float like the statistics it tracks.
struct WelfordState {
  size_t width = 0;
  uint64_t count = 0;
  std::vector<double> mean, m2;
  std::vector<float> max;
  explicit WelfordState(size_t w);
};

void activationDiffCpu(const ActivationDiffInput& input, const ActivationDiffOutput& output);
// Adds `pairs` statistic vectors (row-major [pairs, width]) to state, in order.
void welfordAddCpu(WelfordState& state, const float* statistics, size_t pairs);

#ifdef FAIRPRUNE_WITH_CUDA
void activationDiffCuda(const ActivationDiffInput& input, const ActivationDiffOutput& output);
double activationDiffCudaDeviceBenchmark(const ActivationDiffInput& hostInput, int repeats,
                                         const ActivationDiffOutput& output);

// Welford state resident on the device between calls; only result() copies it back.
class CudaWelford {
 public:
  CudaWelford(size_t width, DiffStatistic statistic);
  ~CudaWelford();
  CudaWelford(const CudaWelford&) = delete;
  CudaWelford& operator=(const CudaWelford&) = delete;
  void add(const ActivationDiffInput& input);  // computes the statistic and updates the state in one kernel
  void result(uint64_t& count, double* mean, double* m2, float* max) const;

 private:
  size_t width_;
  DiffStatistic statistic_;
  uint64_t count_ = 0;
  double* mean_ = nullptr;
  double* m2_ = nullptr;
  float* max_ = nullptr;
};
#endif

}  // namespace fairprune
