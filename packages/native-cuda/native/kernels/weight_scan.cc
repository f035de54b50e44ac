#include "weight_scan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../common/cpu_isa.h"
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

// Per-column accumulators of one thread, as structure-of-arrays.
struct ColumnAccumulators {
  std::vector<double> sum, sumSquares, sumAbs;
  std::vector<float> max, min, maxAbs;
  explicit ColumnAccumulators(size_t n)
      : sum(n, 0), sumSquares(n, 0), sumAbs(n, 0), max(n, -kInf), min(n, kInf), maxAbs(n, 0) {}
};

}  // namespace
}  // namespace fairprune

#ifdef FAIRPRUNE_ISA_LEVELS
#define FAIRPRUNE_ISA 4
#include "../common/cpu_isa_begin.inc"
#include "weight_scan_simd.inc"
#include "../common/cpu_isa_end.inc"
#define FAIRPRUNE_ISA 3
#include "../common/cpu_isa_begin.inc"
#include "weight_scan_simd.inc"
#include "../common/cpu_isa_end.inc"
#endif
#define FAIRPRUNE_ISA 1
#include "../common/cpu_isa_begin.inc"
#include "weight_scan_simd.inc"
#include "../common/cpu_isa_end.inc"

namespace fairprune {
namespace {

// Each thread scans a contiguous range of rows into its own full-width accumulators; the ranges are merged in order.
void weightScanColsCpu(const WeightScanInput& in, const WeightScanOutput& out) {
  std::vector<ColumnAccumulators> partials;
  partials.reserve(cpuThreadCount());
  for (unsigned w = 0; w < cpuThreadCount(); ++w) partials.emplace_back(0);
  parallelFor(in.rows, kFloatRun, [&](size_t r0, size_t r1, size_t worker) {
    partials[worker] = ColumnAccumulators(in.cols);
    FAIRPRUNE_ISA_CALL(scanCols, in.dtype, in.data, in.cols, r0, r1, partials[worker]);
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
    parallelFor(in.rows, 1, [&](size_t r0, size_t r1, size_t) { FAIRPRUNE_ISA_CALL(scanRows, in.dtype, in.data, in.cols, r0, r1, out); });
  } else {
    weightScanColsCpu(in, out);
  }
}

}  // namespace fairprune
