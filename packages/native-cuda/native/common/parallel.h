// A minimal fork-join over std::thread: the kernels split work into independent chunks, so no pool is needed
// (thread start-up is ~20 µs, negligible next to the multi-MB scans these calls exist for).
#pragma once
#include <algorithm>
#include <cstddef>
#include <thread>
#include <vector>

namespace fairprune {

// Threads the CPU kernels use: FAIRPRUNE_THREADS if set, else the hardware concurrency.
unsigned cpuThreadCount();

// Runs body(begin, end, worker) over [0, count) split into at most cpuThreadCount() contiguous ranges whose size is
// a multiple of `grain` (except the last). Runs inline when one range suffices.
template <typename Body>
void parallelFor(size_t count, size_t grain, Body&& body) {
  if (count == 0) return;
  grain = std::max<size_t>(grain, 1);
  const size_t grains = (count + grain - 1) / grain;
  const size_t workers = std::min<size_t>(cpuThreadCount(), grains);
  if (workers <= 1) {
    body(size_t{0}, count, size_t{0});
    return;
  }
  const size_t grainsPerWorker = (grains + workers - 1) / workers;
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  for (size_t w = 1; w < workers; ++w) {
    const size_t begin = std::min(count, w * grainsPerWorker * grain);
    const size_t end = std::min(count, (w + 1) * grainsPerWorker * grain);
    if (begin < end) threads.emplace_back([&body, begin, end, w] { body(begin, end, w); });
  }
  body(size_t{0}, std::min(count, grainsPerWorker * grain), size_t{0});
  for (auto& thread : threads) thread.join();
}

}  // namespace fairprune

// Hot CPU loops are compiled three times (x86-64-v4 = AVX-512, x86-64-v3 = AVX2+FMA+F16C, baseline x86-64) and picked at load time by the loader
// (GCC/Clang ifunc), so one binary is fast on modern CPUs and still runs on old ones.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define FAIRPRUNE_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FAIRPRUNE_CPU_CLONES
#endif
