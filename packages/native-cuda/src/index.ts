// Public API of @fairprune/native-cuda: validates arguments, then runs the native kernels (CUDA or threaded CPU)
// or, when the addon is missing, the TS reference (saying so once on stderr, with the fix).
import { loadNativeAddon, type NativeAddon } from './binding.js';
import * as referenceKernels from './reference/index.js';
import type {
  ActivationDiff, ActivationDiffBatch, BackendInfo, ColumnOp, Device, ElementData, MatrixView, ScanOptions, TensorView3, WeightStats,
} from './types.js';
import {
  checkAxis, checkColumnOp, checkDevice, checkKeptColumns, checkMatrix, checkOutput, checkSameShape, checkTensor3, checkTerms, invalidArgument,
} from './validate.js';

export { DEVICES } from './validate.js';

export type {
  ActivationDiff, ActivationDiffBatch, Axis, BackendInfo, ColumnOp, DType, Device, ElementData, MatrixView, ScanOptions,
  TensorView3, WeightStats,
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
  const batch = await runDiff(fn,
    { data: a.data, pairs: 1, tokens: a.rows, width: a.cols, dtype: a.dtype },
    { data: b.data, pairs: 1, tokens: b.rows, width: b.cols, dtype: b.dtype }, options);
  return { positionwise: batch.positionwise, pooled: batch.pooled, meanAbs: batch.meanAbs[0]! };
}

/** Activation differences of many pairs of one token count in one call: a and b are [pairs, tokens, width]; the
 *  results are [pairs, width] (pair-major) and one meanAbs per pair, each pair's exactly as if it ran alone. */
export async function activationDiffBatched(a: TensorView3, b: TensorView3, options: { device?: Device } = {}): Promise<ActivationDiffBatch> {
  const fn = 'activationDiffBatched';
  checkTensor3(fn, 'a', a);
  checkTensor3(fn, 'b', b);
  checkSameShape(fn, { ...a }, { ...b }, ['pairs', 'tokens', 'width']);
  return runDiff(fn, a, b, options);
}

/** The difference kernel on inputs the caller has checked (each argument is validated once, by the public entry). */
async function runDiff(fn: string, a: TensorView3, b: TensorView3, options: { device?: Device }): Promise<ActivationDiffBatch> {
  const device = options.device ?? 'auto';
  checkDevice(fn, 'options.device', device);
  const addon = nativeOrAnnounce(fn, device);
  if (!addon) return referenceKernels.activationDiffBatched(a, b);
  const { positionwise, pooled, meanAbs } = await addon.activationDiff(a.data, b.data, a.pairs, a.tokens, a.width, a.dtype, device);
  return { positionwise, pooled, meanAbs };
}

/** Per-column mean over the rows of a matrix (the token means of [tokens, width] activations): summed in double in
 *  row order, rounded to float once; NaN/Inf propagate. Synchronous and on the CPU: a few hundred KB of activations
 *  take microseconds, less than a worker round trip or a device transfer. */
export function columnMeans(matrix: MatrixView): Float32Array {
  const fn = 'columnMeans';
  checkMatrix(fn, 'matrix', matrix);
  const addon = nativeOrAnnounce(fn, 'cpu');
  if (!addon) return referenceKernels.columnMeans(matrix);
  return addon.columnMeans(matrix.data, matrix.rows, matrix.cols, matrix.dtype);
}

/** Folds per-pair vectors into running per-neuron totals, in place: `terms` are float32 [rows, cols] matrices of one
 *  shape (e.g. the gate and up statistics of `rows` pairs); row by row, v = Σ_k terms[k] (float adds in term order),
 *  then totals += v ('sum', in double) or totals = max(totals, v) ('max'; a NaN v never replaces a total).
 *  Synchronous and on the CPU, like {@link columnMeans}. */
export function accumulateColumns(totals: Float64Array, terms: readonly Float32Array[], shape: { rows: number; cols: number }, op: ColumnOp): void {
  const fn = 'accumulateColumns';
  checkTerms(fn, totals, terms, shape);
  checkColumnOp(fn, 'op', op);
  const addon = nativeOrAnnounce(fn, 'cpu');
  if (!addon) referenceKernels.accumulateColumns(totals, terms, shape.rows, shape.cols, op);
  else addon.accumulateColumns(totals, terms, shape.rows, shape.cols, op);
}

/** Copies the columns `kept` (strictly increasing indices) of every row of `matrix` into `out` [rows, kept.length],
 *  element bytes unchanged: the gate/up weights of an ONNX [in, out] MLP without the removed neurons. Synchronous and
 *  on the CPU (threaded): a copy is cheaper than a device round trip. */
export function gatherColumns(matrix: MatrixView, kept: Int32Array, out: ElementData): void {
  const fn = 'gatherColumns';
  checkMatrix(fn, 'matrix', matrix);
  checkKeptColumns(fn, 'kept', kept, matrix.cols);
  checkOutput(fn, 'out', out, matrix.dtype, matrix.rows * kept.length, matrix.data);
  const addon = nativeOrAnnounce(fn, 'cpu');
  if (!addon) referenceKernels.gatherColumns(matrix, kept, out);
  else addon.gatherColumns(matrix.data, matrix.rows, matrix.cols, matrix.dtype, kept, out);
}
