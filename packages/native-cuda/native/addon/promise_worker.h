// The promise worker of the asynchronous entries: runs a kernel on the libuv pool and settles a promise.
#pragma once
#include <napi.h>

#include <functional>
#include <string>
#include <vector>

namespace fairprune {

// Runs `execute` on the libuv pool; resolve(env) builds the value on the JS thread; a C++ exception in execute
// rejects with an Error carrying the function name and the exception's message. `keepAlive` holds the inputs.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::string fn, const std::vector<Napi::Value>& keepAlive, std::function<void()> execute,
                std::function<Napi::Value(Napi::Env)> resolve)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        fn_(std::move(fn)),
        execute_(std::move(execute)),
        resolve_(std::move(resolve)) {
    for (const auto& value : keepAlive) keepAlive_.push_back(Napi::Persistent(value.As<Napi::Object>()));
  }

  // Queues the worker (which deletes itself when done) and returns its promise.
  static Napi::Value queue(PromiseWorker* worker) {
    const Napi::Promise promise = worker->deferred_.Promise();
    worker->Queue();
    return promise;
  }

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

// Float32Arrays allocated on the JS thread and filled by a worker; references keep them alive until resolve.
struct OutputArrays {
  std::vector<Napi::Reference<Napi::Float32Array>> arrays;
  OutputArrays(Napi::Env env, size_t count, size_t length) {
    for (size_t i = 0; i < count; ++i) arrays.push_back(Napi::Persistent(Napi::Float32Array::New(env, length)));
  }
  float* data(size_t i) { return arrays[i].Value().Data(); }
  Napi::Float32Array value(size_t i) { return arrays[i].Value(); }
};

}  // namespace fairprune
