// Compiled only without CUDA: the CUDA entry points exist so callers need no #ifdef, and throw if ever reached
// (device 'cuda' is refused before and 'auto' never chooses CUDA in such a build).
#include <stdexcept>
#include <string>

#include "../kernels/activation_diff.h"
#include "../kernels/read_bandwidth.h"
#include "../kernels/weight_scan.h"

namespace fairprune {
namespace {

[[noreturn]] void notCompiled(const char* function) {
  throw std::runtime_error(std::string(function) + ": fairprune_native was built without CUDA");
}

}  // namespace

void weightScanCuda(const WeightScanInput&, const WeightScanOutput&) { notCompiled("weightScanCuda"); }
double weightScanCudaDeviceBenchmark(const WeightScanInput&, int, const WeightScanOutput&) {
  notCompiled("weightScanCudaDeviceBenchmark");
}
void activationDiffCuda(const ActivationDiffInput&, const ActivationDiffOutput&) { notCompiled("activationDiffCuda"); }
double activationDiffCudaDeviceBenchmark(const ActivationDiffInput&, int, const ActivationDiffOutput&) {
  notCompiled("activationDiffCudaDeviceBenchmark");
}
double deviceCopyMilliseconds(size_t, int) { notCompiled("deviceCopyMilliseconds"); }
double hostToDeviceMilliseconds(size_t, bool, int) { notCompiled("hostToDeviceMilliseconds"); }

}  // namespace fairprune
