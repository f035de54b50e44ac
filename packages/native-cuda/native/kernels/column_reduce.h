// Column reductions on the analysis path, over small host matrices (tens of tokens or pairs × the MLP width), so
// they run on the CPU: a device round trip would cost more than the reduction.
//   columnMeans:       out[j] = mean_r x[r, j], summed in double in row order, rounded to float once.
//   accumulateColumns: for each row p in order, v = float(Σ_k term_k[p, j]) (float adds in term order), then
//                      totals[j] += v (Sum) or totals[j] = v > totals[j] ? v : totals[j] (Max: NaN never wins).
// NaN/Inf follow IEEE arithmetic (a NaN element makes its column's mean and sum NaN).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../common/dtype.h"

namespace fairprune {

struct ColumnMeansInput {
  const uint8_t* data;  // [rows, cols], any alignment
  size_t rows;
  size_t cols;
  DType dtype;
  size_t bytes() const { return rows * cols * dtypeBytes(dtype); }
};

void columnMeansCpu(const ColumnMeansInput& input, float* means);

enum class ColumnOp { Sum, Max };

// terms: float32 [rows, cols] matrices of one shape, any alignment; totals: [cols] running values.
void accumulateColumnsCpu(const std::vector<const uint8_t*>& terms, size_t rows, size_t cols, ColumnOp op, double* totals);

}  // namespace fairprune
