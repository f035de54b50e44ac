// The one boundary to the native addon: loads the .node file and types everything it exports.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Axis, ColumnOp, DType, Device, ElementData } from './types.js';

/** What ran a call: 'auto' resolves to one of these inside the addon. */
export type ExecutedOn = 'cpu' | 'cuda';

export interface NativeWeightStats {
  max: Float32Array; min: Float32Array; maxAbs: Float32Array;
  sum: Float32Array; sumSquares: Float32Array; sumAbs: Float32Array;
  device: ExecutedOn;
}

export interface NativeActivationDiff {
  /** [pairs, width] */
  positionwise: Float32Array;
  /** [pairs, width] */
  pooled: Float32Array;
  /** [pairs] */
  meanAbs: Float64Array;
  device: ExecutedOn;
}

export interface NativeBackendInfo {
  cuda: { compiled: boolean; available: boolean; deviceCount: number; deviceName?: string; reason?: string };
  threads: number;
  autoPolicy?: { cudaHostInputGBps: number; cpuGBps: number };
}

export interface NativeAddon {
  scanWeights(data: ElementData, rows: number, cols: number, dtype: DType, axis: Axis, device: Device): Promise<NativeWeightStats>;
  activationDiff(a: ElementData, b: ElementData, pairs: number, tokens: number, width: number, dtype: DType,
    device: Device): Promise<NativeActivationDiff>;
  /** Synchronous, CPU: per-column means of [rows, cols]. */
  columnMeans(data: ElementData, rows: number, cols: number, dtype: DType): Float32Array;
  /** Synchronous, CPU: folds [rows, cols] float32 terms into `totals` in place. */
  accumulateColumns(totals: Float64Array, terms: readonly Float32Array[], rows: number, cols: number, op: ColumnOp): void;
  /** Synchronous, CPU: out[r, k] = data[r, kept[k]] over [rows, cols] elements of `dtype`'s size. */
  gatherColumns(data: ElementData, rows: number, cols: number, dtype: DType, kept: Int32Array, out: ElementData): void;
  backendInfo(): NativeBackendInfo;
  /** Plain multithreaded one-pass read of the bytes (a sum of 64-bit words): the benchmarks' bandwidth baseline. */
  sumBytes(data: ElementData): bigint;
  /** Device-resident timings for tools/gpu-check; throws when CUDA is unavailable. */
  cudaBenchmark(kind: 'copy', bytes: number, repeats: number): number;
  cudaBenchmark(kind: 'hostToDevice', bytes: number, repeats: number, pinned: boolean): number;
  cudaBenchmark(kind: 'scan', data: ElementData, rows: number, cols: number, dtype: DType, axis: Axis,
    repeats: number): Omit<NativeWeightStats, 'device'> & { ms: number };
  cudaBenchmark(kind: 'diff', a: ElementData, b: ElementData, pairs: number, tokens: number, width: number,
    dtype: DType, repeats: number): Omit<NativeActivationDiff, 'device'> & { ms: number };
}

export type AddonLoad =
  | { addon: NativeAddon; path: string }
  | { addon: undefined; path: string; error: string };

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Where build-native puts the auto build (CUDA when nvcc was found). */
export const defaultAddonPath = join(packageRoot, 'build', 'Release', 'fairprune_native.node');

/** Loads the addon from FAIRPRUNE_NATIVE_ADDON (a .node path, e.g. the CPU-only build-cpu/…) or the default build. */
export function loadNativeAddon(): AddonLoad {
  const configured = process.env['FAIRPRUNE_NATIVE_ADDON'];
  const path = configured ? resolve(configured) : defaultAddonPath;
  if (!existsSync(path)) return { addon: undefined, path, error: `${path} does not exist` };
  try {
    return { addon: createRequire(import.meta.url)(path) as NativeAddon, path };
  } catch (error) {
    return { addon: undefined, path, error: error instanceof Error ? error.message : String(error) };
  }
}
