#include "gather_columns.h"

#include <algorithm>
#include <cstring>

#include "../common/parallel.h"

namespace fairprune {
namespace {

// Below this many bytes per piece, a thread costs more than it saves.
constexpr size_t kMinPieceBytes = 1 << 20;

// Element copies through fixed-size memcpy: the compiler emits plain loads and stores, alignment-safe.
template <size_t Bytes>
void gatherRows(const GatherColumnsInput& in, uint8_t* out, size_t r0, size_t r1) {
  const size_t inRow = in.cols * Bytes, outRow = in.keptCount * Bytes;
  for (size_t r = r0; r < r1; ++r) {
    const uint8_t* src = in.data + r * inRow;
    uint8_t* dst = out + r * outRow;
    for (size_t k = 0; k < in.keptCount; ++k) std::memcpy(dst + k * Bytes, src + static_cast<size_t>(in.kept[k]) * Bytes, Bytes);
  }
}

}  // namespace

void gatherColumnsCpu(const GatherColumnsInput& in, uint8_t* out) {
  const size_t rowBytes = std::max<size_t>(1, in.cols * in.elementBytes);
  parallelFor(in.rows, std::max<size_t>(1, kMinPieceBytes / rowBytes), [&](size_t r0, size_t r1, size_t) {
    if (in.elementBytes == 2) gatherRows<2>(in, out, r0, r1);
    else gatherRows<4>(in, out, r0, r1);
  });
}

}  // namespace fairprune
