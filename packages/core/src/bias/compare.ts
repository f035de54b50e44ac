import { activationDiffBatched, columnMeans, type ActivationDiffBatch, type Device, type MatrixView, type TensorView3 } from '@fairprune/native-cuda';
import { activationKey } from './metrics.js';
import type { NeuronBiasAggregator } from './neuron-scores.js';
import type { BiasEstimator } from './pairs.js';

/** One captured activation of one prompt: row-major float32 [tokens, width] (batch dimension dropped). */
export interface ActivationTensor {
  data: Float32Array;
  shape: readonly number[];
}

/** Captured activations of one prompt, keyed like optiPfair (`gate_proj_layer_0`, ...). */
export type ActivationSet = ReadonlyMap<string, ActivationTensor>;

/** One prompt pair's captured activations and the keys whose d it contributes to the metric. */
export interface PairActivations {
  a: ActivationSet;
  b: ActivationSet;
  /** Keys whose d enters the metric (e.g. the six hook types × layers); empty for pairs outside the metric. */
  metricKeys: readonly string[];
}

export interface ComparePairsOptions {
  /** Layers whose neuron bias goes into the aggregator (0: metric only). */
  numLayers: number;
  estimator: BiasEstimator;
  /** Where the difference kernel runs. */
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

/**
 * Compares prompt pairs with the native kernels. Pairs whose sides share one token count are reduced together: one
 * batched difference call per captured key. Each pair's neuron bias (per layer, the sum over the estimator's keys)
 * is folded into `aggregator` natively; pooled pairs of unequal lengths use per-side token means.
 * @returns per pair, d(l,h) = mean_{t,j}|A − B| for each of its metric keys, or null when its sides differ in length
 *   (the metric compares position t with t).
 * @throws when a key was not captured or has the wrong shape, and for unequal lengths under a position-wise estimator.
 */
export async function comparePairs(
  pairs: readonly PairActivations[],
  options: ComparePairsOptions,
  aggregator?: NeuronBiasAggregator,
): Promise<(Record<string, number> | null)[]> {
  const layers = Array.from({ length: aggregator ? options.numLayers : 0 }, (_, layer) => neuronKeys(options.estimator, layer));
  const results: (Record<string, number> | null)[] = new Array(pairs.length).fill(null);
  const byLength = new Map<number, number[]>();
  pairs.forEach((pair, index) => {
    const firstKey = pair.metricKeys[0] ?? neuronKeys(options.estimator, 0)[0]!;
    const tokens = get(pair.a, firstKey, 'a').shape.at(-2)!;
    if (tokens !== get(pair.b, firstKey, 'b').shape.at(-2)) {
      if (options.estimator !== 'pooled') {
        throw new Error(`comparePairs: the ${options.estimator} estimator needs equal token counts (pairs are checked before capture)`);
      }
      if (aggregator) aggregator.addPairs(layers.map((keys) => keys.map((key) => pooledOfUnequal(pair, key))), 1);
    } else {
      byLength.set(tokens, [...(byLength.get(tokens) ?? []), index]);
    }
  });

  for (const [tokens, indices] of byLength) {
    const group = indices.map((i) => pairs[i]!);
    const keys = new Set([...group.flatMap((p) => p.metricKeys), ...layers.flat()]);
    const diffs = new Map<string, ActivationDiffBatch>();
    for (const key of keys) {
      const side = (name: 'a' | 'b') => stacked(group.map((p) => matrix(get(p[name], key, name), key, name)), tokens, key, name);
      diffs.set(key, await activationDiffBatched(side('a'), side('b'), options.device ? { device: options.device } : {}));
    }
    group.forEach((pair, k) => {
      results[indices[k]!] = Object.fromEntries(pair.metricKeys.map((key) => [key, diffs.get(key)!.meanAbs[k]!]));
    });
    const statistic = options.estimator === 'pooled' ? 'pooled' : 'positionwise';
    aggregator?.addPairs(layers.map((keys) => keys.map((key) => diffs.get(key)![statistic])), group.length);
  }
  return results;
}

/** [pairs, tokens, width] of one side: the prompt's own buffer for a single pair, else the pairs' matrices copied
 *  one after another (a few MB at most). */
function stacked(matrices: MatrixView[], tokens: number, key: string, side: string): TensorView3 {
  const width = matrices[0]!.cols;
  const odd = matrices.find((m) => m.cols !== width || m.rows !== tokens);
  if (odd) {
    throw new Error(`Activation ${key} of side ${side} is [${odd.rows}, ${odd.cols}] in one pair; expected [${tokens}, ${width}] like the others of its length`);
  }
  if (matrices.length === 1) return { data: matrices[0]!.data, pairs: 1, tokens, width, dtype: 'f32' };
  const data = new Float32Array(matrices.length * tokens * width);
  matrices.forEach((m, p) => data.set(m.data as Float32Array, p * tokens * width));
  return { data, pairs: matrices.length, tokens, width, dtype: 'f32' };
}

/** |mean_t A − mean_t B| of one key for sides of different lengths. */
function pooledOfUnequal(pair: PairActivations, key: string): Float32Array {
  const meanA = columnMeans(matrix(get(pair.a, key, 'a'), key, 'a'));
  const meanB = columnMeans(matrix(get(pair.b, key, 'b'), key, 'b'));
  return meanA.map((v, i) => Math.abs(v - meanB[i]!));
}
