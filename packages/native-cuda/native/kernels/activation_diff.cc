#include "activation_diff.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../common/cpu_simd.h"
#include "../common/parallel.h"

namespace fairprune {
namespace {

// Tokens are summed in float over runs of kFloatRun, then in double (as in weight_scan.cc).
constexpr size_t kFloatRun = 16;
// Work items are column chunks of one pair: at least kMinChunk wide, so every token row is read in long sequential
// segments (short segments at a large stride defeat the prefetcher), and at most kMaxChunk, so the chunk's
// partials and sums live on the stack (no allocation, no page faults per call).
constexpr size_t kMinChunk = 2048;
constexpr size_t kMaxChunk = 4096;

// One pair, columns [j0, j1): token rows are read in order, four at a time combined in registers, into float
// partials that are widened into double sums every kFloatRun tokens.
template <DType D>
FAIRPRUNE_INLINE double diffChunkImpl(const ActivationDiffInput& in, size_t pair, size_t j0, size_t j1,
                                      const ActivationDiffOutput& out) {
  using namespace simd;
  const size_t rowBytes = in.width * dtypeBytes(D);
  const uint8_t* a = in.a + pair * in.tokens * rowBytes;
  const uint8_t* b = in.b + pair * in.tokens * rowBytes;
  const size_t n = j1 - j0, vectorEnd = j0 + n - n % kWidth;
  // diffRun sits 3 cache lines past the end of absRun so stores to one don't 4K-alias loads of the other.
  constexpr size_t kSkew = 48;
  alignas(64) float runs[2 * kMaxChunk + kSkew];
  double sums[2 * kMaxChunk] = {};
  float* absRun = runs - j0;  // indexed by absolute column
  float* diffRun = absRun + n + kSkew;
  double* sumAbs = sums - j0;
  double* sumDiff = sumAbs + n;
  for (size_t t0 = 0; t0 < in.tokens; t0 += kFloatRun) {
    const size_t t1 = std::min(in.tokens, t0 + kFloatRun);
    std::fill(runs, runs + 2 * n + kSkew, 0.0f);
    size_t t = t0;
    for (; t + 4 <= t1; t += 4) {
      for (size_t j = j0; j < vectorEnd; j += kWidth) {
        const uint8_t* at = a + t * rowBytes;
        const uint8_t* bt = b + t * rowBytes;
        const FV d0 = loadVector<D>(at, j) - loadVector<D>(bt, j);
        const FV d1 = loadVector<D>(at + rowBytes, j) - loadVector<D>(bt + rowBytes, j);
        const FV d2 = loadVector<D>(at + 2 * rowBytes, j) - loadVector<D>(bt + 2 * rowBytes, j);
        const FV d3 = loadVector<D>(at + 3 * rowBytes, j) - loadVector<D>(bt + 3 * rowBytes, j);
        storeFloats(absRun + j, loadFloats(absRun + j) + ((simd::abs(d0) + simd::abs(d1)) + (simd::abs(d2) + simd::abs(d3))));
        storeFloats(diffRun + j, loadFloats(diffRun + j) + ((d0 + d1) + (d2 + d3)));
      }
    }
    for (; t < t1; ++t) {
      for (size_t j = j0; j < vectorEnd; j += kWidth) {
        const FV d = (loadVector<D>(a + t * rowBytes, j) - loadVector<D>(b + t * rowBytes, j));
        storeFloats(absRun + j, loadFloats(absRun + j) + simd::abs(d));
        storeFloats(diffRun + j, loadFloats(diffRun + j) + d);
      }
    }
    for (size_t j = j0; j < vectorEnd; ++j) {
      sumAbs[j] += absRun[j];
      sumDiff[j] += diffRun[j];
    }
  }
  for (size_t j = vectorEnd; j < j1; ++j) {
    for (size_t t = 0; t < in.tokens; ++t) {
      const double d = static_cast<double>(loadElement<D>(a + t * rowBytes, j)) - loadElement<D>(b + t * rowBytes, j);
      sumAbs[j] += std::fabs(d);
      sumDiff[j] += d;
    }
  }
  const double tokens = static_cast<double>(in.tokens);
  double chunkSumAbs = 0;
  for (size_t j = j0; j < j1; ++j) {
    out.positionwise[pair * in.width + j] = static_cast<float>(sumAbs[j] / tokens);
    out.pooled[pair * in.width + j] = static_cast<float>(std::fabs(sumDiff[j]) / tokens);
    chunkSumAbs += sumAbs[j];
  }
  return chunkSumAbs;
}

#define FAIRPRUNE_DIFF_VARIANT(D, SUFFIX)                                                                  \
  FAIRPRUNE_CPU_CLONES double diffChunk##SUFFIX(const ActivationDiffInput& in, size_t pair, size_t j0,      \
                                               size_t j1, const ActivationDiffOutput& out) {               \
    return diffChunkImpl<D>(in, pair, j0, j1, out);                                                         \
  }
FAIRPRUNE_DIFF_VARIANT(DType::F32, F32)
FAIRPRUNE_DIFF_VARIANT(DType::F16, F16)
FAIRPRUNE_DIFF_VARIANT(DType::BF16, BF16)
#undef FAIRPRUNE_DIFF_VARIANT

double diffChunk(const ActivationDiffInput& in, size_t pair, size_t j0, size_t j1, const ActivationDiffOutput& out) {
  switch (in.dtype) {
    case DType::F32: return diffChunkF32(in, pair, j0, j1, out);
    case DType::F16: return diffChunkF16(in, pair, j0, j1, out);
    case DType::BF16: return diffChunkBF16(in, pair, j0, j1, out);
  }
  return 0;
}

}  // namespace

WelfordState::WelfordState(size_t w)
    : width(w), mean(w, 0.0), m2(w, 0.0), max(w, -std::numeric_limits<float>::infinity()) {}

void activationDiffCpu(const ActivationDiffInput& in, const ActivationDiffOutput& out) {
  // Split each pair's width only as far as needed to give every thread work and to fit kMaxChunk.
  const size_t threads = cpuThreadCount();
  size_t chunksPerPair = in.pairs >= threads ? 1 : (threads + in.pairs - 1) / in.pairs;
  chunksPerPair = std::max<size_t>(1, std::min(chunksPerPair, in.width / kMinChunk));
  chunksPerPair = std::max(chunksPerPair, (in.width + kMaxChunk - 1) / kMaxChunk);
  const size_t chunkWidth = (in.width + chunksPerPair - 1) / chunksPerPair;
  std::vector<double> chunkSums(in.pairs * chunksPerPair, 0.0);
  parallelFor(in.pairs * chunksPerPair, 1, [&](size_t begin, size_t end, size_t) {
    for (size_t item = begin; item < end; ++item) {
      const size_t pair = item / chunksPerPair, chunk = item % chunksPerPair;
      const size_t j0 = std::min(in.width, chunk * chunkWidth), j1 = std::min(in.width, j0 + chunkWidth);
      if (j0 < j1) chunkSums[item] = diffChunk(in, pair, j0, j1, out);
    }
  });
  const double elements = static_cast<double>(in.tokens) * static_cast<double>(in.width);
  for (size_t pair = 0; pair < in.pairs; ++pair) {
    double total = 0;
    for (size_t chunk = 0; chunk < chunksPerPair; ++chunk) total += chunkSums[pair * chunksPerPair + chunk];
    out.meanAbs[pair] = total / elements;
  }
}

void welfordAddCpu(WelfordState& state, const float* statistics, size_t pairs) {
  const uint64_t count0 = state.count;
  parallelFor(state.width, 256, [&](size_t j0, size_t j1, size_t) {
    for (size_t p = 0; p < pairs; ++p) {
      const double n = static_cast<double>(count0 + p + 1);
      const float* row = statistics + p * state.width;
      for (size_t j = j0; j < j1; ++j) {
        const double x = row[j];
        const double delta = x - state.mean[j];
        state.mean[j] += delta / n;
        state.m2[j] += delta * (x - state.mean[j]);
        // NaN sticks: once max is NaN no comparison replaces it.
        state.max[j] = (row[j] > state.max[j] || std::isnan(row[j])) ? row[j] : state.max[j];
      }
    }
  });
  state.count = count0 + pairs;
}

}  // namespace fairprune
