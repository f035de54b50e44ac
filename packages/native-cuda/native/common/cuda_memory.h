// Device and pinned host buffers for the CUDA kernels, and the host→device upload they share.
#pragma once
#ifdef FAIRPRUNE_WITH_CUDA
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <mutex>

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

}  // namespace fairprune
#endif
