// CUDA activation difference. Pass 1 streams a and b once with 16-byte loads: each thread owns one vector of
// adjacent neurons of one pair and a slice of its tokens, accumulating sum|a−b| and sum(a−b) in double; slices
// of one pair meet through atomicAdd in a [pairs, width] workspace (it stays in L2). Pass 2 turns the sums into
// positionwise/pooled/meanAbs.
#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>

#include "../common/cuda_device.h"
#include "../common/cuda_memory.h"
#include "activation_diff.h"
#include "cuda_elements.cuh"

namespace fairprune {
namespace {

constexpr int kThreads = 128;
constexpr size_t kMinTokensPerSlice = 16;

template <DType D, int kPerThread>
__global__ void __launch_bounds__(kThreads) diffSumsKernel(const uint8_t* __restrict__ a, const uint8_t* __restrict__ b,
                                                          size_t tokens, size_t width, size_t tokensPerSlice,
                                                          double* __restrict__ sumAbs, double* __restrict__ sumDiff) {
  using E = DeviceElement<D>;
  constexpr bool kVector = kPerThread == E::kPerVector;
  const size_t j0 = (static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x) * kPerThread;
  if (j0 >= width) return;
  const size_t pair = blockIdx.y;
  const size_t t0 = blockIdx.z * tokensPerSlice, t1 = min(tokens, t0 + tokensPerSlice);
  double abs[kPerThread] = {}, diff[kPerThread] = {};
  for (size_t t = t0; t < t1; ++t) {
    const size_t offset = (pair * tokens + t) * width + j0;
    float x[kPerThread], y[kPerThread];
    if constexpr (kVector) {
      E::loadVector(a + offset * E::kBytes, x);
      E::loadVector(b + offset * E::kBytes, y);
    } else {
      x[0] = E::load(a, offset);
      y[0] = E::load(b, offset);
    }
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const double d = static_cast<double>(x[k]) - static_cast<double>(y[k]);
      abs[k] += fabs(d);
      diff[k] += d;
    }
  }
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    atomicAdd(&sumAbs[pair * width + j0 + k], abs[k]);
    atomicAdd(&sumDiff[pair * width + j0 + k], diff[k]);
  }
}

// Pass 2 for activationDiff: per (pair, neuron) results plus the pair's total |a−b| for meanAbs.
__global__ void diffResultsKernel(const double* __restrict__ sumAbs, const double* __restrict__ sumDiff, size_t tokens,
                                  size_t width, float* positionwise, float* pooled, double* pairTotals) {
  const size_t pair = blockIdx.y;
  const size_t j = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  double mine = 0;
  if (j < width) {
    const size_t i = pair * width + j;
    mine = sumAbs[i];
    positionwise[i] = static_cast<float>(sumAbs[i] / static_cast<double>(tokens));
    pooled[i] = static_cast<float>(fabs(sumDiff[i]) / static_cast<double>(tokens));
  }
  mine = warpSum(mine);
  if ((threadIdx.x & 31) == 0) atomicAdd(&pairTotals[pair], mine);
}

// Pairs map to gridDim.y, whose limit is 65535.
void checkPairs(const ActivationDiffInput& in) {
  if (in.pairs > 65535) {
    throw std::runtime_error("CUDA activation difference takes at most 65535 pairs per call, got " + std::to_string(in.pairs) +
                             "; split the batch");
  }
}

// Pass 1 over device-resident a and b into zeroed sums (2 × pairs × width doubles at `sums`).
template <DType D>
void launchDiffSums(const ActivationDiffInput& in, const uint8_t* a, const uint8_t* b, double* sums, cudaStream_t stream) {
  using E = DeviceElement<D>;
  checkPairs(in);
  const size_t cells = in.pairs * in.width;
  CUDA_CHECK(cudaMemsetAsync(sums, 0, 2 * cells * sizeof(double), stream));
  const bool vector = (in.width * E::kBytes) % 16 == 0;
  const int perThread = vector ? E::kPerVector : 1;
  const size_t columnBlocks = (in.width + kThreads * perThread - 1) / (kThreads * perThread);
  // Split tokens across blocks until the grid fills the GPU (4 blocks per SM), keeping ≥ 16 tokens per slice.
  const size_t wantedSlices = std::max<size_t>(1, 4 * static_cast<size_t>(multiprocessorCount()) / (columnBlocks * in.pairs));
  const size_t slices = std::min(wantedSlices, std::max<size_t>(1, in.tokens / kMinTokensPerSlice));
  const size_t tokensPerSlice = (in.tokens + slices - 1) / slices;
  const dim3 grid(static_cast<unsigned>(columnBlocks), static_cast<unsigned>(in.pairs),
                  static_cast<unsigned>((in.tokens + tokensPerSlice - 1) / tokensPerSlice));
  if (vector) diffSumsKernel<D, E::kPerVector><<<grid, kThreads, 0, stream>>>(a, b, in.tokens, in.width, tokensPerSlice, sums, sums + cells);
  else diffSumsKernel<D, 1><<<grid, kThreads, 0, stream>>>(a, b, in.tokens, in.width, tokensPerSlice, sums, sums + cells);
  CUDA_CHECK(cudaGetLastError());
}

void launchDiffSumsAnyType(const ActivationDiffInput& in, const uint8_t* a, const uint8_t* b, double* sums, cudaStream_t stream) {
  switch (in.dtype) {
    case DType::F32: return launchDiffSums<DType::F32>(in, a, b, sums, stream);
    case DType::F16: return launchDiffSums<DType::F16>(in, a, b, sums, stream);
    case DType::BF16: return launchDiffSums<DType::BF16>(in, a, b, sums, stream);
  }
}

// Device layout of results: positionwise [cells] floats, pooled [cells] floats, then pairTotals [pairs] doubles.
size_t resultBytes(const ActivationDiffInput& in) {
  return 2 * in.pairs * in.width * sizeof(float) + in.pairs * sizeof(double) + 8;
}

void launchDiff(const ActivationDiffInput& in, const uint8_t* a, const uint8_t* b, double* sums, uint8_t* results,
                cudaStream_t stream) {
  launchDiffSumsAnyType(in, a, b, sums, stream);
  const size_t cells = in.pairs * in.width;
  auto* positionwise = reinterpret_cast<float*>(results);
  auto* totals = reinterpret_cast<double*>(results + ((2 * cells * sizeof(float) + 7) / 8) * 8);
  CUDA_CHECK(cudaMemsetAsync(totals, 0, in.pairs * sizeof(double), stream));
  const dim3 grid(static_cast<unsigned>((in.width + 255) / 256), static_cast<unsigned>(in.pairs));
  diffResultsKernel<<<grid, 256, 0, stream>>>(sums, sums + cells, in.tokens, in.width, positionwise, positionwise + cells, totals);
  CUDA_CHECK(cudaGetLastError());
}

void copyDiffToHost(const ActivationDiffInput& in, const uint8_t* results, const ActivationDiffOutput& out, cudaStream_t stream) {
  const size_t cells = in.pairs * in.width;
  const auto* positionwise = reinterpret_cast<const float*>(results);
  const auto* totals = reinterpret_cast<const double*>(results + ((2 * cells * sizeof(float) + 7) / 8) * 8);
  CUDA_CHECK(cudaMemcpyAsync(out.positionwise, positionwise, cells * sizeof(float), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaMemcpyAsync(out.pooled, positionwise + cells, cells * sizeof(float), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaMemcpyAsync(out.meanAbs, totals, in.pairs * sizeof(double), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  const double elements = static_cast<double>(in.tokens) * static_cast<double>(in.width);
  for (size_t p = 0; p < in.pairs; ++p) out.meanAbs[p] /= elements;
}

// Uploads a and b into the session's input buffers (caller holds session.lock).
void uploadPair(CudaSession& session, const ActivationDiffInput& in) {
  const size_t bytes = in.bytes() / 2;
  session.inputA.grow(bytes);
  session.inputB.grow(bytes);
  session.workspace.grow(2 * in.pairs * in.width * sizeof(double));
  uploadHost(session, session.inputA.as<uint8_t>(), in.a, bytes);
  uploadHost(session, session.inputB.as<uint8_t>(), in.b, bytes);
}

}  // namespace

void activationDiffCuda(const ActivationDiffInput& in, const ActivationDiffOutput& out) {
  CudaSession& session = CudaSession::get();
  std::lock_guard<std::mutex> hold(session.lock);
  uploadPair(session, in);
  session.outputs.grow(resultBytes(in));
  launchDiff(in, session.inputA.as<uint8_t>(), session.inputB.as<uint8_t>(), session.workspace.as<double>(),
             session.outputs.as<uint8_t>(), session.stream);
  copyDiffToHost(in, session.outputs.as<uint8_t>(), out, session.stream);
}

double activationDiffCudaDeviceBenchmark(const ActivationDiffInput& in, int repeats, const ActivationDiffOutput& out) {
  CudaSession& session = CudaSession::get();
  std::lock_guard<std::mutex> hold(session.lock);
  const size_t bytes = in.bytes() / 2;
  DeviceBuffer a(bytes), b(bytes), sums(2 * in.pairs * in.width * sizeof(double)), results(resultBytes(in));
  CUDA_CHECK(cudaMemcpy(a.as<uint8_t>(), in.a, bytes, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(b.as<uint8_t>(), in.b, bytes, cudaMemcpyHostToDevice));
  const double ms = meanMilliseconds(session.stream, repeats, [&] {
    launchDiff(in, a.as<uint8_t>(), b.as<uint8_t>(), sums.as<double>(), results.as<uint8_t>(), session.stream);
  });
  copyDiffToHost(in, results.as<uint8_t>(), out, session.stream);
  return ms;
}

}  // namespace fairprune
