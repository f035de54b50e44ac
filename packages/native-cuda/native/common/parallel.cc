#include "parallel.h"

#include <cstdlib>

namespace fairprune {

unsigned cpuThreadCount() {
  static const unsigned count = [] {
    if (const char* configured = std::getenv("FAIRPRUNE_THREADS")) {
      const long value = std::strtol(configured, nullptr, 10);
      if (value > 0) return static_cast<unsigned>(value);
    }
    const unsigned hardware = std::thread::hardware_concurrency();
    return hardware == 0 ? 1u : hardware;
  }();
  return count;
}

}  // namespace fairprune
