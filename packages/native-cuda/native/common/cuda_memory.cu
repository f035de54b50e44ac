#include "cuda_memory.h"

#include <cstring>

#include "cuda_device.h"

namespace fairprune {

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

void DeviceBuffer::grow(size_t bytes) {
  if (bytes <= bytes_) return;
  if (data_ != nullptr) CUDA_CHECK(cudaFree(data_));
  data_ = nullptr;
  bytes_ = 0;
  CUDA_CHECK(cudaMalloc(&data_, bytes));
  bytes_ = bytes;
}

CudaSession& CudaSession::get() {
  // Created on first use and never destroyed: CUDA teardown at process exit races static destructors.
  static CudaSession* session = [] {
    auto* s = new CudaSession();
    CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    return s;
  }();
  return *session;
}

namespace {

constexpr size_t kStagingBytes = 32u << 20;

struct PinnedStaging {
  void* buffers[2] = {nullptr, nullptr};
  cudaEvent_t copied[2] = {nullptr, nullptr};
  PinnedStaging() {
    for (int k = 0; k < 2; ++k) {
      CUDA_CHECK(cudaMallocHost(&buffers[k], kStagingBytes));
      CUDA_CHECK(cudaEventCreateWithFlags(&copied[k], cudaEventDisableTiming));
    }
  }
};

}  // namespace

void uploadHost(CudaSession& session, void* device, const uint8_t* host, size_t bytes) {
  static PinnedStaging* staging = new PinnedStaging();  // lives as long as the process, like the session
  auto* destination = static_cast<uint8_t*>(device);
  for (size_t offset = 0, chunk = 0; offset < bytes; offset += kStagingBytes, ++chunk) {
    const int k = static_cast<int>(chunk % 2);
    const size_t length = bytes - offset < kStagingBytes ? bytes - offset : kStagingBytes;
    CUDA_CHECK(cudaEventSynchronize(staging->copied[k]));  // the DMA that last read this staging buffer is done
    std::memcpy(staging->buffers[k], host + offset, length);
    CUDA_CHECK(cudaMemcpyAsync(destination + offset, staging->buffers[k], length, cudaMemcpyHostToDevice, session.stream));
    CUDA_CHECK(cudaEventRecord(staging->copied[k], session.stream));
  }
}

}  // namespace fairprune
