// Argument parsing of the N-API entries. Arguments were validated in TypeScript already (src/index.ts); these checks
// keep a direct caller from crashing the process, and each message names the function and argument.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "../common/cuda_device.h"
#include "../common/dtype.h"
#include "../kernels/activation_diff.h"
#include "../kernels/column_reduce.h"
#include "../kernels/weight_scan.h"

namespace fairprune {

// Throw-if: a failed check becomes a JS TypeError/RangeError in `env` carrying `message`.
#define THROW_TYPE_IF(env, condition, message)                     \
  do {                                                             \
    if (condition) throw Napi::TypeError::New((env), (message));   \
  } while (0)
#define THROW_RANGE_IF(env, condition, message)                    \
  do {                                                             \
    if (condition) throw Napi::RangeError::New((env), (message));  \
  } while (0)

struct ByteView {
  const uint8_t* data;
  size_t length;
};

// A Float32Array, Uint16Array or Uint8Array viewed as bytes at its own byteOffset (no copy, any alignment).
ByteView byteViewArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn, const std::string& name);
// A Float64Array (for in-place accumulators).
Napi::Float64Array float64ArrayArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn, const std::string& name);
size_t sizeArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn, const std::string& name);
std::string stringArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn, const std::string& name);
DType dtypeArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn);
void checkByteLength(const Napi::Env& env, const ByteView& view, size_t expected, const std::string& fn, const std::string& name);
void checkArgumentCount(const Napi::CallbackInfo& info, size_t count, const std::string& fn, const std::string& names);

enum class DeviceChoice { Auto, Cpu, Cuda };
// 'cuda' is refused here when CUDA is not available.
DeviceChoice deviceArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn);
bool useCuda(DeviceChoice choice, size_t bytes);

// (data, rows, cols, dtype, axis) starting at argument `first`, checked: the input of a weight scan.
WeightScanInput scanInputArgs(const Napi::CallbackInfo& info, const std::string& fn, size_t first);
// (a, b, pairs, tokens, width, dtype) starting at argument `first`, checked: the input of an activation difference.
ActivationDiffInput diffInputArgs(const Napi::CallbackInfo& info, const std::string& fn, size_t first);
// (data, rows, cols, dtype) starting at argument `first`, checked: the input of columnMeans.
ColumnMeansInput columnInputArgs(const Napi::CallbackInfo& info, const std::string& fn, size_t first);

}  // namespace fairprune
