// Public API of @fairprune/native-cuda: validates arguments, then runs the native kernels (CUDA or threaded CPU)
// or, when the addon is missing, the TS reference (saying so once on stderr, with the fix).
import { loadNativeAddon, type NativeAddon, type NativeDiffAccumulator } from './binding.js';
import { ReferenceDiffAccumulator } from './reference/diffAccumulator.js';
import * as referenceKernels from './reference/index.js';
import type {
  ActivationDiff, BackendInfo, DiffAccumulatorResult, DiffStatistic, Device, MatrixView, ScanOptions, TensorView3,
  WeightStats,
} from './types.js';
import { checkAxis, checkDevice, checkMatrix, checkSameShape, checkTensor3, invalidArgument } from './validate.js';

export type {
  ActivationDiff, Axis, BackendInfo, DType, DiffAccumulatorResult, DiffStatistic, Device, ElementData, MatrixView,
  ScanOptions, TensorView3, WeightStats,
} from './types.js';

/** The pure-TS references, exported for tests and used as the fallback. */
export const reference = referenceKernels;

const buildCommand = 'npx nx run @fairprune/native-cuda:build-native';
const load = loadNativeAddon();
const native: NativeAddon | undefined = load.addon;
let fallbackAnnounced = false;

function fallbackReason(): string {
  return load.addon ? '' : `native addon not loaded (${load.error}); build it with: ${buildCommand}`;
}

/** The native addon, or undefined after announcing (once, on stderr) that the TS reference runs instead. */
function nativeOrAnnounce(fn: string, device: Device): NativeAddon | undefined {
  if (native) return native;
  if (device === 'cuda') throw new Error(`${fn}: device 'cuda' needs the native addon: ${fallbackReason()}`);
  if (!fallbackAnnounced) {
    fallbackAnnounced = true;
    process.stderr.write(`@fairprune/native-cuda: using the slow TypeScript reference: ${fallbackReason()}\n`);
  }
  return undefined;
}

export function backendInfo(): BackendInfo {
  if (!native) {
    const reason = fallbackReason();
    return {
      backend: 'reference', reason, threads: 1, addonPath: load.path,
      cuda: { compiled: false, available: false, deviceCount: 0, reason },
    };
  }
  const info = native.backendInfo();
  return { backend: 'native', cuda: info.cuda, threads: info.threads, addonPath: load.path,
    ...(info.autoPolicy ? { autoPolicy: info.autoPolicy } : {}) };
}

/** Per-neuron max, min, max|w|, sum, sum of squares and sum |w| in one pass (sums in double, rounded to float).
 *  NaN in a neuron makes all six of its statistics NaN; ±Inf propagate by IEEE arithmetic. */
export async function scanWeights(matrix: MatrixView, options: ScanOptions): Promise<WeightStats> {
  const fn = 'scanWeights';
  checkMatrix(fn, 'matrix', matrix);
  if (typeof options !== 'object' || options === null) throw invalidArgument(fn, 'options', "{ axis: 'rows' | 'cols' }", options);
  checkAxis(fn, 'options.axis', options.axis);
  const device = options.device ?? 'auto';
  checkDevice(fn, 'options.device', device);
  const count = options.axis === 'rows' ? matrix.cols : matrix.rows;
  const addon = nativeOrAnnounce(fn, device);
  if (!addon) return referenceKernels.scanWeights(matrix, options.axis);
  const { max, min, maxAbs, sum, sumSquares, sumAbs } = await addon.scanWeights(
    matrix.data, matrix.rows, matrix.cols, matrix.dtype, options.axis, device);
  return { max, min, maxAbs, sum, sumSquares, sumAbs, count };
}

/** Activation difference of two [tokens, width] matrices (rows = tokens, cols = width) of one shape and dtype.
 *  NaN/Inf propagate into the results (Inf − Inf = NaN). */
export async function activationDiff(a: MatrixView, b: MatrixView, options: { device?: Device } = {}): Promise<ActivationDiff> {
  const fn = 'activationDiff';
  checkMatrix(fn, 'a', a);
  checkMatrix(fn, 'b', b);
  checkSameShape(fn, { ...a }, { ...b }, ['rows', 'cols']);
  const results = await activationDiffBatched(
    { data: a.data, pairs: 1, tokens: a.rows, width: a.cols, dtype: a.dtype },
    { data: b.data, pairs: 1, tokens: b.rows, width: b.cols, dtype: b.dtype }, options);
  return results[0]!;
}

/** Batched activation difference: one result per pair of [pairs, tokens, width] tensors. The returned
 *  positionwise/pooled arrays of all pairs are views into one buffer each. */
export async function activationDiffBatched(a: TensorView3, b: TensorView3, options: { device?: Device } = {}): Promise<ActivationDiff[]> {
  const fn = 'activationDiffBatched';
  checkTensor3(fn, 'a', a);
  checkTensor3(fn, 'b', b);
  checkSameShape(fn, { ...a }, { ...b }, ['pairs', 'tokens', 'width']);
  const device = options.device ?? 'auto';
  checkDevice(fn, 'options.device', device);
  const addon = nativeOrAnnounce(fn, device);
  if (!addon) return referenceKernels.activationDiffBatched(a, b);
  const out = await addon.activationDiff(a.data, b.data, a.pairs, a.tokens, a.width, a.dtype, device);
  const results: ActivationDiff[] = [];
  for (let p = 0; p < a.pairs; p++) {
    results.push({
      positionwise: out.positionwise.subarray(p * a.width, (p + 1) * a.width),
      pooled: out.pooled.subarray(p * a.width, (p + 1) * a.width),
      meanAbs: out.meanAbs[p]!,
    });
  }
  return results;
}

/** Running per-neuron mean, population variance (Welford) and max of one per-pair statistic vector
 *  ('positionwise' by default, or 'pooled'); on the GPU the state stays on the device between calls. Calls are
 *  queued, so add() may be called without awaiting the previous one. A NaN statistic makes that neuron NaN. */
export class DiffAccumulator {
  readonly width: number;
  readonly statistic: DiffStatistic;
  private readonly native: NativeDiffAccumulator | undefined;
  private readonly fallback: ReferenceDiffAccumulator | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  constructor(width: number, options: { statistic?: DiffStatistic; device?: Device } = {}) {
    const fn = 'DiffAccumulator';
    if (typeof width !== 'number' || !Number.isSafeInteger(width) || width < 1) {
      throw invalidArgument(fn, 'width', 'a positive integer', width, 'range');
    }
    const statistic = options.statistic ?? 'positionwise';
    if (statistic !== 'positionwise' && statistic !== 'pooled') {
      throw invalidArgument(fn, 'options.statistic', "'positionwise' | 'pooled'", statistic, 'range');
    }
    const device = options.device ?? 'auto';
    checkDevice(fn, 'options.device', device);
    this.width = width;
    this.statistic = statistic;
    const addon = nativeOrAnnounce(fn, device);
    this.native = addon ? new addon.DiffAccumulator(width, statistic, device) : undefined;
    this.fallback = addon ? undefined : new ReferenceDiffAccumulator(width, statistic);
  }

  /** Adds one pair of [tokens, width] matrices. */
  add(a: MatrixView, b: MatrixView): Promise<void> {
    const fn = 'DiffAccumulator.add';
    checkMatrix(fn, 'a', a);
    checkMatrix(fn, 'b', b);
    checkSameShape(fn, { ...a }, { ...b }, ['rows', 'cols']);
    return this.addBatched({ data: a.data, pairs: 1, tokens: a.rows, width: a.cols, dtype: a.dtype },
      { data: b.data, pairs: 1, tokens: b.rows, width: b.cols, dtype: b.dtype }, fn);
  }

  /** Adds many pairs, in order (bit-identical to adding them one by one). */
  addBatched(a: TensorView3, b: TensorView3, fn = 'DiffAccumulator.addBatched'): Promise<void> {
    this.checkLive(fn);
    checkTensor3(fn, 'a', a);
    checkTensor3(fn, 'b', b);
    checkSameShape(fn, { ...a }, { ...b }, ['pairs', 'tokens', 'width']);
    if (a.width !== this.width) throw invalidArgument(fn, 'a.width', `${this.width} (the accumulator's width)`, a.width, 'range');
    return this.enqueue(async () => {
      if (this.native) await this.native.add(a.data, b.data, a.pairs, a.tokens, a.width, a.dtype);
      else this.fallback!.addBatched(a, b);
    });
  }

  /** count, mean, population variance (M2 / count) and max per neuron, after every queued add. */
  result(): Promise<DiffAccumulatorResult> {
    this.checkLive('DiffAccumulator.result');
    return this.enqueue(async () => (this.native ? this.native.result() : this.fallback!.result()));
  }

  /** Frees the native/device state once queued calls finish; the accumulator cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    void this.queue.finally(() => this.native?.dispose());
  }

  private checkLive(fn: string): void {
    if (this.disposed) throw new Error(`${fn}: the accumulator is disposed`);
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
