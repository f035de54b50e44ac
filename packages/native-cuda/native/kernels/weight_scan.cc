#include "weight_scan.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../common/parallel.h"

namespace fairprune {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr size_t kLanes = 8;  // independent accumulators per row so the compiler can keep them in vector registers

struct NeuronAccumulator {
  double sum = 0, sumSquares = 0, sumAbs = 0;
  float max = -kInf, min = kInf, maxAbs = 0;
};

// Comparisons skip NaN here; a NaN neuron is marked afterwards from sumAbs (NaN iff some element was NaN).
inline void store(const NeuronAccumulator& acc, size_t neuron, const WeightScanOutput& out) {
  const bool hasNaN = std::isnan(acc.sumAbs);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  out.max[neuron] = hasNaN ? nan : acc.max;
  out.min[neuron] = hasNaN ? nan : acc.min;
  out.maxAbs[neuron] = hasNaN ? nan : acc.maxAbs;
  out.sum[neuron] = static_cast<float>(acc.sum);
  out.sumSquares[neuron] = static_cast<float>(acc.sumSquares);
  out.sumAbs[neuron] = static_cast<float>(acc.sumAbs);
}

// 'rows' axis: each neuron is one contiguous row, reduced with kLanes interleaved accumulators.
template <DType D>
__attribute__((always_inline)) inline void scanRowsImpl(const uint8_t* data, size_t cols, size_t rowBegin,
                                                        size_t rowEnd, const WeightScanOutput& out) {
  const size_t rowBytes = cols * dtypeBytes(D);
  for (size_t r = rowBegin; r < rowEnd; ++r) {
    const uint8_t* row = data + r * rowBytes;
    double sum[kLanes] = {}, sumSq[kLanes] = {}, sumAbs[kLanes] = {};
    float mx[kLanes], mn[kLanes], mxAbs[kLanes] = {};
    std::fill(mx, mx + kLanes, -kInf);
    std::fill(mn, mn + kLanes, kInf);
    size_t i = 0;
    for (; i + kLanes <= cols; i += kLanes) {
      for (size_t l = 0; l < kLanes; ++l) {
        const float v = loadElement<D>(row, i + l);
        const float a = std::fabs(v);
        const double vd = v;
        sum[l] += vd;
        sumSq[l] += vd * vd;
        sumAbs[l] += std::fabs(vd);
        mx[l] = v > mx[l] ? v : mx[l];
        mn[l] = v < mn[l] ? v : mn[l];
        mxAbs[l] = a > mxAbs[l] ? a : mxAbs[l];
      }
    }
    for (; i < cols; ++i) {
      const float v = loadElement<D>(row, i);
      const double vd = v;
      sum[0] += vd;
      sumSq[0] += vd * vd;
      sumAbs[0] += std::fabs(vd);
      mx[0] = v > mx[0] ? v : mx[0];
      mn[0] = v < mn[0] ? v : mn[0];
      mxAbs[0] = std::fabs(v) > mxAbs[0] ? std::fabs(v) : mxAbs[0];
    }
    NeuronAccumulator acc;
    for (size_t l = 0; l < kLanes; ++l) {
      acc.sum += sum[l];
      acc.sumSquares += sumSq[l];
      acc.sumAbs += sumAbs[l];
      acc.max = mx[l] > acc.max ? mx[l] : acc.max;
      acc.min = mn[l] < acc.min ? mn[l] : acc.min;
      acc.maxAbs = mxAbs[l] > acc.maxAbs ? mxAbs[l] : acc.maxAbs;
    }
    store(acc, r, out);
  }
}

// Per-column accumulators as structure-of-arrays so the column loop vectorises.
struct ColumnAccumulators {
  std::vector<double> sum, sumSquares, sumAbs;
  std::vector<float> max, min, maxAbs;
  explicit ColumnAccumulators(size_t n)
      : sum(n, 0), sumSquares(n, 0), sumAbs(n, 0), max(n, -kInf), min(n, kInf), maxAbs(n, 0) {}
};

// 'cols' axis: rows [rowBegin, rowEnd) of columns [colBegin, colEnd) into acc (indexed from colBegin).
template <DType D>
__attribute__((always_inline)) inline void scanColsImpl(const uint8_t* data, size_t cols, size_t rowBegin,
                                                        size_t rowEnd, size_t colBegin, size_t colEnd,
                                                        ColumnAccumulators& acc) {
  const size_t width = colEnd - colBegin;
  double* __restrict sum = acc.sum.data() + colBegin;
  double* __restrict sumSq = acc.sumSquares.data() + colBegin;
  double* __restrict sumAbs = acc.sumAbs.data() + colBegin;
  float* __restrict mx = acc.max.data() + colBegin;
  float* __restrict mn = acc.min.data() + colBegin;
  float* __restrict mxAbs = acc.maxAbs.data() + colBegin;
  for (size_t r = rowBegin; r < rowEnd; ++r) {
    const uint8_t* row = data + (r * cols + colBegin) * dtypeBytes(D);
    for (size_t j = 0; j < width; ++j) {
      const float v = loadElement<D>(row, j);
      const float a = std::fabs(v);
      const double vd = v;
      sum[j] += vd;
      sumSq[j] += vd * vd;
      sumAbs[j] += std::fabs(vd);
      mx[j] = v > mx[j] ? v : mx[j];
      mn[j] = v < mn[j] ? v : mn[j];
      mxAbs[j] = a > mxAbs[j] ? a : mxAbs[j];
    }
  }
}

// Non-template entry points carry the CPU clones (multiversioning does not apply to templates).
#define FAIRPRUNE_SCAN_VARIANTS(D, SUFFIX)                                                                     \
  FAIRPRUNE_CPU_CLONES void scanRows##SUFFIX(const uint8_t* data, size_t cols, size_t r0, size_t r1,            \
                                             const WeightScanOutput& out) {                                    \
    scanRowsImpl<D>(data, cols, r0, r1, out);                                                                  \
  }                                                                                                            \
  FAIRPRUNE_CPU_CLONES void scanCols##SUFFIX(const uint8_t* data, size_t cols, size_t r0, size_t r1, size_t c0, \
                                             size_t c1, ColumnAccumulators& acc) {                             \
    scanColsImpl<D>(data, cols, r0, r1, c0, c1, acc);                                                          \
  }
FAIRPRUNE_SCAN_VARIANTS(DType::F32, F32)
FAIRPRUNE_SCAN_VARIANTS(DType::F16, F16)
FAIRPRUNE_SCAN_VARIANTS(DType::BF16, BF16)
#undef FAIRPRUNE_SCAN_VARIANTS

void scanRows(DType dtype, const uint8_t* data, size_t cols, size_t r0, size_t r1, const WeightScanOutput& out) {
  switch (dtype) {
    case DType::F32: scanRowsF32(data, cols, r0, r1, out); break;
    case DType::F16: scanRowsF16(data, cols, r0, r1, out); break;
    case DType::BF16: scanRowsBF16(data, cols, r0, r1, out); break;
  }
}

void scanCols(DType dtype, const uint8_t* data, size_t cols, size_t r0, size_t r1, size_t c0, size_t c1,
              ColumnAccumulators& acc) {
  switch (dtype) {
    case DType::F32: scanColsF32(data, cols, r0, r1, c0, c1, acc); break;
    case DType::F16: scanColsF16(data, cols, r0, r1, c0, c1, acc); break;
    case DType::BF16: scanColsBF16(data, cols, r0, r1, c0, c1, acc); break;
  }
}

// Column tile small enough that its accumulators (36 bytes per column) stay in L1 while rows stream past.
constexpr size_t kColumnTile = 512;
constexpr size_t kMinRowsPerChunk = 64;

void weightScanColsCpu(const WeightScanInput& in, const WeightScanOutput& out) {
  const size_t tiles = (in.cols + kColumnTile - 1) / kColumnTile;
  const size_t threads = cpuThreadCount();
  // Narrow matrices have fewer tiles than threads: then rows are split too and the partials merged.
  size_t rowChunks = tiles >= threads ? 1 : (threads + tiles - 1) / tiles;
  rowChunks = std::max<size_t>(1, std::min(rowChunks, in.rows / kMinRowsPerChunk));
  const size_t rowsPerChunk = (in.rows + rowChunks - 1) / rowChunks;
  std::vector<ColumnAccumulators> partials;
  partials.reserve(rowChunks);
  for (size_t c = 0; c < rowChunks; ++c) partials.emplace_back(in.cols);
  parallelFor(tiles * rowChunks, 1, [&](size_t begin, size_t end, size_t) {
    for (size_t item = begin; item < end; ++item) {
      const size_t chunk = item / tiles, tile = item % tiles;
      const size_t r0 = std::min(in.rows, chunk * rowsPerChunk), r1 = std::min(in.rows, r0 + rowsPerChunk);
      const size_t c0 = tile * kColumnTile, c1 = std::min(in.cols, c0 + kColumnTile);
      scanCols(in.dtype, in.data, in.cols, r0, r1, c0, c1, partials[chunk]);
    }
  });
  for (size_t j = 0; j < in.cols; ++j) {
    NeuronAccumulator acc;
    for (const auto& p : partials) {
      acc.sum += p.sum[j];
      acc.sumSquares += p.sumSquares[j];
      acc.sumAbs += p.sumAbs[j];
      acc.max = p.max[j] > acc.max ? p.max[j] : acc.max;
      acc.min = p.min[j] < acc.min ? p.min[j] : acc.min;
      acc.maxAbs = p.maxAbs[j] > acc.maxAbs ? p.maxAbs[j] : acc.maxAbs;
    }
    store(acc, j, out);
  }
}

}  // namespace

void weightScanCpu(const WeightScanInput& in, const WeightScanOutput& out) {
  if (in.axis == Axis::Rows) {
    parallelFor(in.rows, 1, [&](size_t r0, size_t r1, size_t) { scanRows(in.dtype, in.data, in.cols, r0, r1, out); });
  } else {
    weightScanColsCpu(in, out);
  }
}

}  // namespace fairprune
