#include "args.h"

namespace fairprune {

ByteView byteViewArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn, const std::string& name) {
  const Napi::Env env = info.Env();
  const Napi::Value value = info[index];
  const std::string expected = fn + ": argument '" + name + "' must be a Float32Array, Uint16Array or Uint8Array";
  THROW_TYPE_IF(env, !value.IsTypedArray(), expected);
  const auto array = value.As<Napi::TypedArray>();
  const napi_typedarray_type type = array.TypedArrayType();
  THROW_TYPE_IF(env, type != napi_float32_array && type != napi_uint16_array && type != napi_uint8_array, expected);
  const auto* base = static_cast<const uint8_t*>(array.ArrayBuffer().Data());
  return ByteView{base + array.ByteOffset(), array.ByteLength()};
}

Napi::Float64Array float64ArrayArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn, const std::string& name) {
  const Napi::Env env = info.Env();
  const Napi::Value value = info[index];
  THROW_TYPE_IF(env, !value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array,
                fn + ": argument '" + name + "' must be a Float64Array");
  return value.As<Napi::Float64Array>();
}

size_t sizeArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn, const std::string& name) {
  const Napi::Env env = info.Env();
  THROW_TYPE_IF(env, !info[index].IsNumber(), fn + ": argument '" + name + "' must be a number");
  const double value = info[index].As<Napi::Number>().DoubleValue();
  THROW_RANGE_IF(env, !(value >= 1) || value != static_cast<double>(static_cast<uint64_t>(value)) || value > 9007199254740991.0,
                 fn + ": argument '" + name + "' must be a positive integer, got " + std::to_string(value));
  return static_cast<size_t>(value);
}

std::string stringArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn, const std::string& name) {
  const Napi::Env env = info.Env();
  THROW_TYPE_IF(env, !info[index].IsString(), fn + ": argument '" + name + "' must be a string");
  return info[index].As<Napi::String>().Utf8Value();
}

DType dtypeArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn) {
  const std::string value = stringArg(info, index, fn, "dtype");
  if (value == "f32") return DType::F32;
  if (value == "f16") return DType::F16;
  if (value == "bf16") return DType::BF16;
  throw Napi::RangeError::New(info.Env(), fn + ": argument 'dtype' must be 'f32', 'f16' or 'bf16', got '" + value + "'");
}

void checkByteLength(const Napi::Env& env, const ByteView& view, size_t expected, const std::string& fn, const std::string& name) {
  THROW_RANGE_IF(env, view.length != expected, fn + ": argument '" + name + "' has " + std::to_string(view.length) +
                                                   " bytes but its shape and dtype need " + std::to_string(expected));
}

void checkArgumentCount(const Napi::CallbackInfo& info, size_t count, const std::string& fn, const std::string& names) {
  THROW_TYPE_IF(info.Env(), info.Length() != count,
                fn + ": expected " + std::to_string(count) + " arguments (" + names + ")");
}

DeviceChoice deviceArg(const Napi::CallbackInfo& info, size_t index, const std::string& fn) {
  const std::string value = stringArg(info, index, fn, "device");
  if (value == "auto") return DeviceChoice::Auto;
  if (value == "cpu") return DeviceChoice::Cpu;
  if (value == "cuda") {
    const CudaStatus& status = cudaStatus();
    THROW_RANGE_IF(info.Env(), !status.available, fn + ": device 'cuda' requested but CUDA is not available: " + status.reason);
    return DeviceChoice::Cuda;
  }
  throw Napi::RangeError::New(info.Env(), fn + ": argument 'device' must be 'auto', 'cpu' or 'cuda', got '" + value + "'");
}

bool useCuda(DeviceChoice choice, size_t bytes) {
  return choice == DeviceChoice::Cuda || (choice == DeviceChoice::Auto && autoChoosesCuda(bytes));
}

WeightScanInput scanInputArgs(const Napi::CallbackInfo& info, const std::string& fn, size_t first) {
  const ByteView data = byteViewArg(info, first, fn, "data");
  const size_t rows = sizeArg(info, first + 1, fn, "rows"), cols = sizeArg(info, first + 2, fn, "cols");
  const DType dtype = dtypeArg(info, first + 3, fn);
  const std::string axisName = stringArg(info, first + 4, fn, "axis");
  THROW_RANGE_IF(info.Env(), axisName != "rows" && axisName != "cols",
                 fn + ": argument 'axis' must be 'rows' or 'cols', got '" + axisName + "'");
  const WeightScanInput input{data.data, rows, cols, dtype, axisName == "rows" ? Axis::Rows : Axis::Cols};
  checkByteLength(info.Env(), data, input.bytes(), fn, "data");
  return input;
}

ActivationDiffInput diffInputArgs(const Napi::CallbackInfo& info, const std::string& fn, size_t first) {
  const ByteView a = byteViewArg(info, first, fn, "a"), b = byteViewArg(info, first + 1, fn, "b");
  const size_t pairs = sizeArg(info, first + 2, fn, "pairs"), tokens = sizeArg(info, first + 3, fn, "tokens");
  const size_t width = sizeArg(info, first + 4, fn, "width");
  const DType dtype = dtypeArg(info, first + 5, fn);
  const ActivationDiffInput input{a.data, b.data, pairs, tokens, width, dtype};
  checkByteLength(info.Env(), a, input.bytes() / 2, fn, "a");
  checkByteLength(info.Env(), b, input.bytes() / 2, fn, "b");
  return input;
}

ColumnMeansInput columnInputArgs(const Napi::CallbackInfo& info, const std::string& fn, size_t first) {
  const ByteView data = byteViewArg(info, first, fn, "data");
  const size_t rows = sizeArg(info, first + 1, fn, "rows"), cols = sizeArg(info, first + 2, fn, "cols");
  const ColumnMeansInput input{data.data, rows, cols, dtypeArg(info, first + 3, fn)};
  checkByteLength(info.Env(), data, input.bytes(), fn, "data");
  return input;
}

}  // namespace fairprune
