import { activationDiff, scanWeights, type Device, type MatrixView } from '@fairprune/native-cuda';
import { activationKey } from './metrics.js';
import type { BiasEstimator } from './pairs.js';

/** One captured activation of one prompt: row-major float32 [tokens, width] (batch dimension dropped). */
export interface ActivationTensor {
  data: Float32Array;
  shape: readonly number[];
}

/** Captured activations of one prompt, keyed like optiPfair (`gate_proj_layer_0`, ...). */
export type ActivationSet = ReadonlyMap<string, ActivationTensor>;

/** What one prompt pair contributes: optiPfair's d for each metric key, and the per-layer neuron bias vector. */
export interface PairComparison {
  /** d(l,h) = mean_{t,j}|A − B| per key; null when the sides differ in length (the metric compares t with t). */
  differences: Record<string, number> | null;
  /** Per-layer neuron bias of this pair under the estimator (index = layer). */
  neuronBias: Float32Array[];
}

export interface ComparePairOptions {
  /** Keys whose d enters the metric (e.g. the six hook types × layers). */
  metricKeys: readonly string[];
  numLayers: number;
  estimator: BiasEstimator;
  device?: Device;
}

/** The captured keys each estimator reads, per layer. */
export function neuronKeys(estimator: BiasEstimator, layer: number): string[] {
  return estimator === 'glu'
    ? [activationKey('glu_product', layer)]
    : [activationKey('gate_proj', layer), activationKey('up_proj', layer)];
}

function matrix(tensor: ActivationTensor, key: string, side: string): MatrixView {
  const [rows, cols] = tensor.shape.length === 3 && tensor.shape[0] === 1 ? tensor.shape.slice(1) : tensor.shape;
  if (tensor.shape.length < 2 || tensor.shape.length > 3 || rows === undefined || cols === undefined || rows * cols !== tensor.data.length) {
    throw new Error(`Activation ${key} of side ${side} has shape [${tensor.shape.join(', ')}] and ${tensor.data.length} values; expected [tokens, width]`);
  }
  return { data: tensor.data, rows, cols, dtype: 'f32' };
}

function get(set: ActivationSet, key: string, side: string): ActivationTensor {
  const tensor = set.get(key);
  if (!tensor) throw new Error(`Activation ${key} was not captured for side ${side} (captured: ${[...set.keys()].join(', ')})`);
  return tensor;
}

/** Per-neuron mean over tokens, through the native column scan (works for any token count). */
async function tokenMean(view: MatrixView, device: Device | undefined): Promise<Float32Array> {
  const stats = await scanWeights(view, { axis: 'cols', ...(device ? { device } : {}) });
  return stats.sum.map((s) => s / view.rows);
}

/** Runs the native difference kernels over one pair's captured activations. */
export async function comparePair(a: ActivationSet, b: ActivationSet, options: ComparePairOptions): Promise<PairComparison> {
  const device = options.device ? { device: options.device } : {};
  const sameLength = (key: string) => get(a, key, 'a').shape.at(-2) === get(b, key, 'b').shape.at(-2);
  const firstKey = options.metricKeys[0] ?? neuronKeys(options.estimator, 0)[0]!;
  const equal = sameLength(firstKey);
  if (!equal && options.estimator !== 'pooled') {
    throw new Error(`comparePair: the ${options.estimator} estimator needs equal token counts (pairs are checked before capture)`);
  }

  // Keys the metric and the estimator both read are diffed once.
  const diffs = new Map<string, Awaited<ReturnType<typeof activationDiff>>>();
  const diff = async (key: string) => {
    let result = diffs.get(key);
    if (!result) {
      result = await activationDiff(matrix(get(a, key, 'a'), key, 'a'), matrix(get(b, key, 'b'), key, 'b'), device);
      diffs.set(key, result);
    }
    return result;
  };

  let differences: Record<string, number> | null = null;
  if (equal) {
    differences = {};
    for (const key of options.metricKeys) differences[key] = (await diff(key)).meanAbs;
  }

  const neuronBias: Float32Array[] = [];
  for (let layer = 0; layer < options.numLayers; layer++) {
    let total: Float32Array | undefined;
    for (const key of neuronKeys(options.estimator, layer)) {
      let vector: Float32Array;
      if (options.estimator === 'pooled' && !equal) {
        const meanA = await tokenMean(matrix(get(a, key, 'a'), key, 'a'), options.device);
        const meanB = await tokenMean(matrix(get(b, key, 'b'), key, 'b'), options.device);
        vector = meanA.map((v, i) => Math.abs(v - meanB[i]!));
      } else {
        const result = await diff(key);
        vector = options.estimator === 'pooled' ? result.pooled : result.positionwise;
      }
      if (!total) total = Float32Array.from(vector);
      else for (let i = 0; i < total.length; i++) total[i] = total[i]! + vector[i]!;
    }
    neuronBias.push(total!);
  }
  return { differences, neuronBias };
}
