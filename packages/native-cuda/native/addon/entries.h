// The export table, by concern: kernel entries (kernels.cc) and benchmark entries (bench.cc).
#pragma once
#include <napi.h>

namespace fairprune {

// scanWeights, activationDiff, columnMeans, accumulateColumns, gatherColumns, backendInfo.
void exportKernels(Napi::Env env, Napi::Object exports);
// sumBytes, cudaBenchmark.
void exportBenchmarks(Napi::Env env, Napi::Object exports);

}  // namespace fairprune
