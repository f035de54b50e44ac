#include <cuda_runtime.h>

#include <cstdlib>
#include <vector>

#include "../common/cuda_device.h"
#include "../common/cuda_memory.h"
#include "read_bandwidth.h"

namespace fairprune {
double deviceCopyMilliseconds(size_t bytes, int repeats) {
  DeviceBuffer source(bytes), destination(bytes);
  CUDA_CHECK(cudaMemset(source.as<void>(), 1, bytes));
  return meanMilliseconds(nullptr, repeats, [&] {
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
  const double ms = meanMilliseconds(nullptr, repeats, [&] {
    CUDA_CHECK(cudaMemcpy(destination.as<void>(), host, bytes, cudaMemcpyHostToDevice));
  });
  if (pinned) cudaFreeHost(host);
  return ms;
}

}  // namespace fairprune
