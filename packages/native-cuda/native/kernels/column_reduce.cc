#include "column_reduce.h"

#include <algorithm>
#include <cstring>

#include "../common/cpu_isa.h"
#include "../common/parallel.h"

namespace fairprune {
namespace {

// Columns per work item: the item's double sums (8 KB) live on the stack and stay in L1 across rows.
constexpr size_t kColumnBlock = 1024;
// Below this many elements per piece, a thread costs more than it saves.
constexpr size_t kMinPieceElements = 1 << 16;

}  // namespace
}  // namespace fairprune

#define FAIRPRUNE_SIMD_BODY "../kernels/column_reduce_simd.inc"
#include "../common/cpu_isa_instantiate.inc"

namespace fairprune {

void columnMeansCpu(const ColumnMeansInput& in, float* means) {
  const size_t blocks = (in.cols + kColumnBlock - 1) / kColumnBlock;
  const size_t grain = std::max<size_t>(1, kMinPieceElements / std::max<size_t>(1, in.rows * kColumnBlock));
  const double rows = static_cast<double>(in.rows);
  parallelFor(blocks, grain, [&](size_t b0, size_t b1, size_t) {
    for (size_t block = b0; block < b1; ++block) {
      const size_t j0 = block * kColumnBlock, j1 = std::min(in.cols, j0 + kColumnBlock);
      double sums[kColumnBlock] = {};
      FAIRPRUNE_ISA_CALL(columnSums, in, j0, j1, sums);
      for (size_t j = j0; j < j1; ++j) means[j] = static_cast<float>(sums[j - j0] / rows);
    }
  });
}

void accumulateColumnsCpu(const std::vector<const uint8_t*>& terms, size_t rows, size_t cols, ColumnOp op, double* totals) {
  // Sequential: a few pairs × the MLP width is microseconds of work, less than starting a thread.
  for (size_t p = 0; p < rows; ++p) {
    for (size_t j = 0; j < cols; ++j) {
      float v = 0;
      for (size_t k = 0; k < terms.size(); ++k) {
        float x;
        std::memcpy(&x, terms[k] + (p * cols + j) * sizeof(float), sizeof x);
        v = k == 0 ? x : v + x;
      }
      if (op == ColumnOp::Sum) totals[j] += v;
      else if (v > totals[j]) totals[j] = v;
    }
  }
}

}  // namespace fairprune
