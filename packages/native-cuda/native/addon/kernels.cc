// The kernel entries: argument parsing (args.h), then the kernel on the libuv pool (PromiseWorker), or inline for
// the column reductions and the column gather, whose milliseconds of work cost less than a worker round trip.
#include <memory>
#include <string>
#include <vector>

#include "../common/cuda_device.h"
#include "../common/parallel.h"
#include "../kernels/activation_diff.h"
#include "../kernels/column_reduce.h"
#include "../kernels/gather_columns.h"
#include "../kernels/weight_scan.h"
#include "args.h"
#include "entries.h"
#include "promise_worker.h"

namespace fairprune {
namespace {

// scanWeights(data, rows, cols, dtype, axis, device) → Promise<{max, min, maxAbs, sum, sumSquares, sumAbs, device}>
Napi::Value ScanWeights(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const std::string fn = "scanWeights";
  checkArgumentCount(info, 6, fn, "data, rows, cols, dtype, axis, device");
  const WeightScanInput input = scanInputArgs(info, fn, 0);
  const DeviceChoice device = deviceArg(info, 5, fn);
  auto outputs = std::make_shared<OutputArrays>(env, 6, input.neurons());
  const WeightScanOutput output{outputs->data(0), outputs->data(1), outputs->data(2),
                                outputs->data(3), outputs->data(4), outputs->data(5)};
  auto ranOnCuda = std::make_shared<bool>(false);
  return PromiseWorker::queue(new PromiseWorker(
      env, fn, {info[0]},
      [input, output, device, ranOnCuda] {
        *ranOnCuda = useCuda(device, input.bytes());
        if (*ranOnCuda) weightScanCuda(input, output);
        else weightScanCpu(input, output);
      },
      [outputs, ranOnCuda](Napi::Env env) {
        Napi::Object result = Napi::Object::New(env);
        const char* names[] = {"max", "min", "maxAbs", "sum", "sumSquares", "sumAbs"};
        for (size_t i = 0; i < 6; ++i) result.Set(names[i], outputs->value(i));
        result.Set("device", *ranOnCuda ? "cuda" : "cpu");
        return result;
      }));
}

// activationDiff(a, b, pairs, tokens, width, dtype, device) → Promise<{positionwise, pooled, meanAbs: Float64Array, device}>
Napi::Value ActivationDiff(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const std::string fn = "activationDiff";
  checkArgumentCount(info, 7, fn, "a, b, pairs, tokens, width, dtype, device");
  const ActivationDiffInput input = diffInputArgs(info, fn, 0);
  const DeviceChoice device = deviceArg(info, 6, fn);
  auto outputs = std::make_shared<OutputArrays>(env, 2, input.pairs * input.width);
  auto meanAbs = std::make_shared<Napi::Reference<Napi::Float64Array>>(
      Napi::Persistent(Napi::Float64Array::New(env, input.pairs)));
  const ActivationDiffOutput output{outputs->data(0), outputs->data(1), meanAbs->Value().Data()};
  auto ranOnCuda = std::make_shared<bool>(false);
  return PromiseWorker::queue(new PromiseWorker(
      env, fn, {info[0], info[1]},
      [input, output, device, ranOnCuda] {
        *ranOnCuda = useCuda(device, input.bytes());
        if (*ranOnCuda) activationDiffCuda(input, output);
        else activationDiffCpu(input, output);
      },
      [outputs, meanAbs, ranOnCuda](Napi::Env env) {
        Napi::Object result = Napi::Object::New(env);
        result.Set("positionwise", outputs->value(0));
        result.Set("pooled", outputs->value(1));
        result.Set("meanAbs", meanAbs->Value());
        result.Set("device", *ranOnCuda ? "cuda" : "cpu");
        return result;
      }));
}

// columnMeans(data, rows, cols, dtype) → Float32Array [cols] (synchronous)
Napi::Value ColumnMeans(const Napi::CallbackInfo& info) {
  const std::string fn = "columnMeans";
  checkArgumentCount(info, 4, fn, "data, rows, cols, dtype");
  const ColumnMeansInput input = columnInputArgs(info, fn, 0);
  Napi::Float32Array means = Napi::Float32Array::New(info.Env(), input.cols);
  columnMeansCpu(input, means.Data());
  return means;
}

// accumulateColumns(totals: Float64Array [cols], terms: Float32Array[] of [rows, cols], rows, cols, op: 'sum'|'max')
// → undefined (synchronous; totals updated in place)
Napi::Value AccumulateColumns(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const std::string fn = "accumulateColumns";
  checkArgumentCount(info, 5, fn, "totals, terms, rows, cols, op");
  Napi::Float64Array totals = float64ArrayArg(info, 0, fn, "totals");
  THROW_TYPE_IF(env, !info[1].IsArray(), fn + ": argument 'terms' must be an array of Float32Arrays");
  const Napi::Array termArray = info[1].As<Napi::Array>();
  const size_t rows = sizeArg(info, 2, fn, "rows"), cols = sizeArg(info, 3, fn, "cols");
  const std::string opName = stringArg(info, 4, fn, "op");
  THROW_RANGE_IF(env, opName != "sum" && opName != "max", fn + ": argument 'op' must be 'sum' or 'max', got '" + opName + "'");
  THROW_RANGE_IF(env, totals.ElementLength() != cols, fn + ": argument 'totals' has " + std::to_string(totals.ElementLength()) +
                                                          " values but cols is " + std::to_string(cols));
  THROW_RANGE_IF(env, termArray.Length() == 0, fn + ": argument 'terms' is empty");
  std::vector<const uint8_t*> terms;
  for (uint32_t k = 0; k < termArray.Length(); ++k) {
    const Napi::Value term = termArray.Get(k);
    const std::string name = "terms[" + std::to_string(k) + "]";
    THROW_TYPE_IF(env, !term.IsTypedArray() || term.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array,
                  fn + ": argument '" + name + "' must be a Float32Array");
    const auto array = term.As<Napi::Float32Array>();
    THROW_RANGE_IF(env, array.ElementLength() != rows * cols, fn + ": argument '" + name + "' has " +
                                                                  std::to_string(array.ElementLength()) + " values but rows × cols is " +
                                                                  std::to_string(rows * cols));
    terms.push_back(static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset());
  }
  accumulateColumnsCpu(terms, rows, cols, opName == "sum" ? ColumnOp::Sum : ColumnOp::Max, totals.Data());
  return env.Undefined();
}

// gatherColumns(data, rows, cols, dtype, kept: Int32Array, out) → undefined (synchronous; out[r, k] = data[r, kept[k]])
Napi::Value GatherColumns(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const std::string fn = "gatherColumns";
  checkArgumentCount(info, 6, fn, "data, rows, cols, dtype, kept, out");
  const ByteView data = byteViewArg(info, 0, fn, "data");
  const size_t rows = sizeArg(info, 1, fn, "rows"), cols = sizeArg(info, 2, fn, "cols");
  const size_t elementBytes = dtypeBytes(dtypeArg(info, 3, fn));
  checkByteLength(env, data, rows * cols * elementBytes, fn, "data");
  THROW_TYPE_IF(env, !info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array,
                fn + ": argument 'kept' must be an Int32Array");
  const auto kept = info[4].As<Napi::Int32Array>();
  for (size_t k = 0; k < kept.ElementLength(); ++k) {
    THROW_RANGE_IF(env, kept[k] < 0 || static_cast<size_t>(kept[k]) >= cols || (k > 0 && kept[k] <= kept[k - 1]),
                   fn + ": argument 'kept' must be strictly increasing column indices below " + std::to_string(cols) +
                       ", got " + std::to_string(kept[k]) + " at " + std::to_string(k));
  }
  const ByteView out = byteViewArg(info, 5, fn, "out");
  checkByteLength(env, out, rows * kept.ElementLength() * elementBytes, fn, "out");
  THROW_RANGE_IF(env, out.data < data.data + data.length && data.data < out.data + out.length, fn + ": arguments 'data' and 'out' overlap");
  const GatherColumnsInput input{data.data, rows, cols, elementBytes, kept.Data(), kept.ElementLength()};
  gatherColumnsCpu(input, const_cast<uint8_t*>(out.data));
  return env.Undefined();
}

// backendInfo() → {cuda: {compiled, available, deviceCount, deviceName?, reason?}, threads, autoPolicy?}
Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const CudaStatus& status = cudaStatus();
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("compiled", status.compiled);
  cuda.Set("available", status.available);
  cuda.Set("deviceCount", status.deviceCount);
  if (!status.deviceName.empty()) cuda.Set("deviceName", status.deviceName);
  if (!status.reason.empty()) cuda.Set("reason", status.reason);
  Napi::Object result = Napi::Object::New(env);
  result.Set("cuda", cuda);
  result.Set("threads", cpuThreadCount());
  const AutoPolicy& policy = autoPolicy();
  if (policy.measured) {
    Napi::Object measured = Napi::Object::New(env);
    measured.Set("cudaHostInputGBps", policy.cudaHostInputGBps);
    measured.Set("cpuGBps", policy.cpuGBps);
    result.Set("autoPolicy", measured);
  }
  return result;
}

}  // namespace

void exportKernels(Napi::Env env, Napi::Object exports) {
  exports.Set("scanWeights", Napi::Function::New(env, ScanWeights, "scanWeights"));
  exports.Set("activationDiff", Napi::Function::New(env, ActivationDiff, "activationDiff"));
  exports.Set("columnMeans", Napi::Function::New(env, ColumnMeans, "columnMeans"));
  exports.Set("accumulateColumns", Napi::Function::New(env, AccumulateColumns, "accumulateColumns"));
  exports.Set("gatherColumns", Napi::Function::New(env, GatherColumns, "gatherColumns"));
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo, "backendInfo"));
}

}  // namespace fairprune
