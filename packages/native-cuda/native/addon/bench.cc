// Benchmark entries: the CPU read baseline and the device-resident timings of tools/gpu-check (synchronous).
#include <stdexcept>
#include <string>

#include "../common/cuda_device.h"
#include "../kernels/activation_diff.h"
#include "../kernels/read_bandwidth.h"
#include "../kernels/weight_scan.h"
#include "args.h"
#include "entries.h"
#include "promise_worker.h"

namespace fairprune {
namespace {

// sumBytes(data) → bigint: the plain one-pass read the CPU benchmarks compare against.
Napi::Value SumBytes(const Napi::CallbackInfo& info) {
  const ByteView view = byteViewArg(info, 0, "sumBytes", "data");
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(sumBytesCpu(view.data, view.length)));
}

// Throws when CUDA is unavailable:
//   cudaBenchmark('copy', bytes, repeats) → ms of one device-to-device copy
//   cudaBenchmark('hostToDevice', bytes, repeats, pinned) → ms of one host→device copy
//   cudaBenchmark('scan', data, rows, cols, dtype, axis, repeats) → {ms, max, min, maxAbs, sum, sumSquares, sumAbs}
//   cudaBenchmark('diff', a, b, pairs, tokens, width, dtype, repeats) → {ms, positionwise, pooled, meanAbs}
Napi::Value CudaBenchmark(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const std::string fn = "cudaBenchmark";
  const CudaStatus& status = cudaStatus();
  THROW_RANGE_IF(env, !status.available, fn + ": CUDA is not available: " + status.reason);
  const std::string kind = stringArg(info, 0, fn, "kind");
  try {
    if (kind == "copy") {
      return Napi::Number::New(env, deviceCopyMilliseconds(sizeArg(info, 1, fn, "bytes"), sizeArg(info, 2, fn, "repeats")));
    }
    if (kind == "hostToDevice") {
      const bool pinned = info[3].ToBoolean().Value();
      return Napi::Number::New(
          env, hostToDeviceMilliseconds(sizeArg(info, 1, fn, "bytes"), pinned, sizeArg(info, 2, fn, "repeats")));
    }
    if (kind == "scan") {
      const WeightScanInput input = scanInputArgs(info, fn, 1);
      OutputArrays outputs(env, 6, input.neurons());
      const WeightScanOutput output{outputs.data(0), outputs.data(1), outputs.data(2),
                                    outputs.data(3), outputs.data(4), outputs.data(5)};
      const double ms = weightScanCudaDeviceBenchmark(input, static_cast<int>(sizeArg(info, 6, fn, "repeats")), output);
      Napi::Object result = Napi::Object::New(env);
      result.Set("ms", ms);
      const char* names[] = {"max", "min", "maxAbs", "sum", "sumSquares", "sumAbs"};
      for (size_t i = 0; i < 6; ++i) result.Set(names[i], outputs.value(i));
      return result;
    }
    if (kind == "diff") {
      Napi::Object result = Napi::Object::New(env);
      const ActivationDiffInput input = diffInputArgs(info, fn, 1);
      OutputArrays outputs(env, 2, input.pairs * input.width);
      Napi::Float64Array meanAbs = Napi::Float64Array::New(env, input.pairs);
      const ActivationDiffOutput output{outputs.data(0), outputs.data(1), meanAbs.Data()};
      const double ms =
          activationDiffCudaDeviceBenchmark(input, static_cast<int>(sizeArg(info, 7, fn, "repeats")), output);
      result.Set("ms", ms);
      result.Set("positionwise", outputs.value(0));
      result.Set("pooled", outputs.value(1));
      result.Set("meanAbs", meanAbs);
      return result;
    }
  } catch (const std::runtime_error& error) {
    throw Napi::Error::New(env, fn + ": " + error.what());
  }
  throw Napi::RangeError::New(env, fn + ": argument 'kind' must be 'copy', 'hostToDevice', 'scan' or 'diff', got '" + kind + "'");
}

}  // namespace

void exportBenchmarks(Napi::Env env, Napi::Object exports) {
  exports.Set("sumBytes", Napi::Function::New(env, SumBytes, "sumBytes"));
  exports.Set("cudaBenchmark", Napi::Function::New(env, CudaBenchmark, "cudaBenchmark"));
}

}  // namespace fairprune
