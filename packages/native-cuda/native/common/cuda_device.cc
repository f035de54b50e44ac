#include "cuda_device.h"

#include <chrono>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "../kernels/weight_scan.h"

#ifdef FAIRPRUNE_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace fairprune {

const CudaStatus& cudaStatus() {
  static const CudaStatus status = [] {
    CudaStatus s;
#ifdef FAIRPRUNE_WITH_CUDA
    s.compiled = true;
    int count = 0;
    const cudaError_t error = cudaGetDeviceCount(&count);
    if (error != cudaSuccess) {
      s.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(error);
      cudaGetLastError();  // clear the sticky error so later probes start clean
      return s;
    }
    s.deviceCount = count;
    if (count == 0) {
      s.reason = "no CUDA device found";
      return s;
    }
    cudaDeviceProp properties{};
    if (cudaGetDeviceProperties(&properties, 0) == cudaSuccess) s.deviceName = properties.name;
    s.available = true;
#else
    s.reason = "built without CUDA (nvcc not found at build time or FAIRPRUNE_CUDA=OFF)";
#endif
    return s;
  }();
  return status;
}

#ifdef FAIRPRUNE_WITH_CUDA
void cudaCheckImpl(int error, const char* call, const char* file, int line) {
  if (error == cudaSuccess) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call + ": " +
                           cudaGetErrorString(static_cast<cudaError_t>(error)));
}
#endif

namespace {

AutoPolicy measureAutoPolicy() {
  AutoPolicy policy;
#ifdef FAIRPRUNE_WITH_CUDA
  const size_t rows = 4096, cols = 4096;  // 64 MiB of f32
  std::vector<float> matrix(rows * cols, 0.5f);
  std::vector<float> results(6 * rows);
  const WeightScanInput input{reinterpret_cast<const uint8_t*>(matrix.data()), rows, cols, DType::F32, Axis::Rows};
  float* r = results.data();
  const WeightScanOutput output{r, r + rows, r + 2 * rows, r + 3 * rows, r + 4 * rows, r + 5 * rows};
  auto seconds = [&](auto&& run) {
    run();  // warm-up: first CUDA call creates the context, first CPU call spawns threads
    const auto start = std::chrono::steady_clock::now();
    run();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const double gigabytes = static_cast<double>(input.bytes()) / 1e9;
  policy.cudaHostInputGBps = gigabytes / seconds([&] { weightScanCuda(input, output); });
  policy.cpuGBps = gigabytes / seconds([&] { weightScanCpu(input, output); });
  policy.measured = true;
#endif
  return policy;
}

std::once_flag policyOnce;
AutoPolicy policyValue;

}  // namespace

const AutoPolicy& autoPolicy() { return policyValue; }

bool autoChoosesCuda(size_t bytes) {
  if (!cudaStatus().available) return false;
  std::call_once(policyOnce, [] { policyValue = measureAutoPolicy(); });
  constexpr double kCudaOverheadSeconds = 50e-6;  // allocation reuse, launches and the final synchronisation
  const double cudaSeconds = kCudaOverheadSeconds + static_cast<double>(bytes) / (policyValue.cudaHostInputGBps * 1e9);
  const double cpuSeconds = static_cast<double>(bytes) / (policyValue.cpuGBps * 1e9);
  return cudaSeconds < cpuSeconds;
}

}  // namespace fairprune
