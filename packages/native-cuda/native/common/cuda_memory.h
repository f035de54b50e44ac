// Device and pinned host buffers for the CUDA kernels, and the host→device upload they share.
#pragma once
#ifdef FAIRPRUNE_WITH_CUDA
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <mutex>

#include "cuda_device.h"

namespace fairprune {

// Owning device allocation; grow() keeps the allocation when it is already large enough.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { grow(bytes); }
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void grow(size_t bytes);
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// The process-wide CUDA context for host-input calls: one stream, reusable device buffers and two pinned staging
// buffers. Host-input kernels hold `lock` for their whole call, so calls from libuv's threads take turns.
struct CudaSession {
  std::mutex lock;
  cudaStream_t stream = nullptr;
  DeviceBuffer inputA, inputB, workspace, outputs;
  static CudaSession& get();
};

// Copies `bytes` of pageable host memory (any alignment) to `device` on session.stream: chunks go through two
// pinned staging buffers so the CPU's copy of chunk k+1 overlaps the DMA of chunk k. Returns once the copies are
// queued; the stream orders later kernels after them.
void uploadHost(CudaSession& session, void* device, const uint8_t* host, size_t bytes);

// Mean milliseconds of `launch()` over `repeats` runs on `stream`, after one untimed warm-up run; timed with CUDA
// events so only device time counts. Shared by the device benchmarks of every kernel.
template <typename Launch>
double meanMilliseconds(cudaStream_t stream, int repeats, Launch&& launch) {
  launch();
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < repeats; ++i) launch();
  CUDA_CHECK(cudaEventRecord(stop, stream));
  CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / repeats;
}

}  // namespace fairprune
#endif
