#include "read_bandwidth.h"

#include <cstring>
#include <vector>

#include "../common/parallel.h"

namespace fairprune {
namespace {

FAIRPRUNE_CPU_CLONES uint64_t sumWords(const uint8_t* data, size_t words) {
  uint64_t lanes[4] = {};
  size_t i = 0;
  for (; i + 4 <= words; i += 4) {
    for (size_t l = 0; l < 4; ++l) {
      uint64_t w;
      std::memcpy(&w, data + (i + l) * 8, 8);
      lanes[l] += w;
    }
  }
  for (; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, data + i * 8, 8);
    lanes[0] += w;
  }
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

}  // namespace

uint64_t sumBytesCpu(const uint8_t* data, size_t bytes) {
  const size_t words = bytes / 8;
  const unsigned threads = cpuThreadCount();
  std::vector<uint64_t> partial(threads, 0);
  parallelFor(words, 4096, [&](size_t w0, size_t w1, size_t worker) {
    partial[worker] += sumWords(data + w0 * 8, w1 - w0);
  });
  uint64_t total = 0;
  for (uint64_t p : partial) total += p;
  for (size_t i = words * 8; i < bytes; ++i) total += data[i];
  return total;
}

}  // namespace fairprune
