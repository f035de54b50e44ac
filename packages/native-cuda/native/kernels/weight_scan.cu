// CUDA weight scan. One pass over the matrix with coalesced 16-byte loads along the contiguous axis:
//  - 'rows': one warp per row (grid-stride over rows); lanes stride the row in 16-byte vectors, then shuffle-reduce.
//  - 'cols': each thread owns one 16-byte vector of adjacent columns; a block's 8 warps split a tile of rows and
//    combine in shared memory; a second small kernel reduces the per-tile partials.
// Sums: float within a 16-byte vector (rows) or a run of 8 rows (cols), then double; outputs rounded to float once.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include "../common/cuda_device.h"
#include "../common/cuda_memory.h"
#include "cuda_elements.cuh"
#include "weight_scan.h"

namespace fairprune {
namespace {

struct DeviceStats {  // six device arrays of `neurons` floats
  float *max, *min, *maxAbs, *sum, *sumSquares, *sumAbs;
};

struct Partial {  // per-thread running statistics
  double sum = 0, sumSquares = 0, sumAbs = 0;
  float max = -INFINITY, min = INFINITY, maxAbs = 0;
  __device__ __forceinline__ void addSmall(float s, float sq, float sa, float mx, float mn, float ma) {
    sum += s;
    sumSquares += sq;
    sumAbs += sa;
    max = maxSkipNaN(max, mx);
    min = minSkipNaN(min, mn);
    maxAbs = maxSkipNaN(maxAbs, ma);
  }
};

__device__ __forceinline__ void storeNeuron(const DeviceStats& out, size_t n, const Partial& p) {
  const bool hasNaN = isnan(p.sumAbs);
  out.max[n] = hasNaN ? NAN : p.max;
  out.min[n] = hasNaN ? NAN : p.min;
  out.maxAbs[n] = hasNaN ? NAN : p.maxAbs;
  out.sum[n] = static_cast<float>(p.sum);
  out.sumSquares[n] = static_cast<float>(p.sumSquares);
  out.sumAbs[n] = static_cast<float>(p.sumAbs);
}

template <DType D, bool kVector>
__global__ void __launch_bounds__(256) scanRowsKernel(const uint8_t* __restrict__ data, size_t rows, size_t cols,
                                                      DeviceStats out) {
  using E = DeviceElement<D>;
  const int lane = threadIdx.x & 31;
  const size_t warpsTotal = static_cast<size_t>(gridDim.x) * (blockDim.x / 32);
  for (size_t row = (static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; row < rows; row += warpsTotal) {
    const uint8_t* rowData = data + row * cols * E::kBytes;
    Partial p;
    if constexpr (kVector) {
      const size_t vectors = cols / E::kPerVector;
      for (size_t v = lane; v < vectors; v += 32) {
        float x[E::kPerVector];
        E::loadVector(rowData + v * 16, x);
        float s = 0, sq = 0, sa = 0, mx = -INFINITY, mn = INFINITY, ma = 0;
#pragma unroll
        for (int k = 0; k < E::kPerVector; ++k) {
          s += x[k];
          sq = fmaf(x[k], x[k], sq);
          sa += fabsf(x[k]);
          mx = maxSkipNaN(mx, x[k]);
          mn = minSkipNaN(mn, x[k]);
          ma = maxSkipNaN(ma, fabsf(x[k]));
        }
        p.addSmall(s, sq, sa, mx, mn, ma);
      }
    } else {
      for (size_t i = lane; i < cols; i += 32) {
        const float x = E::load(rowData, i);
        p.addSmall(x, x * x, fabsf(x), x, x, fabsf(x));
      }
    }
    p.sum = warpSum(p.sum);
    p.sumSquares = warpSum(p.sumSquares);
    p.sumAbs = warpSum(p.sumAbs);
    p.max = warpMax(p.max);
    p.min = warpMin(p.min);
    p.maxAbs = warpMax(p.maxAbs);
    if (lane == 0) storeNeuron(out, row, p);
  }
}

constexpr int kColsWarps = 8;       // blockDim = (32, kColsWarps)
constexpr int kRowRun = 8;          // rows summed in float before adding to double

// Partials of tile t for column c live at workspace[(stat * tiles + t) * cols + c] (doubles for sums, floats bit-cast
// into the same double slots for max/min/maxAbs to keep one layout).
template <DType D, int kPerThread>
__global__ void __launch_bounds__(32 * kColsWarps) scanColsKernel(const uint8_t* __restrict__ data, size_t rows,
                                                                  size_t cols, size_t rowsPerTile, double* workspace) {
  using E = DeviceElement<D>;
  constexpr bool kVector = kPerThread == E::kPerVector;
  const size_t tiles = gridDim.y;
  const size_t col0 = (static_cast<size_t>(blockIdx.x) * 32 + threadIdx.x) * kPerThread;
  const size_t rowBegin = blockIdx.y * rowsPerTile;
  const size_t rowEnd = min(rows, rowBegin + rowsPerTile);
  const bool active = col0 < cols;

  double sum[kPerThread] = {}, sumSq[kPerThread] = {}, sumAbs[kPerThread] = {};
  float mx[kPerThread], mn[kPerThread], ma[kPerThread];
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) mx[k] = -INFINITY, mn[k] = INFINITY, ma[k] = 0;

  if (active) {
    for (size_t r0 = rowBegin + threadIdx.y * kRowRun; r0 < rowEnd; r0 += kColsWarps * kRowRun) {
      float s[kPerThread] = {}, sq[kPerThread] = {}, sa[kPerThread] = {};
      const size_t r1 = min(rowEnd, r0 + kRowRun);
      for (size_t r = r0; r < r1; ++r) {
        float x[kPerThread];
        if constexpr (kVector) {
          E::loadVector(data + (r * cols + col0) * E::kBytes, x);
        } else {
          x[0] = E::load(data, r * cols + col0);
        }
#pragma unroll
        for (int k = 0; k < kPerThread; ++k) {
          s[k] += x[k];
          sq[k] = fmaf(x[k], x[k], sq[k]);
          sa[k] += fabsf(x[k]);
          mx[k] = maxSkipNaN(mx[k], x[k]);
          mn[k] = minSkipNaN(mn[k], x[k]);
          ma[k] = maxSkipNaN(ma[k], fabsf(x[k]));
        }
      }
#pragma unroll
      for (int k = 0; k < kPerThread; ++k) sum[k] += s[k], sumSq[k] += sq[k], sumAbs[k] += sa[k];
    }
  }

  // Combine the 8 warps' partials one statistic at a time through shared memory (32 KB for 16-bit types).
  __shared__ double shared[kColsWarps][32 * kPerThread];
  auto combine = [&](int stat, auto value, auto merge) {
#pragma unroll  // constant indices keep the per-thread arrays in registers
    for (int k = 0; k < kPerThread; ++k) shared[threadIdx.y][threadIdx.x * kPerThread + k] = static_cast<double>(value(k));
    __syncthreads();
    if (threadIdx.y == 0 && active) {
      for (int k = 0; k < kPerThread && col0 + k < cols; ++k) {
        double acc = shared[0][threadIdx.x * kPerThread + k];
        for (int w = 1; w < kColsWarps; ++w) acc = merge(acc, shared[w][threadIdx.x * kPerThread + k]);
        workspace[(static_cast<size_t>(stat) * tiles + blockIdx.y) * cols + col0 + k] = acc;
      }
    }
    __syncthreads();
  };
  auto add = [](double a, double b) { return a + b; };
  auto maxD = [](double a, double b) { return b > a ? b : a; };
  auto minD = [](double a, double b) { return b < a ? b : a; };
  combine(0, [&](int k) { return sum[k]; }, add);
  combine(1, [&](int k) { return sumSq[k]; }, add);
  combine(2, [&](int k) { return sumAbs[k]; }, add);
  combine(3, [&](int k) { return mx[k]; }, maxD);
  combine(4, [&](int k) { return mn[k]; }, minD);
  combine(5, [&](int k) { return ma[k]; }, maxD);
}

__global__ void reduceColTilesKernel(const double* __restrict__ workspace, size_t cols, size_t tiles, DeviceStats out) {
  const size_t c = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  Partial p;
  for (size_t t = 0; t < tiles; ++t) {
    auto at = [&](int stat) { return workspace[(static_cast<size_t>(stat) * tiles + t) * cols + c]; };
    p.sum += at(0);
    p.sumSquares += at(1);
    p.sumAbs += at(2);
    p.max = maxSkipNaN(p.max, static_cast<float>(at(3)));
    p.min = minSkipNaN(p.min, static_cast<float>(at(4)));
    p.maxAbs = maxSkipNaN(p.maxAbs, static_cast<float>(at(5)));
  }
  storeNeuron(out, c, p);
}

size_t colTiles(const WeightScanInput& in, size_t columnBlocks) {
  const size_t wanted = std::max<size_t>(1, 4 * static_cast<size_t>(multiprocessorCount()) / columnBlocks);
  const size_t maxTiles = std::max<size_t>(1, in.rows / (kColsWarps * kRowRun));  // ≥ one row run per warp
  return std::min(wanted, maxTiles);
}

size_t workspaceBytes(const WeightScanInput& in) {
  return in.axis == Axis::Cols ? 6 * colTiles(in, 1) * in.cols * sizeof(double) : 0;
}

// Launches the scan of a device-resident matrix on `stream`; `device` is 256-byte aligned (cudaMalloc).
template <DType D>
void launchScan(const WeightScanInput& in, const uint8_t* device, double* workspace, const DeviceStats& out,
                cudaStream_t stream) {
  using E = DeviceElement<D>;
  const bool vectorRows = (in.cols * E::kBytes) % 16 == 0;  // every row then starts 16-byte aligned
  if (in.axis == Axis::Rows) {
    const size_t warpsWanted = in.rows;
    const unsigned blocks = static_cast<unsigned>(std::min<size_t>((warpsWanted + 7) / 8, 65535u * 8));
    if (vectorRows) scanRowsKernel<D, true><<<blocks, 256, 0, stream>>>(device, in.rows, in.cols, out);
    else scanRowsKernel<D, false><<<blocks, 256, 0, stream>>>(device, in.rows, in.cols, out);
  } else {
    const int perThread = vectorRows ? E::kPerVector : 1;
    const size_t columnBlocks = (in.cols + 32 * perThread - 1) / (32 * perThread);
    const size_t tiles = colTiles(in, columnBlocks);
    const size_t rowsPerTile = (in.rows + tiles - 1) / tiles;
    const dim3 grid(static_cast<unsigned>(columnBlocks), static_cast<unsigned>(tiles));
    const dim3 block(32, kColsWarps);
    if (vectorRows) scanColsKernel<D, E::kPerVector><<<grid, block, 0, stream>>>(device, in.rows, in.cols, rowsPerTile, workspace);
    else scanColsKernel<D, 1><<<grid, block, 0, stream>>>(device, in.rows, in.cols, rowsPerTile, workspace);
    reduceColTilesKernel<<<static_cast<unsigned>((in.cols + 255) / 256), 256, 0, stream>>>(workspace, in.cols, tiles, out);
  }
  CUDA_CHECK(cudaGetLastError());
}

void launchScanAnyType(const WeightScanInput& in, const uint8_t* device, double* workspace, const DeviceStats& out,
                       cudaStream_t stream) {
  switch (in.dtype) {
    case DType::F32: return launchScan<DType::F32>(in, device, workspace, out, stream);
    case DType::F16: return launchScan<DType::F16>(in, device, workspace, out, stream);
    case DType::BF16: return launchScan<DType::BF16>(in, device, workspace, out, stream);
  }
}

DeviceStats statsIn(float* base, size_t neurons) {
  return {base, base + neurons, base + 2 * neurons, base + 3 * neurons, base + 4 * neurons, base + 5 * neurons};
}

void copyStatsToHost(const float* device, size_t neurons, const WeightScanOutput& out, cudaStream_t stream) {
  float* targets[] = {out.max, out.min, out.maxAbs, out.sum, out.sumSquares, out.sumAbs};
  for (size_t i = 0; i < 6; ++i) {
    CUDA_CHECK(cudaMemcpyAsync(targets[i], device + i * neurons, neurons * sizeof(float), cudaMemcpyDeviceToHost, stream));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace

void weightScanCuda(const WeightScanInput& in, const WeightScanOutput& out) {
  CudaSession& session = CudaSession::get();
  std::lock_guard<std::mutex> hold(session.lock);
  session.inputA.grow(in.bytes());
  session.workspace.grow(std::max<size_t>(workspaceBytes(in), 8));
  session.outputs.grow(6 * in.neurons() * sizeof(float));
  uploadHost(session, session.inputA.as<uint8_t>(), in.data, in.bytes());
  launchScanAnyType(in, session.inputA.as<uint8_t>(), session.workspace.as<double>(),
                    statsIn(session.outputs.as<float>(), in.neurons()), session.stream);
  copyStatsToHost(session.outputs.as<float>(), in.neurons(), out, session.stream);
}

double weightScanCudaDeviceBenchmark(const WeightScanInput& in, int repeats, const WeightScanOutput& out) {
  CudaSession& session = CudaSession::get();
  std::lock_guard<std::mutex> hold(session.lock);
  DeviceBuffer matrix(in.bytes()), workspace(std::max<size_t>(workspaceBytes(in), 8)), stats(6 * in.neurons() * sizeof(float));
  CUDA_CHECK(cudaMemcpy(matrix.as<uint8_t>(), in.data, in.bytes(), cudaMemcpyHostToDevice));
  const DeviceStats deviceStats = statsIn(stats.as<float>(), in.neurons());
  const double ms = meanMilliseconds(session.stream, repeats, [&] {
    launchScanAnyType(in, matrix.as<uint8_t>(), workspace.as<double>(), deviceStats, session.stream);
  });
  copyStatsToHost(stats.as<float>(), in.neurons(), out, session.stream);
  return ms;
}

}  // namespace fairprune
