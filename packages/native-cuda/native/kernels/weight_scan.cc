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

// Columns per 'cols' work item (see weightScanColsCpu): of 256–2048, 512 was fastest at [2048, 8192] (f32/f16/bf16).
constexpr size_t kColumnBlock = 512;

// Per-column accumulators of one 'cols' work item, as structure-of-arrays of fixed capacity, so an item's state
// lives on its worker's stack: no allocation per call (fresh heap pages fault in, which costs more than the scan
// of a small matrix). No maxAbs: it is max(max, −min) in magnitude, derived once at the end, which saves the loop
// a comparison per element and a state register.
struct ColumnAccumulators {
  // Each array one cache line longer than needed, so the arrays start at different offsets within a 4 KB page:
  // otherwise the stores into one would 4K-alias the loads from the next (a stall while the store is in flight).
  double sum[kColumnBlock + 8], sumSquares[kColumnBlock + 8], sumAbs[kColumnBlock + 8];
  float max[kColumnBlock + 16], min[kColumnBlock + 16];
  void reset(size_t n) {
    std::fill(sum, sum + n, 0.0);
    std::fill(sumSquares, sumSquares + n, 0.0);
    std::fill(sumAbs, sumAbs + n, 0.0);
    std::fill(max, max + n, -kInf);
    std::fill(min, min + n, kInf);
  }
};

}  // namespace
}  // namespace fairprune

#define FAIRPRUNE_SIMD_BODY "../kernels/weight_scan_simd.inc"
#include "../common/cpu_isa_instantiate.inc"

namespace fairprune {
namespace {

// 'cols' work items are blocks of kColumnBlock columns × ranges of rows; rows are split into ranges only as far as
// needed for load balancing. With one range an item's results go straight to the output; otherwise the ranges'
// partials are merged in row order (so results don't depend on the thread count or timing).
constexpr size_t kMinRangeRows = 256;

// Merges column k of partials[0..count) (one per row range, in row order) into neuron `neuron` of out.
void storeColumn(const ColumnAccumulators* partials, size_t count, size_t k, size_t neuron, bool anyRows,
                 const WeightScanOutput& out) {
  NeuronAccumulator acc;
  for (size_t range = 0; range < count; ++range) {
    const ColumnAccumulators& p = partials[range];
    acc.sum += p.sum[k];
    acc.sumSquares += p.sumSquares[k];
    acc.sumAbs += p.sumAbs[k];
    acc.max = p.max[k] > acc.max ? p.max[k] : acc.max;
    acc.min = p.min[k] < acc.min ? p.min[k] : acc.min;
  }
  // max|w| = |max(max w, −min w)| (the abs only settles the sign of a zero); NaN elements were skipped by both.
  if (anyRows) acc.maxAbs = std::fabs(acc.max > -acc.min ? acc.max : -acc.min);
  store(acc, neuron, out);
}

void weightScanColsCpu(const WeightScanInput& in, const WeightScanOutput& out) {
  const size_t blocks = (in.cols + kColumnBlock - 1) / kColumnBlock;
  // Enough items for parallelFor to balance (kPiecesPerWorker per thread), but ranges of at least kMinRangeRows.
  const size_t wantedRanges = (cpuThreadCount() * kPiecesPerWorker + blocks - 1) / blocks;
  const size_t rowRanges = std::max<size_t>(1, std::min(wantedRanges, in.rows / kMinRangeRows));
  const size_t rowsPerRange = (in.rows + rowRanges - 1) / rowRanges;
  const size_t rowBytes = in.cols * dtypeBytes(in.dtype);
  // Kept between calls (grow-only, per calling thread): a fresh multi-page allocation per call costs its page faults
  // every time, which on small and medium matrices was a large share of the call.
  thread_local std::vector<ColumnAccumulators> partialsStore;
  if (rowRanges > 1 && partialsStore.size() < blocks * rowRanges) partialsStore.resize(blocks * rowRanges);
  ColumnAccumulators* partials = partialsStore.data();
  parallelFor(blocks * rowRanges, 1, [&](size_t begin, size_t end, size_t) {
    ColumnAccumulators local;
    for (size_t item = begin; item < end; ++item) {
      const size_t block = item / rowRanges, range = item % rowRanges;
      const size_t c0 = block * kColumnBlock, c1 = std::min(in.cols, c0 + kColumnBlock);
      const size_t r0 = std::min(in.rows, range * rowsPerRange), r1 = std::min(in.rows, r0 + rowsPerRange);
      ColumnAccumulators& acc = rowRanges > 1 ? partials[item] : local;
      acc.reset(c1 - c0);
      FAIRPRUNE_ISA_CALL(scanCols, in.dtype, in.data + c0 * dtypeBytes(in.dtype), rowBytes, c1 - c0, r0, r1, acc);
      if (rowRanges == 1) {
        for (size_t j = c0; j < c1; ++j) storeColumn(&acc, 1, j - c0, j, in.rows > 0, out);
      }
    }
  });
  if (rowRanges == 1) return;
  for (size_t block = 0; block < blocks; ++block) {
    const size_t c0 = block * kColumnBlock, c1 = std::min(in.cols, c0 + kColumnBlock);
    for (size_t j = c0; j < c1; ++j) storeColumn(&partials[block * rowRanges], rowRanges, j - c0, j, in.rows > 0, out);
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
