import { describe, expect, test } from 'vitest';
import { comparePair } from '../../src/bias/compare.js';
import { NeuronBiasAggregator } from '../../src/bias/neuron-scores.js';
import type { BiasEstimator } from '../../src/bias/pairs.js';
import { readRefs, refActivations, type RefTensor } from '@fairprune/fixtures';

const arch = 'llama';
const refs = readRefs(arch);
const numLayers = refs.maw_importance.length;
const sides = [0, 1].map((pair) => ({ a: refActivations(arch, refs, pair, 'a'), b: refActivations(arch, refs, pair, 'b') }));

/** Written out plainly from the definitions, in float64. */
function positionwise(a: RefTensor, b: RefTensor): number[] {
  const [tokens, width] = a.shape as [number, number];
  return Array.from({ length: width }, (_, i) => {
    let sum = 0;
    for (let t = 0; t < tokens; t++) sum += Math.abs(a.data[t * width + i]! - b.data[t * width + i]!);
    return sum / tokens;
  });
}
function pooled(a: RefTensor, b: RefTensor): number[] {
  const mean = (x: RefTensor) => {
    const [tokens, width] = x.shape as [number, number];
    return Array.from({ length: width }, (_, i) => {
      let sum = 0;
      for (let t = 0; t < tokens; t++) sum += x.data[t * width + i]!;
      return sum / tokens;
    });
  };
  const ma = mean(a);
  const mb = mean(b);
  return ma.map((v, i) => Math.abs(v - mb[i]!));
}
function independent(estimator: BiasEstimator, pair: number, layer: number): number[] {
  const { a, b } = sides[pair]!;
  const at = (set: Map<string, RefTensor>, type: string) => set.get(`${type}_layer_${layer}`)!;
  if (estimator === 'glu') return positionwise(at(a, 'glu_product'), at(b, 'glu_product'));
  const f = estimator === 'pooled' ? pooled : positionwise;
  const g = f(at(a, 'gate_proj'), at(b, 'gate_proj'));
  const u = f(at(a, 'up_proj'), at(b, 'up_proj'));
  return g.map((v, i) => v + u[i]!);
}

function expectClose(actual: Float32Array, expected: number[]): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  actual.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - expected[i]!) / Math.max(1e-6, Math.abs(expected[i]!)))));
  expect(worst).toBeLessThan(1e-5);
}

describe.each(['positionwise', 'pooled', 'glu'] as const)('neuron bias scores, %s estimator, llama pairs 0 and 1', (estimator) => {
  test.each(['mean', 'max'] as const)('%s over pairs equals the plain computation from the HF references', async (aggregation) => {
    const aggregator = new NeuronBiasAggregator(estimator, aggregation);
    for (const { a, b } of sides) {
      aggregator.add((await comparePair(a, b, { metricKeys: [], numLayers, estimator })).neuronBias);
    }
    const scores = aggregator.result();
    expect(scores.pairs).toBe(2);
    expect(scores.layers).toHaveLength(numLayers);
    for (let layer = 0; layer < numLayers; layer++) {
      const p0 = independent(estimator, 0, layer);
      const p1 = independent(estimator, 1, layer);
      const expected = p0.map((v, i) => (aggregation === 'mean' ? (v + p1[i]!) / 2 : Math.max(v, p1[i]!)));
      expectClose(scores.layers[layer]!, expected);
    }
  });
});

test('pooled accepts sides of different lengths; position-wise refuses them', async () => {
  // Pair 0's side a (16 tokens) against pair 1's side b (17 tokens).
  const a = sides[0]!.a;
  const b = sides[1]!.b;
  const pooledResult = await comparePair(a, b, { metricKeys: ['gate_proj_layer_0'], numLayers, estimator: 'pooled' });
  expect(pooledResult.differences).toBeNull();
  const g = pooled(a.get('gate_proj_layer_2')!, b.get('gate_proj_layer_2')!);
  const u = pooled(a.get('up_proj_layer_2')!, b.get('up_proj_layer_2')!);
  expectClose(pooledResult.neuronBias[2]!, g.map((v, i) => v + u[i]!));
  await expect(comparePair(a, b, { metricKeys: [], numLayers, estimator: 'positionwise' })).rejects.toThrow(/needs equal token counts/);
});
