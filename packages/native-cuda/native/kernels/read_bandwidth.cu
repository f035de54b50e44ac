#include <cuda_runtime.h>

#include <cstdlib>
#include <vector>

#include "../common/cuda_device.h"
#include "../common/cuda_memory.h"
#include "read_bandwidth.h"

namespace fairprune {
namespace {

template <typename Copy>
double meanMilliseconds(int repeats, Copy&& copy) {
  copy();  // warm-up
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  CUDA_CHECK(cudaEventRecord(start));
  for (int i = 0; i < repeats; ++i) copy();
  CUDA_CHECK(cudaEventRecord(stop));
  CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / repeats;
}

}  // namespace

double deviceCopyMilliseconds(size_t bytes, int repeats) {
  DeviceBuffer source(bytes), destination(bytes);
  CUDA_CHECK(cudaMemset(source.as<void>(), 1, bytes));
  return meanMilliseconds(repeats, [&] {
    CUDA_CHECK(cudaMemcpyAsync(destination.as<void>(), source.as<void>(), bytes, cudaMemcpyDeviceToDevice));
  });
}

double hostToDeviceMilliseconds(size_t bytes, bool pinned, int repeats) {
  DeviceBuffer destination(bytes);
  void* host = nullptr;
  std::vector<uint8_t> pageable;
  if (pinned) {
    CUDA_CHECK(cudaMallocHost(&host, bytes));
  } else {
    pageable.assign(bytes, 1);
    host = pageable.data();
  }
  const double ms = meanMilliseconds(repeats, [&] {
    CUDA_CHECK(cudaMemcpy(destination.as<void>(), host, bytes, cudaMemcpyHostToDevice));
  });
  if (pinned) cudaFreeHost(host);
  return ms;
}

}  // namespace fairprune
