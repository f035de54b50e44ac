// Which CUDA device (if any) the process can use, and the measured policy behind device 'auto'.
#pragma once
#include <cstddef>
#include <string>

namespace fairprune {

struct CudaStatus {
  bool compiled = false;
  bool available = false;
  int deviceCount = 0;
  std::string deviceName;
  std::string reason;  // why CUDA is not available (build without CUDA, driver error string, no device)
};

// Probed once (cudaGetDeviceCount on device 0's properties); never throws.
const CudaStatus& cudaStatus();

// Measured once, the first time 'auto' meets an available GPU: host-input throughput of the CUDA path (copy in,
// kernel, copy out) and of the CPU kernel on the same 64 MiB matrix.
struct AutoPolicy {
  bool measured = false;
  double cudaHostInputGBps = 0;
  double cpuGBps = 0;
};
const AutoPolicy& autoPolicy();

// True when 'auto' should run an input of `bytes` on CUDA: only if CUDA is available and its estimated time
// (fixed launch/sync overhead + bytes at the measured host-input rate) beats the CPU's.
bool autoChoosesCuda(size_t bytes);

#ifdef FAIRPRUNE_WITH_CUDA
// Throws std::runtime_error("<file>:<line>: <call>: <cuda error string>") when a CUDA call fails.
void cudaCheckImpl(int error, const char* call, const char* file, int line);
#define CUDA_CHECK(call) ::fairprune::cudaCheckImpl(static_cast<int>(call), #call, __FILE__, __LINE__)
#endif

}  // namespace fairprune
