import { describe, expect, test } from 'vitest';
import { comparePairs } from '../../src/bias/compare.js';
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
    await comparePairs(sides.map((s) => ({ ...s, metricKeys: [] })), { numLayers, estimator }, aggregator);
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

  test.each(['mean', 'max'] as const)('%s: pairs of one length reduced in one batched call equal the pairs one call each', async (aggregation) => {
    // Pair 0 (16 tokens) twice, the second with its sides swapped, and pair 1 (17 tokens): two length groups.
    const pairs = [sides[0]!, { a: sides[0]!.b, b: sides[0]!.a }, sides[1]!].map((s) => ({ ...s, metricKeys: ['mlp_output_layer_1', 'down_proj_layer_3'] }));
    const batched = new NeuronBiasAggregator(estimator, aggregation);
    const batchedDifferences = await comparePairs(pairs, { numLayers, estimator }, batched);
    const single = new NeuronBiasAggregator(estimator, aggregation);
    const singleDifferences = [];
    for (const pair of pairs) singleDifferences.push(...(await comparePairs([pair], { numLayers, estimator }, single)));
    expect(batchedDifferences).toEqual(singleDifferences);
    expect(batched.result()).toEqual(single.result());
    expect(batched.result().pairs).toBe(3);
    // |A − B| is symmetric: the swapped pair has the same d.
    expect(batchedDifferences[1]).toEqual(batchedDifferences[0]);
  });
});

test('pooled accepts sides of different lengths; position-wise refuses them', async () => {
  // Pair 0's side a (16 tokens) against pair 1's side b (17 tokens).
  const a = sides[0]!.a;
  const b = sides[1]!.b;
  const aggregator = new NeuronBiasAggregator('pooled', 'mean');
  const [differences] = await comparePairs([{ a, b, metricKeys: ['gate_proj_layer_0'] }], { numLayers, estimator: 'pooled' }, aggregator);
  expect(differences).toBeNull();
  const g = pooled(a.get('gate_proj_layer_2')!, b.get('gate_proj_layer_2')!);
  const u = pooled(a.get('up_proj_layer_2')!, b.get('up_proj_layer_2')!);
  expectClose(aggregator.result().layers[2]!, g.map((v, i) => v + u[i]!));
  await expect(comparePairs([{ a, b, metricKeys: [] }], { numLayers, estimator: 'positionwise' })).rejects.toThrow(/needs equal token counts/);
});

test('the aggregator refuses pairs of another layer count or width', () => {
  const aggregator = new NeuronBiasAggregator('glu', 'mean');
  aggregator.addPairs([[new Float32Array(8)], [new Float32Array(8)]], 2);
  expect(() => aggregator.addPairs([[new Float32Array(4)]], 1)).toThrow(/1 layers, earlier pairs had 2/);
  expect(() => aggregator.addPairs([[new Float32Array(4)], [new Float32Array(5)]], 1)).toThrow(/layer 1 has 5 values for 1 pairs, expected width 4/);
});
