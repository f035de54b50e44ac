// Baselines the benchmarks compare kernels against: what a plain one-pass read (CPU) or a device-to-device copy
// (GPU) achieves on the same buffer.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fairprune {

// Sums the buffer as 64-bit words (tail bytes added individually), multithreaded; the sum keeps the read honest.
uint64_t sumBytesCpu(const uint8_t* data, size_t bytes);

// GPU baselines (stubs that throw in a build without CUDA, addon/cuda_off.cc).
// Mean milliseconds of one cudaMemcpy device-to-device of `bytes` over `repeats` runs.
double deviceCopyMilliseconds(size_t bytes, int repeats);
// Mean milliseconds to copy `bytes` from pageable host memory / from pinned host memory to the device.
double hostToDeviceMilliseconds(size_t bytes, bool pinned, int repeats);

}  // namespace fairprune
