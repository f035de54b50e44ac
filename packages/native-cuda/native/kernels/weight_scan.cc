#include "weight_scan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../common/cpu_simd.h"
#include "../common/parallel.h"

namespace fairprune {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

struct NeuronAccumulator {
  double sum = 0, sumSquares = 0, sumAbs = 0;
  float max = -kInf, min = kInf, maxAbs = 0;
  void add(float v) {
    sum += v;
    sumSquares += static_cast<double>(v) * v;
    sumAbs += std::fabs(v);
    max = v > max ? v : max;
    min = v < min ? v : min;
    maxAbs = std::fabs(v) > maxAbs ? std::fabs(v) : maxAbs;
  }
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

// Float partial sums cover at most this many values per lane before they are widened into double accumulators:
// the float rounding error stays below ~16 ulp of the partial, and the long sums are exact to double precision.
constexpr size_t kFloatRun = 16;
// Rows combined in registers before the per-column state of the 'cols' scan is read and written.
constexpr size_t kRowGroup = 8;

// 'rows' axis: each neuron is one contiguous row, reduced kWidth lanes at a time.
template <DType D>
FAIRPRUNE_INLINE void scanRowsImpl(const uint8_t* data, size_t cols, size_t rowBegin, size_t rowEnd,
                                   const WeightScanOutput& out) {
  using namespace simd;
  const size_t rowBytes = cols * dtypeBytes(D);
  const size_t vectorEnd = cols - cols % kWidth;
  for (size_t r = rowBegin; r < rowEnd; ++r) {
    const uint8_t* row = data + r * rowBytes;
    double sum[kWidth] = {}, sumSq[kWidth] = {}, sumAbs[kWidth] = {};
    FV mx = splat(-kInf), mn = splat(kInf), ma = splat(0);
    for (size_t i = 0; i < vectorEnd;) {
      FV s = splat(0), sq = splat(0), sa = splat(0);
      const size_t runEnd = std::min(vectorEnd, i + kWidth * kFloatRun);
      for (; i < runEnd; i += kWidth) {
        const FV v = loadVector<D>(row, i);
        const FV a = simd::abs(v);
        s += v;
        sq += v * v;
        sa += a;
        mx = maxSkipNaN(mx, v);
        mn = minSkipNaN(mn, v);
        ma = maxSkipNaN(ma, a);
      }
      addWidened(sum, s);
      addWidened(sumSq, sq);
      addWidened(sumAbs, sa);
    }
    NeuronAccumulator acc;
    const Lanes mxLanes(mx), mnLanes(mn), maLanes(ma);
    for (size_t l = 0; l < kWidth; ++l) {
      acc.sum += sum[l];
      acc.sumSquares += sumSq[l];
      acc.sumAbs += sumAbs[l];
      acc.max = mxLanes[l] > acc.max ? mxLanes[l] : acc.max;
      acc.min = mnLanes[l] < acc.min ? mnLanes[l] : acc.min;
      acc.maxAbs = maLanes[l] > acc.maxAbs ? maLanes[l] : acc.maxAbs;
    }
    for (size_t i = vectorEnd; i < cols; ++i) acc.add(loadElement<D>(row, i));
    store(acc, r, out);
  }
}

// Per-column accumulators of one thread, as structure-of-arrays.
struct ColumnAccumulators {
  std::vector<double> sum, sumSquares, sumAbs;
  std::vector<float> max, min, maxAbs;
  explicit ColumnAccumulators(size_t n)
      : sum(n, 0), sumSquares(n, 0), sumAbs(n, 0), max(n, -kInf), min(n, kInf), maxAbs(n, 0) {}
};

// 'cols' axis: rows [rowBegin, rowEnd) into acc. Rows are read whole and in order (sequential streams the
// prefetcher follows; tiles of columns would read short segments at a large stride, ~10× slower). kRowGroup rows are
// combined in registers before the per-column state is touched, which keeps that state's traffic low; float
// partials collect runs of kFloatRun rows and are then widened into the double sums.
template <DType D>
FAIRPRUNE_INLINE void scanColsImpl(const uint8_t* data, size_t cols, size_t rowBegin, size_t rowEnd,
                                   ColumnAccumulators& acc) {
  using namespace simd;
  const size_t rowBytes = cols * dtypeBytes(D);
  const size_t vectorEnd = cols - cols % kWidth;
  // The six per-column state arrays share one buffer, each skewed by a different odd number of cache lines, so
  // their stores don't 4K-alias each other's loads (a stall when arrays of one power-of-two length line up).
  const size_t stride = cols;
  std::vector<float> state(6 * stride + 16 * 40);  // room for the skews (16 * 36 floats)
  float* s = state.data() + 16 * 1;
  float* sq = s + stride + 16 * 3;
  float* sa = sq + stride + 16 * 5;
  float* mx = sa + stride + 16 * 7;
  float* mn = mx + stride + 16 * 9;
  float* ma = mn + stride + 16 * 11;
  std::copy(acc.max.begin(), acc.max.end(), mx);
  std::copy(acc.min.begin(), acc.min.end(), mn);
  std::copy(acc.maxAbs.begin(), acc.maxAbs.end(), ma);
  for (size_t r0 = rowBegin; r0 < rowEnd; r0 += kFloatRun) {
    const size_t r1 = std::min(rowEnd, r0 + kFloatRun);
    std::fill(s, s + cols, 0.0f);
    std::fill(sq, sq + cols, 0.0f);
    std::fill(sa, sa + cols, 0.0f);
    size_t r = r0;
    for (; r + kRowGroup <= r1; r += kRowGroup) {
      const uint8_t* row = data + r * rowBytes;
      for (size_t j = 0; j < vectorEnd; j += kWidth) {
        FV v[kRowGroup], a[kRowGroup];
        for (size_t g = 0; g < kRowGroup; ++g) v[g] = loadVector<D>(row + g * rowBytes, j), a[g] = simd::abs(v[g]);
        FV vs = v[0], vq = v[0] * v[0], va = a[0], vmx = v[0], vmn = v[0], vma = a[0];
        for (size_t g = 1; g < kRowGroup; ++g) {
          vs += v[g];
          vq += v[g] * v[g];
          va += a[g];
          vmx = maxSkipNaN(vmx, v[g]);
          vmn = minSkipNaN(vmn, v[g]);
          vma = maxSkipNaN(vma, a[g]);
        }
        storeFloats(s + j, loadFloats(s + j) + vs);
        storeFloats(sq + j, loadFloats(sq + j) + vq);
        storeFloats(sa + j, loadFloats(sa + j) + va);
        storeFloats(mx + j, maxSkipNaN(loadFloats(mx + j), vmx));
        storeFloats(mn + j, minSkipNaN(loadFloats(mn + j), vmn));
        storeFloats(ma + j, maxSkipNaN(loadFloats(ma + j), vma));
      }
    }
    for (; r < r1; ++r) {
      const uint8_t* row = data + r * rowBytes;
      for (size_t j = 0; j < vectorEnd; j += kWidth) {
        const FV v = loadVector<D>(row, j);
        const FV a = simd::abs(v);
        storeFloats(s + j, loadFloats(s + j) + v);
        storeFloats(sq + j, loadFloats(sq + j) + v * v);
        storeFloats(sa + j, loadFloats(sa + j) + a);
        storeFloats(mx + j, maxSkipNaN(loadFloats(mx + j), v));
        storeFloats(mn + j, minSkipNaN(loadFloats(mn + j), v));
        storeFloats(ma + j, maxSkipNaN(loadFloats(ma + j), a));
      }
    }
    for (size_t j = 0; j < vectorEnd; ++j) {
      acc.sum[j] += s[j];
      acc.sumSquares[j] += sq[j];
      acc.sumAbs[j] += sa[j];
    }
    for (size_t rr = r0; rr < r1; ++rr) {
      for (size_t j = vectorEnd; j < cols; ++j) {
        const float v = loadElement<D>(data + rr * rowBytes, j);
        acc.sum[j] += v;
        acc.sumSquares[j] += static_cast<double>(v) * v;
        acc.sumAbs[j] += std::fabs(v);
        mx[j] = v > mx[j] ? v : mx[j];
        mn[j] = v < mn[j] ? v : mn[j];
        ma[j] = std::fabs(v) > ma[j] ? std::fabs(v) : ma[j];
      }
    }
  }
  std::copy(mx, mx + cols, acc.max.begin());
  std::copy(mn, mn + cols, acc.min.begin());
  std::copy(ma, ma + cols, acc.maxAbs.begin());
}

// Non-template entry points carry the CPU clones (multiversioning does not apply to templates).
#define FAIRPRUNE_SCAN_VARIANTS(D, SUFFIX)                                                                     \
  FAIRPRUNE_CPU_CLONES void scanRows##SUFFIX(const uint8_t* data, size_t cols, size_t r0, size_t r1,            \
                                             const WeightScanOutput& out) {                                    \
    scanRowsImpl<D>(data, cols, r0, r1, out);                                                                  \
  }                                                                                                            \
  FAIRPRUNE_CPU_CLONES void scanCols##SUFFIX(const uint8_t* data, size_t cols, size_t r0, size_t r1,            \
                                             ColumnAccumulators& acc) {                                        \
    scanColsImpl<D>(data, cols, r0, r1, acc);                                                                  \
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

void scanCols(DType dtype, const uint8_t* data, size_t cols, size_t r0, size_t r1, ColumnAccumulators& acc) {
  switch (dtype) {
    case DType::F32: scanColsF32(data, cols, r0, r1, acc); break;
    case DType::F16: scanColsF16(data, cols, r0, r1, acc); break;
    case DType::BF16: scanColsBF16(data, cols, r0, r1, acc); break;
  }
}

// Each thread scans a contiguous range of rows into its own full-width accumulators; the ranges are merged in order.
void weightScanColsCpu(const WeightScanInput& in, const WeightScanOutput& out) {
  std::vector<ColumnAccumulators> partials;
  partials.reserve(cpuThreadCount());
  for (unsigned w = 0; w < cpuThreadCount(); ++w) partials.emplace_back(0);
  parallelFor(in.rows, kFloatRun, [&](size_t r0, size_t r1, size_t worker) {
    partials[worker] = ColumnAccumulators(in.cols);
    scanCols(in.dtype, in.data, in.cols, r0, r1, partials[worker]);
  });
  for (size_t j = 0; j < in.cols; ++j) {
    NeuronAccumulator acc;
    for (const auto& p : partials) {
      if (p.sum.empty()) continue;
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
