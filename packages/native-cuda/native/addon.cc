// The N-API module of fairprune_native: the export table, by concern. Argument parsing (addon/args.h), the promise
// worker (addon/promise_worker.h), kernel entries (addon/kernels.cc), benchmark entries (addon/bench.cc) and the
// CUDA-off stubs (addon/cuda_off.cc) live beside it.
#include <napi.h>

#include "addon/entries.h"

static Napi::Object InitFairpruneNative(Napi::Env env, Napi::Object exports) {
  fairprune::exportKernels(env, exports);
  fairprune::exportBenchmarks(env, exports);
  return exports;
}
NODE_API_MODULE(fairprune_native, InitFairpruneNative)
