// Column gather on the pruning write path: out[r, k] = in[r, kept[k]] for every row, moving element bytes unchanged
// (2- or 4-byte elements, any alignment). Removing neurons from an ONNX [in, out] gate/up weight keeps ~90% of each row in
// runs of a few elements, too short for block copies and slow element by element in JavaScript.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fairprune {

struct GatherColumnsInput {
  const uint8_t* data;     // [rows, cols] elements of elementBytes each, any alignment
  size_t rows;
  size_t cols;
  size_t elementBytes;     // 2 or 4
  const int32_t* kept;     // [keptCount] column indices, strictly increasing, < cols
  size_t keptCount;
};

// out: [rows, keptCount] elements, any alignment, not overlapping the input.
void gatherColumnsCpu(const GatherColumnsInput& input, uint8_t* out);

}  // namespace fairprune
