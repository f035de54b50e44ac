import { accumulateColumns } from '@fairprune/native-cuda';
import type { BiasEstimator } from './pairs.js';

/** How per-pair neuron bias vectors are combined across pairs. */
export type PairAggregation = 'mean' | 'max';
/** Every {@link PairAggregation}, for option validation and UIs. */
export const PAIR_AGGREGATIONS: readonly PairAggregation[] = ['mean', 'max'];

/**
 * Per-neuron bias of every MLP expansion neuron, one Float32Array per decoder layer (index = layer).
 * - positionwise: mean_t |G_a − G_b| + mean_t |U_a − U_b| (gate_proj / up_proj outputs, pre-activation)
 * - pooled:       |mean_t G_a − mean_t G_b| + |mean_t U_a − mean_t U_b| (sides may differ in length)
 * - glu:          mean_t |H_a − H_b| with H = act(gate)·up, the down_proj input
 * The per-pair vectors are then averaged (`mean`) or maxed (`max`) over the pairs.
 */
export interface NeuronBiasScores {
  /** Estimator the vectors were computed with. */
  estimator: BiasEstimator;
  /** How they were combined over pairs. */
  aggregation: PairAggregation;
  /** Pairs combined. */
  pairs: number;
  /** Bias per neuron, one array of intermediateSize values per decoder layer. */
  layers: Float32Array[];
}

/** Accumulates per-pair vectors natively; sums in float64 so the mean over many pairs does not drift. */
export class NeuronBiasAggregator {
  private readonly totals: Float64Array[] = [];
  private count = 0;

  constructor(
    readonly estimator: BiasEstimator,
    readonly aggregation: PairAggregation,
  ) {}

  /**
   * Adds `pairs` pairs. Per layer, `terms` are the estimator's per-key statistics as [pairs, width] matrices (e.g.
   * gate and up); a pair's neuron bias is their sum. Same layer count and widths for every call.
   */
  addPairs(perLayer: readonly (readonly Float32Array[])[], pairs: number): void {
    if (this.count === 0) {
      for (const terms of perLayer) {
        this.totals.push(new Float64Array(terms[0]!.length / pairs).fill(this.aggregation === 'max' ? -Infinity : 0));
      }
    } else if (perLayer.length !== this.totals.length) {
      throw new Error(`NeuronBiasAggregator: pairs have ${perLayer.length} layers, earlier pairs had ${this.totals.length}`);
    }
    perLayer.forEach((terms, layer) => {
      const total = this.totals[layer]!;
      const bad = terms.find((t) => t.length !== pairs * total.length);
      if (bad) {
        throw new Error(`NeuronBiasAggregator: layer ${layer} has ${bad.length} values for ${pairs} pairs, expected width ${total.length} as earlier pairs`);
      }
      accumulateColumns(total, terms, { rows: pairs, cols: total.length }, this.aggregation === 'max' ? 'max' : 'sum');
    });
    this.count += pairs;
  }

  result(): NeuronBiasScores {
    if (this.count === 0) throw new Error('No pair contributed to the neuron bias scores');
    const scale = this.aggregation === 'mean' ? 1 / this.count : 1;
    return {
      estimator: this.estimator,
      aggregation: this.aggregation,
      pairs: this.count,
      layers: this.totals.map((total) => Float32Array.from(total, (v) => v * scale)),
    };
  }
}
