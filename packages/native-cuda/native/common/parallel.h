// A minimal fork-join over std::thread: the kernels split work into independent pieces, so no pool is needed
// (thread start-up is ~20 µs, small next to the multi-MB scans these calls exist for).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace fairprune {

// Threads the CPU kernels use: FAIRPRUNE_THREADS if set, else the hardware concurrency.
unsigned cpuThreadCount();

// Pieces per worker: pieces are claimed dynamically, so a worker the OS deschedules (the machine may be shared)
// holds back only its current piece instead of a fixed 1/workers share of the call.
constexpr size_t kPiecesPerWorker = 8;

// Runs body(begin, end, worker) over [0, count) split into contiguous pieces whose size is a multiple of `grain`
// (except the last), on at most cpuThreadCount() workers; a worker may run several pieces, in increasing order.
// Runs inline when one piece suffices.
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
  const size_t pieces = std::min(grains, workers * kPiecesPerWorker);
  const size_t pieceSize = (grains + pieces - 1) / pieces * grain;
  std::atomic<size_t> next{0};
  auto work = [&](size_t worker) {
    for (size_t begin; (begin = next.fetch_add(1, std::memory_order_relaxed) * pieceSize) < count;) {
      body(begin, std::min(count, begin + pieceSize), worker);
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  for (size_t w = 1; w < workers; ++w) threads.emplace_back(work, w);
  work(0);
  for (auto& thread : threads) thread.join();
}

}  // namespace fairprune

// The plain-read loop of read_bandwidth.cc is compiled three times (x86-64-v4, x86-64-v3, baseline) and picked at
// load time (GCC/Clang ifunc). The kernels' hot loops use per-level regions instead (cpu_isa.h), because they need
// F16C/AVX-512 intrinsics, which can't be inlined into the templates a target clone calls.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define FAIRPRUNE_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FAIRPRUNE_CPU_CLONES
#endif
