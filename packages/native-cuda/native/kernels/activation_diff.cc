#include "activation_diff.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../common/parallel.h"

namespace fairprune {
namespace {

// Width tile whose two double accumulators (16 KB) stay in L1 while tokens stream past.
constexpr size_t kWidthTile = 1024;

template <DType D>
__attribute__((always_inline)) inline double diffTileImpl(const ActivationDiffInput& in, size_t pair, size_t j0,
                                                          size_t j1, const ActivationDiffOutput& out) {
  double sumAbs[kWidthTile] = {}, sumDiff[kWidthTile] = {};
  const size_t n = j1 - j0;
  for (size_t t = 0; t < in.tokens; ++t) {
    const size_t offset = (pair * in.tokens + t) * in.width + j0;
    const uint8_t* a = in.a + offset * dtypeBytes(D);
    const uint8_t* b = in.b + offset * dtypeBytes(D);
    for (size_t j = 0; j < n; ++j) {
      const double d = static_cast<double>(loadElement<D>(a, j)) - static_cast<double>(loadElement<D>(b, j));
      sumAbs[j] += std::fabs(d);
      sumDiff[j] += d;
    }
  }
  const double tokens = static_cast<double>(in.tokens);
  double tileSumAbs = 0;
  for (size_t j = 0; j < n; ++j) {
    out.positionwise[pair * in.width + j0 + j] = static_cast<float>(sumAbs[j] / tokens);
    out.pooled[pair * in.width + j0 + j] = static_cast<float>(std::fabs(sumDiff[j]) / tokens);
    tileSumAbs += sumAbs[j];
  }
  return tileSumAbs;
}

#define FAIRPRUNE_DIFF_VARIANT(D, SUFFIX)                                                                  \
  FAIRPRUNE_CPU_CLONES double diffTile##SUFFIX(const ActivationDiffInput& in, size_t pair, size_t j0,      \
                                               size_t j1, const ActivationDiffOutput& out) {               \
    return diffTileImpl<D>(in, pair, j0, j1, out);                                                         \
  }
FAIRPRUNE_DIFF_VARIANT(DType::F32, F32)
FAIRPRUNE_DIFF_VARIANT(DType::F16, F16)
FAIRPRUNE_DIFF_VARIANT(DType::BF16, BF16)
#undef FAIRPRUNE_DIFF_VARIANT

double diffTile(const ActivationDiffInput& in, size_t pair, size_t j0, size_t j1, const ActivationDiffOutput& out) {
  switch (in.dtype) {
    case DType::F32: return diffTileF32(in, pair, j0, j1, out);
    case DType::F16: return diffTileF16(in, pair, j0, j1, out);
    case DType::BF16: return diffTileBF16(in, pair, j0, j1, out);
  }
  return 0;
}

}  // namespace

WelfordState::WelfordState(size_t w)
    : width(w), mean(w, 0.0), m2(w, 0.0), max(w, -std::numeric_limits<float>::infinity()) {}

void activationDiffCpu(const ActivationDiffInput& in, const ActivationDiffOutput& out) {
  const size_t tiles = (in.width + kWidthTile - 1) / kWidthTile;
  std::vector<double> tileSums(in.pairs * tiles, 0.0);
  parallelFor(in.pairs * tiles, 1, [&](size_t begin, size_t end, size_t) {
    for (size_t item = begin; item < end; ++item) {
      const size_t pair = item / tiles, tile = item % tiles;
      const size_t j0 = tile * kWidthTile, j1 = std::min(in.width, j0 + kWidthTile);
      tileSums[item] = diffTile(in, pair, j0, j1, out);
    }
  });
  const double elements = static_cast<double>(in.tokens) * static_cast<double>(in.width);
  for (size_t pair = 0; pair < in.pairs; ++pair) {
    double total = 0;
    for (size_t tile = 0; tile < tiles; ++tile) total += tileSums[pair * tiles + tile];
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
