import { createHash } from 'node:crypto';
import { scanWeights, type Device, type MatrixView, type WeightStats } from '@fairprune/native-cuda';

/** Weight-magnitude importance of each MLP expansion neuron, from its gate_proj and up_proj weights
 *  (w_g, w_u: the neuron's row in HF [out, in] layout, its column in ONNX [in, out] layout):
 *  - maw: max|w_g| + max|w_u|                               (the article's text; fairprune's default)
 *  - ppm: (max w_g + |min w_g|) + (max w_u + |min w_u|)     (what the article's notebook ran)
 *  - vow: var(w_g) + var(w_u), unbiased (n − 1) like torch.var
 *  - pon: ‖w_g‖₁ · ‖w_u‖₁
 *  - l2:  ‖w_g‖₂ + ‖w_u‖₂
 *  (vow, pon and l2 follow optiPfair's IMPORTANCE_FUNCTIONS.) */
export type ImportanceMethod = 'maw' | 'ppm' | 'vow' | 'pon' | 'l2';
/** Every {@link ImportanceMethod}, for option validation and UIs. */
export const IMPORTANCE_METHODS: readonly ImportanceMethod[] = ['maw', 'ppm', 'vow', 'pon', 'l2'];

/** Combines the native scan statistics of the gate and up weights of one layer. */
export function importanceFromStats(method: ImportanceMethod, gate: WeightStats, up: WeightStats): Float32Array {
  const width = gate.max.length;
  if (up.max.length !== width) {
    throw new Error(`gate_proj has ${width} neurons but up_proj has ${up.max.length}`);
  }
  const variance = (s: WeightStats, i: number) => {
    const n = s.count;
    if (n < 2) return 0;
    const sum = s.sum[i]!;
    // Two float32 sums: clamp the tiny negative values cancellation can produce.
    return Math.max(0, (s.sumSquares[i]! - (sum * sum) / n) / (n - 1));
  };
  const out = new Float32Array(width);
  for (let i = 0; i < width; i++) {
    switch (method) {
      case 'maw':
        out[i] = gate.maxAbs[i]! + up.maxAbs[i]!;
        break;
      case 'ppm':
        out[i] = gate.max[i]! + Math.abs(gate.min[i]!) + up.max[i]! + Math.abs(up.min[i]!);
        break;
      case 'vow':
        out[i] = variance(gate, i) + variance(up, i);
        break;
      case 'pon':
        out[i] = gate.sumAbs[i]! * up.sumAbs[i]!;
        break;
      case 'l2':
        out[i] = Math.sqrt(gate.sumSquares[i]!) + Math.sqrt(up.sumSquares[i]!);
        break;
    }
  }
  return out;
}

/** A layer's gate and up weights as they lie in the file, and which axis holds the neurons. */
export interface LayerMlpWeights {
  /** gate_proj weight as raw bytes (an {@link OnnxWeights} / {@link SafetensorsWeights} matrix fits). */
  gate: MatrixView;
  /** up_proj weight, same layout as `gate`. */
  up: MatrixView;
  /** 'rows' for HF safetensors [out, in]; 'cols' for ONNX MatMul initializers [in, out]. */
  neuronAxis: 'rows' | 'cols';
}

/** Scans one layer's gate and up weights with the native kernels and returns the importance per neuron. */
export async function layerImportance(
  method: ImportanceMethod,
  weights: LayerMlpWeights,
  device?: Device,
): Promise<Float32Array> {
  const options = { axis: weights.neuronAxis, ...(device ? { device } : {}) };
  const [gate, up] = await Promise.all([scanWeights(weights.gate, options), scanWeights(weights.up, options)]);
  return importanceFromStats(method, gate, up);
}

/** Importance of every layer's neurons, read from the model's weights as they lie, and a hash of the bytes. */
export interface ModelImportance {
  /** The method the scores were computed with. */
  method: ImportanceMethod;
  /** Importance per neuron, one array of intermediateSize values per layer (higher = more important). */
  layers: Float32Array[];
  /** Identifies the weights a plan was made on: sha256 (hex) over every layer's gate_proj and up_proj shape, dtype and
   *  per-neuron scan statistics (max, min, max|w|, sum, sum of squares, sum |w|, as float32). Any realistic change of a
   *  weight changes its neuron's sums; hashing the statistics instead of the bytes saves a second pass over the
   *  weights (sha256 of the 2 GiB of a 1B model's gate/up weights took 4.5 s on the 2-core dev machine). */
  weightsHash: string;
}

/** Where gate/up weights come from: the model layer's OnnxWeights or SafetensorsWeights. */
export interface MlpWeightSource {
  /** Gate and up weights of one layer. */
  layerMlp(layer: number): LayerMlpWeights;
}

/** Result of {@link scanModelImportance}. */
export interface ModelWeightScan<M extends ImportanceMethod = ImportanceMethod> {
  /** Per method asked: importance per neuron, one array per layer. */
  importance: Map<M, Float32Array[]>;
  /** {@link ModelImportance.weightsHash} of the weights scanned. */
  weightsHash: string;
}

/**
 * Importance of every neuron of layers 0..numLayers−1 for each method asked, from one scan of their gate and up
 * weights with the native kernels (`options.device`, default `auto`: CUDA when available), one layer in memory at a
 * time; several methods cost one read of the weights, and the hash alone (no method) costs the same read.
 * @throws when a layer's gate and up widths differ, and the weight source's errors.
 */
export async function scanModelImportance<M extends ImportanceMethod>(
  weights: MlpWeightSource,
  numLayers: number,
  methods: readonly M[],
  options: { device?: Device; onProgress?: (message: string) => void } = {},
): Promise<ModelWeightScan<M>> {
  const hash = createHash('sha256');
  const importance = new Map<M, Float32Array[]>(methods.map((method) => [method, []]));
  for (let layer = 0; layer < numLayers; layer++) {
    options.onProgress?.(`importance (${methods.join(', ') || 'weights hash'}): layer ${layer + 1} of ${numLayers}`);
    const mlp = weights.layerMlp(layer);
    const scanOptions = { axis: mlp.neuronAxis, ...(options.device ? { device: options.device } : {}) };
    const [gate, up] = await Promise.all([scanWeights(mlp.gate, scanOptions), scanWeights(mlp.up, scanOptions)]);
    for (const [matrix, stats] of [[mlp.gate, gate], [mlp.up, up]] as const) {
      hash.update(`${layer}:${matrix.rows}x${matrix.cols}:${matrix.dtype}:${mlp.neuronAxis};`);
      for (const v of [stats.max, stats.min, stats.maxAbs, stats.sum, stats.sumSquares, stats.sumAbs]) {
        hash.update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      }
    }
    for (const [method, layers] of importance) layers.push(importanceFromStats(method, gate, up));
  }
  return { importance, weightsHash: hash.digest('hex') };
}

/**
 * Importance of every neuron of layers 0..numLayers−1 by one method, and the weights hash ({@link scanModelImportance}).
 * @throws when a layer's gate and up widths differ, and the weight source's errors.
 */
export async function modelImportance(
  weights: MlpWeightSource,
  numLayers: number,
  method: ImportanceMethod,
  options: { device?: Device; onProgress?: (message: string) => void } = {},
): Promise<ModelImportance> {
  const { importance, weightsHash } = await scanModelImportance(weights, numLayers, [method], options);
  return { method, layers: importance.get(method)!, weightsHash };
}
