/** Which neurons to prune: per-layer min-max normalisation, the prunability score, and the selection modes. */

import { invalidOption, requireOneOf } from '../pipeline/options.js';

/** `hybrid`: P = w·bias_n + (1 − w)·(1 − imp_n). `bias`: P = raw bias (the notebook's bias-only mode). */
export type ScoreMethod = 'hybrid' | 'bias';
/** Every {@link ScoreMethod}, for option validation and UIs. */
export const SCORE_METHODS: readonly ScoreMethod[] = ['hybrid', 'bias'];

export const NORMALISE_EPSILON = 1e-8;

/** (v − min)/(max − min + 1e-8); all zeros when max and min are close (torch.isclose defaults), as optiPfair does. */
export function minMaxNormalise(values: ArrayLike<number>): Float64Array {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const out = new Float64Array(values.length);
  if (values.length === 0 || Math.abs(max - min) <= 1e-8 + 1e-5 * Math.abs(min)) return out;
  const range = max - min + NORMALISE_EPSILON;
  for (let i = 0; i < values.length; i++) out[i] = (values[i]! - min) / range;
  return out;
}

/** Prunability of one layer's neurons: high = biased and/or unimportant. */
export function prunability(
  bias: ArrayLike<number>,
  importance: ArrayLike<number>,
  method: ScoreMethod,
  biasWeight: number,
): Float64Array {
  if (bias.length !== importance.length) {
    throw new Error(`bias has ${bias.length} neurons but importance has ${importance.length}`);
  }
  if (method === 'bias') return Float64Array.from(bias as ArrayLike<number>);
  const biasN = minMaxNormalise(bias);
  const importanceN = minMaxNormalise(importance);
  return biasN.map((b, i) => biasWeight * b + (1 - biasWeight) * (1 - importanceN[i]!));
}

/**
 * Options of {@link selectNeurons}. Give exactly one of `fraction`, `layerFractions` or `globalTopK`; every mode keeps
 * at least one neuron per layer.
 */
export interface SelectionOptions {
  /** How the prunability P is computed. */
  method: ScoreMethod;
  /** w in [0, 1]; ignored by `bias`. */
  biasWeight: number;
  /** Uniform fraction per layer (default mode): n = min(floor(p·N), N − 1). */
  fraction?: number;
  /** Per-layer fractions; layers not listed are not pruned. */
  layerFractions?: Readonly<Record<number, number>>;
  /** Prune the K highest prunability scores across all (selected) layers, at most N − 1 per layer. */
  globalTopK?: number;
  /** Only these layers are pruned (with `fraction` or `globalTopK`). */
  layers?: readonly number[];
  /** Round each layer's kept size down to a multiple of this (uniform or per-layer fractions). */
  divisor?: number;
}

/** The selection in one layer. */
export interface LayerSelection {
  /** Pruned neuron indices, ascending. */
  pruned: number[];
  /** Prunability per neuron (P). */
  scores: Float64Array;
  /** Neurons whose score lies within 1e-6 of the cut (the lowest pruned / highest kept score); empty when none. */
  nearCut: number[];
}

/** Ordering used everywhere: higher P first; equal P → lower neuron index first (stated so results are exact). */
function byPrunability(scores: Float64Array): number[] {
  return Array.from(scores.keys()).sort((x, y) => scores[y]! - scores[x]! || x - y);
}

function isFraction(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 && value < 1;
}

/** Checks selection options with messages naming the argument; runs before any model work. */
export function validateSelectionOptions(options: SelectionOptions, numLayers?: number): void {
  const { method, biasWeight } = options;
  requireOneOf('method', SCORE_METHODS, method);
  if (typeof biasWeight !== 'number' || !Number.isFinite(biasWeight) || biasWeight < 0 || biasWeight > 1) {
    throw invalidOption('biasWeight', 'a number in [0, 1]', biasWeight);
  }
  const modes = [options.fraction !== undefined, options.layerFractions !== undefined, options.globalTopK !== undefined];
  if (modes.filter(Boolean).length !== 1) {
    throw new Error('Give exactly one of a uniform fraction, per-layer fractions or a global top-K');
  }
  if (options.fraction !== undefined && !isFraction(options.fraction)) {
    throw invalidOption('fraction', 'a number strictly between 0 and 1', options.fraction);
  }
  if (options.layerFractions !== undefined) {
    const entries = Object.entries(options.layerFractions);
    if (entries.length === 0) throw new Error('Per-layer fractions are empty');
    for (const [layer, fraction] of entries) {
      if (!isFraction(fraction)) throw invalidOption(`layerFractions[${layer}]`, 'a number strictly between 0 and 1', fraction);
      checkLayerIndex(Number(layer), numLayers, 'per-layer fractions');
    }
    if (options.layers !== undefined) throw new Error('Per-layer fractions already choose the layers; do not also give a layer subset');
  }
  if (options.globalTopK !== undefined) {
    if (!Number.isInteger(options.globalTopK) || options.globalTopK < 1) {
      throw invalidOption('globalTopK', 'a positive integer', options.globalTopK);
    }
    if (options.divisor !== undefined) throw new Error('Rounding to a divisor applies to per-layer counts, not to a global top-K');
  }
  if (options.layers !== undefined) {
    if (options.layers.length === 0) throw new Error('The layer subset is empty');
    if (new Set(options.layers).size !== options.layers.length) throw new Error(`The layer subset repeats a layer: ${options.layers.join(', ')}`);
    for (const layer of options.layers) checkLayerIndex(layer, numLayers, 'the layer subset');
  }
  if (options.divisor !== undefined && (!Number.isInteger(options.divisor) || options.divisor < 1)) {
    throw invalidOption('divisor', 'a positive integer', options.divisor);
  }
}

function checkLayerIndex(layer: number, numLayers: number | undefined, where: string): void {
  if (!Number.isInteger(layer) || layer < 0 || (numLayers !== undefined && layer >= numLayers)) {
    throw new Error(`Layer ${layer} in ${where} is not a layer of this model${numLayers !== undefined ? ` (0..${numLayers - 1})` : ''}`);
  }
}

/** How many neurons of a layer of width N a fraction prunes, with the kept size optionally rounded down. */
export function pruneCount(width: number, fraction: number, divisor?: number): number {
  let count = Math.min(Math.floor(fraction * width), width - 1);
  if (divisor !== undefined) {
    const kept = Math.floor((width - count) / divisor) * divisor;
    if (kept < 1) throw new Error(`Rounding the kept size ${width - count} down to a multiple of ${divisor} leaves no neuron`);
    count = width - kept;
  }
  return count;
}

/**
 * Selects the neurons to prune from per-layer bias and importance (index = layer): the highest prunability P first,
 * ties broken by lower layer, then lower neuron index, so results are reproducible. Returns one entry per layer
 * (layers left alone have an empty `pruned`).
 * @throws on invalid options (naming the option), layer counts that differ, or a global top-K above what can go.
 */
export function selectNeurons(
  bias: readonly ArrayLike<number>[],
  importance: readonly ArrayLike<number>[],
  options: SelectionOptions,
): LayerSelection[] {
  validateSelectionOptions(options, bias.length);
  if (importance.length !== bias.length) throw new Error(`bias covers ${bias.length} layers, importance ${importance.length}`);
  const scores = bias.map((b, layer) => prunability(b, importance[layer]!, options.method, options.biasWeight));
  const chosen = new Set(options.layers ?? (options.layerFractions ? Object.keys(options.layerFractions).map(Number) : scores.keys()));

  const counts = scores.map((layerScores, layer) => {
    if (!chosen.has(layer)) return 0;
    const fraction = options.layerFractions ? options.layerFractions[layer]! : options.fraction;
    return fraction === undefined ? 0 : pruneCount(layerScores.length, fraction, options.divisor);
  });

  if (options.globalTopK !== undefined) {
    const candidates: { layer: number; index: number; score: number }[] = [];
    scores.forEach((layerScores, layer) => {
      if (chosen.has(layer)) layerScores.forEach((score, index) => candidates.push({ layer, index, score }));
    });
    candidates.sort((x, y) => y.score - x.score || x.layer - y.layer || x.index - y.index);
    const capacity = scores.reduce((sum, s, layer) => sum + (chosen.has(layer) ? s.length - 1 : 0), 0);
    if (options.globalTopK > capacity) {
      throw new Error(`Global top-K ${options.globalTopK} exceeds the ${capacity} neurons that can go (each layer keeps at least one)`);
    }
    const globalPruned: number[][] = scores.map(() => []);
    for (const c of candidates) {
      if (counts.reduce((a, b) => a + b, 0) === options.globalTopK) break;
      if (counts[c.layer]! >= scores[c.layer]!.length - 1) continue;
      counts[c.layer]!++;
      globalPruned[c.layer]!.push(c.index);
    }
    return scores.map((layerScores, layer) => withCut(layerScores, globalPruned[layer]!));
  }

  return scores.map((layerScores, layer) => withCut(layerScores, byPrunability(layerScores).slice(0, counts[layer]!)));
}

function withCut(scores: Float64Array, pruned: number[]): LayerSelection {
  const sorted = [...pruned].sort((x, y) => x - y);
  if (pruned.length === 0) return { pruned: sorted, scores, nearCut: [] };
  const prunedSet = new Set(pruned);
  let lowestPruned = Infinity;
  let highestKept = -Infinity;
  scores.forEach((s, i) => {
    if (prunedSet.has(i)) lowestPruned = Math.min(lowestPruned, s);
    else highestKept = Math.max(highestKept, s);
  });
  // Only a close call when a kept score comes within 1e-6 of a pruned one.
  const nearCut =
    lowestPruned - highestKept > 1e-6
      ? []
      : Array.from(scores.keys()).filter((i) => Math.abs(scores[i]! - lowestPruned) <= 1e-6 || Math.abs(scores[i]! - highestKept) <= 1e-6);
  return { pruned: sorted, scores, nearCut };
}
