// Weight scan: per-neuron max, min, max|w|, sum, sum of squares and sum |w| of a row-major [rows, cols] matrix,
// in one pass. 'rows' axis: one neuron per row (HF [out, in]); 'cols' axis: one neuron per column (ONNX [in, out]).
//
// NaN/Inf: sums follow IEEE arithmetic (Inf stays Inf, Inf + -Inf = NaN). If any element of a neuron is NaN, all six
// statistics of that neuron are NaN (max/min/maxAbs included), so callers can detect corrupt weights from any one.
// Sums: float partials over at most 16 values (CPU: per vector lane; CUDA: a 16-byte vector or a run of 8 rows), then
// double for everything longer; rounded to float once. Relative error ≲ 16·2^-24 of the sum of magnitudes.
// |w| > 1.8e19 overflows the float square (sumSquares = Inf), far outside any real weight.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/dtype.h"

namespace fairprune {

enum class Axis { Rows, Cols };

struct WeightScanInput {
  const uint8_t* data;  // little-endian elements, any alignment
  size_t rows;
  size_t cols;
  DType dtype;
  Axis axis;
  size_t neurons() const { return axis == Axis::Rows ? rows : cols; }
  size_t bytes() const { return rows * cols * dtypeBytes(dtype); }
};

// Six arrays of neurons() floats each, owned by the caller.
struct WeightScanOutput {
  float* max;
  float* min;
  float* maxAbs;
  float* sum;
  float* sumSquares;
  float* sumAbs;
};

void weightScanCpu(const WeightScanInput& input, const WeightScanOutput& output);

// CUDA entries (a build without CUDA links stubs that throw, addon/cuda_off.cc; 'auto' never picks them there).
// Host input, host output: copies the matrix to the device in pinned, overlapped chunks, scans, copies results back.
void weightScanCuda(const WeightScanInput& input, const WeightScanOutput& output);
// Device-resident entry point for benchmarks: scans a matrix already on the device `repeats` times and returns the
// mean kernel time in milliseconds (no PCIe in the figure); results of the last run are copied to `output`.
double weightScanCudaDeviceBenchmark(const WeightScanInput& hostInput, int repeats, const WeightScanOutput& output);

}  // namespace fairprune
