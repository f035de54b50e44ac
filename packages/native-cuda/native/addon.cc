// The N-API surface of fairprune_native: argument checks, promise workers and the export table. Arguments were
// validated in TypeScript already (src/index.ts); the checks here keep a direct caller from crashing the process.
#include <napi.h>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cuda_device.h"
#include "common/parallel.h"
#include "kernels/activation_diff.h"
#include "kernels/read_bandwidth.h"
#include "kernels/weight_scan.h"

namespace fairprune {
namespace {

// Throw-if macros: a failed check becomes a JS TypeError/RangeError naming the function and argument.
#define THROW_TYPE_IF(condition, message) \
  if (condition) throw Napi::TypeError::New(env, message)
#define THROW_RANGE_IF(condition, message) \
  if (condition) throw Napi::RangeError::New(env, message)

struct ByteView {
  const uint8_t* data;
  size_t length;
};

// A Float32Array, Uint16Array or Uint8Array viewed as bytes at its own byteOffset (no copy, any alignment).
ByteView byteViewArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn, const std::string& name) {
  const Napi::Env env = info.Env();
  const Napi::Value value = info[index];
  THROW_TYPE_IF(!value.IsTypedArray(), fn + ": argument '" + name + "' must be a Float32Array, Uint16Array or Uint8Array");
  const auto array = value.As<Napi::TypedArray>();
  const napi_typedarray_type type = array.TypedArrayType();
  THROW_TYPE_IF(type != napi_float32_array && type != napi_uint16_array && type != napi_uint8_array,
                fn + ": argument '" + name + "' must be a Float32Array, Uint16Array or Uint8Array");
  const auto* base = static_cast<const uint8_t*>(array.ArrayBuffer().Data());
  return ByteView{base + array.ByteOffset(), array.ByteLength()};
}

size_t sizeArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn, const std::string& name) {
  const Napi::Env env = info.Env();
  THROW_TYPE_IF(!info[index].IsNumber(), fn + ": argument '" + name + "' must be a number");
  const double value = info[index].As<Napi::Number>().DoubleValue();
  THROW_RANGE_IF(!(value >= 1) || value != static_cast<double>(static_cast<uint64_t>(value)) || value > 9007199254740991.0,
                 fn + ": argument '" + name + "' must be a positive integer, got " + std::to_string(value));
  return static_cast<size_t>(value);
}

std::string stringArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn, const std::string& name) {
  const Napi::Env env = info.Env();
  THROW_TYPE_IF(!info[index].IsString(), fn + ": argument '" + name + "' must be a string");
  return info[index].As<Napi::String>().Utf8Value();
}

DType dtypeArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn) {
  const Napi::Env env = info.Env();
  const std::string value = stringArg(info, index, fn, "dtype");
  if (value == "f32") return DType::F32;
  if (value == "f16") return DType::F16;
  if (value == "bf16") return DType::BF16;
  throw Napi::RangeError::New(env, fn + ": argument 'dtype' must be 'f32', 'f16' or 'bf16', got '" + value + "'");
}

enum class DeviceChoice { Auto, Cpu, Cuda };

DeviceChoice deviceArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn) {
  const Napi::Env env = info.Env();
  const std::string value = stringArg(info, index, fn, "device");
  if (value == "auto") return DeviceChoice::Auto;
  if (value == "cpu") return DeviceChoice::Cpu;
  if (value == "cuda") {
    const CudaStatus& status = cudaStatus();
    THROW_RANGE_IF(!status.available, fn + ": device 'cuda' requested but CUDA is not available: " + status.reason);
    return DeviceChoice::Cuda;
  }
  throw Napi::RangeError::New(env, fn + ": argument 'device' must be 'auto', 'cpu' or 'cuda', got '" + value + "'");
}

bool useCuda(DeviceChoice choice, size_t bytes) {
  return choice == DeviceChoice::Cuda || (choice == DeviceChoice::Auto && autoChoosesCuda(bytes));
}

void checkByteLength(const Napi::Env& env, const ByteView& view, size_t expected, const std::string& fn,
                     const std::string& name) {
  THROW_RANGE_IF(view.length != expected, fn + ": argument '" + name + "' has " + std::to_string(view.length) +
                                              " bytes but its shape and dtype need " + std::to_string(expected));
}

// Runs `execute` on the libuv pool and settles a promise: resolve(env) builds the value on the JS thread; a C++
// exception in execute rejects with an Error carrying the function name and the exception's message.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::string fn, std::vector<Napi::Value> keepAlive, std::function<void()> execute,
                std::function<Napi::Value(Napi::Env)> resolve)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        fn_(std::move(fn)),
        execute_(std::move(execute)),
        resolve_(std::move(resolve)) {
    for (const auto& value : keepAlive) keepAlive_.push_back(Napi::Persistent(value.As<Napi::Object>()));
  }
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      execute_();
    } catch (const std::exception& error) {
      SetError(fn_ + ": " + error.what());
    } catch (...) {
      SetError(fn_ + ": unknown native error");
    }
  }
  void OnOK() override { deferred_.Resolve(resolve_(Env())); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string fn_;
  std::function<void()> execute_;
  std::function<Napi::Value(Napi::Env)> resolve_;
  std::vector<Napi::ObjectReference> keepAlive_;
};

Napi::Value queue(PromiseWorker* worker) {
  worker->Queue();
  return worker->Promise();
}

// Float32Arrays allocated on the JS thread and filled by a worker; references keep them alive until resolve.
struct OutputArrays {
  std::vector<Napi::Reference<Napi::Float32Array>> arrays;
  OutputArrays(Napi::Env env, size_t count, size_t length) {
    for (size_t i = 0; i < count; ++i) arrays.push_back(Napi::Persistent(Napi::Float32Array::New(env, length)));
  }
  float* data(size_t i) { return arrays[i].Value().Data(); }
  Napi::Float32Array value(size_t i) { return arrays[i].Value(); }
};

// (data, rows, cols, dtype, axis) starting at argument `first`, checked: the input of a weight scan.
WeightScanInput scanInputArgs(const Napi::CallbackInfo& info, const std::string& fn, size_t first) {
  const Napi::Env env = info.Env();
  const ByteView data = byteViewArg(info, first, fn, "data");
  const size_t rows = sizeArg(info, first + 1, fn, "rows"), cols = sizeArg(info, first + 2, fn, "cols");
  const DType dtype = dtypeArg(info, first + 3, fn);
  const std::string axisName = stringArg(info, first + 4, fn, "axis");
  THROW_RANGE_IF(axisName != "rows" && axisName != "cols",
                 fn + ": argument 'axis' must be 'rows' or 'cols', got '" + axisName + "'");
  const WeightScanInput input{data.data, rows, cols, dtype, axisName == "rows" ? Axis::Rows : Axis::Cols};
  checkByteLength(env, data, input.bytes(), fn, "data");
  return input;
}

// scanWeights(data, rows, cols, dtype, axis, device) → Promise<{max, min, maxAbs, sum, sumSquares, sumAbs, device}>
Napi::Value ScanWeights(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const std::string fn = "scanWeights";
  THROW_TYPE_IF(info.Length() != 6, fn + ": expected 6 arguments (data, rows, cols, dtype, axis, device)");
  const WeightScanInput input = scanInputArgs(info, fn, 0);
  const DeviceChoice device = deviceArg(info, 5, fn);

  auto outputs = std::make_shared<OutputArrays>(env, 6, input.neurons());
  const WeightScanOutput output{outputs->data(0), outputs->data(1), outputs->data(2),
                                outputs->data(3), outputs->data(4), outputs->data(5)};
  auto ranOnCuda = std::make_shared<bool>(false);
  auto* worker = new PromiseWorker(
      env, fn, {info[0]},
      [input, output, device, ranOnCuda] {
        *ranOnCuda = useCuda(device, input.bytes());
#ifdef FAIRPRUNE_WITH_CUDA
        if (*ranOnCuda) return weightScanCuda(input, output);
#endif
        weightScanCpu(input, output);
      },
      [outputs, ranOnCuda](Napi::Env env) {
        Napi::Object result = Napi::Object::New(env);
        const char* names[] = {"max", "min", "maxAbs", "sum", "sumSquares", "sumAbs"};
        for (size_t i = 0; i < 6; ++i) result.Set(names[i], outputs->value(i));
        result.Set("device", *ranOnCuda ? "cuda" : "cpu");
        return result;
      });
  return queue(worker);
}

// (a, b, pairs, tokens, width, dtype) starting at argument `first`, checked: the input of an activation difference.
ActivationDiffInput diffInputArgs(const Napi::CallbackInfo& info, const std::string& fn, size_t first = 0) {
  const Napi::Env env = info.Env();
  const ByteView a = byteViewArg(info, first, fn, "a"), b = byteViewArg(info, first + 1, fn, "b");
  const size_t pairs = sizeArg(info, first + 2, fn, "pairs"), tokens = sizeArg(info, first + 3, fn, "tokens");
  const size_t width = sizeArg(info, first + 4, fn, "width");
  const DType dtype = dtypeArg(info, first + 5, fn);
  const ActivationDiffInput input{a.data, b.data, pairs, tokens, width, dtype};
  checkByteLength(env, a, input.bytes() / 2, fn, "a");
  checkByteLength(env, b, input.bytes() / 2, fn, "b");
  return input;
}

// activationDiff(a, b, pairs, tokens, width, dtype, device) → Promise<{positionwise, pooled, meanAbs: Float64Array, device}>
Napi::Value ActivationDiff(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const std::string fn = "activationDiff";
  THROW_TYPE_IF(info.Length() != 7, fn + ": expected 7 arguments (a, b, pairs, tokens, width, dtype, device)");
  const ActivationDiffInput input = diffInputArgs(info, fn);
  const DeviceChoice device = deviceArg(info, 6, fn);
  auto outputs = std::make_shared<OutputArrays>(env, 2, input.pairs * input.width);
  auto meanAbs = std::make_shared<Napi::Reference<Napi::Float64Array>>(
      Napi::Persistent(Napi::Float64Array::New(env, input.pairs)));
  const ActivationDiffOutput output{outputs->data(0), outputs->data(1), meanAbs->Value().Data()};
  auto ranOnCuda = std::make_shared<bool>(false);
  auto* worker = new PromiseWorker(
      env, fn, {info[0], info[1]},
      [input, output, device, ranOnCuda] {
        *ranOnCuda = useCuda(device, input.bytes());
#ifdef FAIRPRUNE_WITH_CUDA
        if (*ranOnCuda) return activationDiffCuda(input, output);
#endif
        activationDiffCpu(input, output);
      },
      [outputs, meanAbs, ranOnCuda](Napi::Env env) {
        Napi::Object result = Napi::Object::New(env);
        result.Set("positionwise", outputs->value(0));
        result.Set("pooled", outputs->value(1));
        result.Set("meanAbs", meanAbs->Value());
        result.Set("device", *ranOnCuda ? "cuda" : "cpu");
        return result;
      });
  return queue(worker);
}

// Welford accumulator over per-pair statistic vectors; on CUDA its state stays on the device between add() calls.
// Calls must not overlap (the TS wrapper chains them).
class DiffAccumulatorWrap : public Napi::ObjectWrap<DiffAccumulatorWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DiffAccumulator",
                       {InstanceMethod("add", &DiffAccumulatorWrap::Add),
                        InstanceMethod("result", &DiffAccumulatorWrap::Result),
                        InstanceMethod("dispose", &DiffAccumulatorWrap::Dispose),
                        InstanceAccessor("device", &DiffAccumulatorWrap::DeviceName, nullptr)});
  }

  // new DiffAccumulator(width, statistic: 'positionwise'|'pooled', device)
  explicit DiffAccumulatorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DiffAccumulatorWrap>(info) {
    const Napi::Env env = info.Env();
    const std::string fn = "DiffAccumulator";
    THROW_TYPE_IF(info.Length() != 3, fn + ": expected 3 arguments (width, statistic, device)");
    const size_t width = sizeArg(info, 0, fn, "width");
    const std::string statistic = stringArg(info, 1, fn, "statistic");
    THROW_RANGE_IF(statistic != "positionwise" && statistic != "pooled",
                   fn + ": argument 'statistic' must be 'positionwise' or 'pooled', got '" + statistic + "'");
    statistic_ = statistic == "pooled" ? DiffStatistic::Pooled : DiffStatistic::Positionwise;
    const DeviceChoice device = deviceArg(info, 2, fn);
    // 'auto' decides once for the accumulator's life, sized as a typical 16-token pair of this width in f32.
    const bool onCuda = useCuda(device, 2 * 16 * width * sizeof(float));
    state_ = std::make_shared<State>(width);
#ifdef FAIRPRUNE_WITH_CUDA
    if (onCuda) state_->cuda = std::make_unique<CudaWelford>(width, statistic_);
#else
    (void)onCuda;
#endif
  }

 private:
  struct State {
    WelfordState cpu;
#ifdef FAIRPRUNE_WITH_CUDA
    std::unique_ptr<CudaWelford> cuda;
#endif
    bool disposed = false;
    explicit State(size_t width) : cpu(width) {}
    bool onCuda() const {
#ifdef FAIRPRUNE_WITH_CUDA
      return cuda != nullptr;
#else
      return false;
#endif
    }
  };

  void checkNotDisposed(const Napi::Env& env, const std::string& method) const {
    if (state_->disposed) throw Napi::Error::New(env, "DiffAccumulator." + method + ": accumulator is disposed");
  }

  // add(a, b, pairs, tokens, width, dtype) → Promise<void>
  Napi::Value Add(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    const std::string fn = "DiffAccumulator.add";
    checkNotDisposed(env, "add");
    THROW_TYPE_IF(info.Length() != 6, fn + ": expected 6 arguments (a, b, pairs, tokens, width, dtype)");
    const ActivationDiffInput input = diffInputArgs(info, fn);
    THROW_RANGE_IF(input.width != state_->cpu.width, fn + ": argument 'width' is " + std::to_string(input.width) +
                                                          " but the accumulator was created for width " +
                                                          std::to_string(state_->cpu.width));
    auto state = state_;
    const DiffStatistic statistic = statistic_;
    auto* worker = new PromiseWorker(
        env, fn, {info[0], info[1]},
        [state, input, statistic] {
#ifdef FAIRPRUNE_WITH_CUDA
          if (state->cuda) return state->cuda->add(input);
#endif
          std::vector<float> positionwise(input.pairs * input.width), pooled(input.pairs * input.width);
          std::vector<double> meanAbs(input.pairs);
          activationDiffCpu(input, ActivationDiffOutput{positionwise.data(), pooled.data(), meanAbs.data()});
          welfordAddCpu(state->cpu, statistic == DiffStatistic::Pooled ? pooled.data() : positionwise.data(),
                        input.pairs);
        },
        [](Napi::Env env) { return env.Undefined(); });
    return queue(worker);
  }

  // result() → Promise<{count, mean, variance, max}> (Float32Arrays; variance = M2 / count)
  Napi::Value Result(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    checkNotDisposed(env, "result");
    const size_t width = state_->cpu.width;
    auto outputs = std::make_shared<OutputArrays>(env, 3, width);
    float* mean = outputs->data(0);
    float* variance = outputs->data(1);
    float* max = outputs->data(2);
    auto state = state_;
    auto count = std::make_shared<uint64_t>(0);
    auto* worker = new PromiseWorker(
        env, "DiffAccumulator.result", {},
        [state, mean, variance, max, width, count] {
          std::vector<double> meanD(width), m2(width);
          std::vector<float> maxF(width);
#ifdef FAIRPRUNE_WITH_CUDA
          if (state->cuda) {
            state->cuda->result(*count, meanD.data(), m2.data(), maxF.data());
          } else
#endif
          {
            *count = state->cpu.count;
            meanD = state->cpu.mean;
            m2 = state->cpu.m2;
            maxF = state->cpu.max;
          }
          const double n = static_cast<double>(*count);
          for (size_t j = 0; j < width; ++j) {
            mean[j] = static_cast<float>(meanD[j]);
            variance[j] = static_cast<float>(*count == 0 ? 0.0 : m2[j] / n);
            max[j] = maxF[j];
          }
        },
        [outputs, count](Napi::Env env) {
          Napi::Object result = Napi::Object::New(env);
          result.Set("count", Napi::Number::New(env, static_cast<double>(*count)));
          result.Set("mean", outputs->value(0));
          result.Set("variance", outputs->value(1));
          result.Set("max", outputs->value(2));
          return result;
        });
    return queue(worker);
  }

  // dispose(): frees device memory now (a pending add/result keeps the state alive until it finishes).
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_->disposed = true;
#ifdef FAIRPRUNE_WITH_CUDA
    if (state_.use_count() == 1) state_->cuda.reset();
#endif
    return info.Env().Undefined();
  }

  Napi::Value DeviceName(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), state_->onCuda() ? "cuda" : "cpu");
  }

  std::shared_ptr<State> state_;
  DiffStatistic statistic_ = DiffStatistic::Positionwise;
};

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

// sumBytes(data) → bigint: the plain one-pass read the CPU benchmarks compare against (synchronous).
Napi::Value SumBytes(const Napi::CallbackInfo& info) {
  const ByteView view = byteViewArg(info, 0, "sumBytes", "data");
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(sumBytesCpu(view.data, view.length)));
}

// Device benchmarks for tools/gpu-check (synchronous; they throw when CUDA is unavailable):
//   cudaBenchmark('copy', bytes, repeats) → ms of one device-to-device copy
//   cudaBenchmark('hostToDevice', bytes, repeats, pinned) → ms of one host→device copy
//   cudaBenchmark('scan', data, rows, cols, dtype, axis, repeats) → {ms, max, min, maxAbs, sum, sumSquares, sumAbs}
//   cudaBenchmark('diff', a, b, pairs, tokens, width, dtype, repeats) → {ms, positionwise, pooled, meanAbs}
Napi::Value CudaBenchmark(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const std::string fn = "cudaBenchmark";
  const CudaStatus& status = cudaStatus();
  THROW_RANGE_IF(!status.available, fn + ": CUDA is not available: " + status.reason);
#ifdef FAIRPRUNE_WITH_CUDA
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
#else
  return env.Undefined();
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("scanWeights", Napi::Function::New(env, ScanWeights, "scanWeights"));
  exports.Set("activationDiff", Napi::Function::New(env, ActivationDiff, "activationDiff"));
  exports.Set("DiffAccumulator", DiffAccumulatorWrap::Define(env));
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo, "backendInfo"));
  exports.Set("sumBytes", Napi::Function::New(env, SumBytes, "sumBytes"));
  exports.Set("cudaBenchmark", Napi::Function::New(env, CudaBenchmark, "cudaBenchmark"));
  return exports;
}

}  // namespace
}  // namespace fairprune

static Napi::Object InitFairpruneNative(Napi::Env env, Napi::Object exports) { return fairprune::Init(env, exports); }
NODE_API_MODULE(fairprune_native, InitFairpruneNative)
