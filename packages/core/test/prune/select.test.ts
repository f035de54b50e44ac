import { describe, expect, test } from 'vitest';
import { comparePairs } from '../../src/bias/compare.js';
import { NeuronBiasAggregator } from '../../src/bias/neuron-scores.js';
import { layerImportance } from '../../src/prune/importance.js';
import { minMaxNormalise, pruneCount, selectNeurons, validateSelectionOptions, type SelectionOptions } from '../../src/prune/select.js';
import { readRefs, readSafetensorsF32, refActivations, row } from '@fairprune/fixtures';

describe('selection on llama: ppm, w 0.5, fraction 0.1, pair 0', () => {
  test('equals an independent float64 computation from the HF references', async () => {
    const refs = readRefs('llama');
    const numLayers = refs.maw_importance.length;
    const a = refActivations('llama', refs, 0, 'a');
    const b = refActivations('llama', refs, 0, 'b');
    const weights = readSafetensorsF32('llama');
    const tensors = (layer: number) => ({
      gate: weights.get(`model.layers.${layer}.mlp.gate_proj.weight`)!,
      up: weights.get(`model.layers.${layer}.mlp.up_proj.weight`)!,
    });

    // Code under test: native difference + scan kernels, then selection.
    const aggregator = new NeuronBiasAggregator('positionwise', 'mean');
    await comparePairs([{ a, b, metricKeys: [] }], { numLayers, estimator: 'positionwise' }, aggregator);
    const neuronBias = aggregator.result().layers;
    const importance = await Promise.all(
      Array.from({ length: numLayers }, (_, layer) => {
        const { gate, up } = tensors(layer);
        const v = (t: typeof gate) => ({ data: t.data, rows: t.shape[0]!, cols: t.shape[1]!, dtype: 'f32' as const });
        return layerImportance('ppm', { gate: v(gate), up: v(up), neuronAxis: 'rows' });
      }),
    );
    const selection = selectNeurons(neuronBias, importance, { method: 'hybrid', biasWeight: 0.5, fraction: 0.1 });

    // Independent: the notebook's steps written plainly.
    const nearCut: string[] = [];
    for (let layer = 0; layer < numLayers; layer++) {
      const gateA = a.get(`gate_proj_layer_${layer}`)!;
      const [tokens, width] = gateA.shape as [number, number];
      const diffMean = (type: string, i: number) => {
        const x = a.get(`${type}_layer_${layer}`)!.data;
        const y = b.get(`${type}_layer_${layer}`)!.data;
        let s = 0;
        for (let t = 0; t < tokens; t++) s += Math.abs(x[t * width + i]! - y[t * width + i]!);
        return s / tokens;
      };
      const bias = Array.from({ length: width }, (_, i) => diffMean('gate_proj', i) + diffMean('up_proj', i));
      const { gate, up } = tensors(layer);
      const ppm = (r: Float32Array) => Math.max(...r) + Math.abs(Math.min(...r));
      const imp = Array.from({ length: width }, (_, i) => ppm(row(gate, i)) + ppm(row(up, i)));
      const norm = (v: number[]) => {
        const lo = Math.min(...v);
        const hi = Math.max(...v);
        return v.map((x) => (x - lo) / (hi - lo + 1e-8));
      };
      const bn = norm(bias);
      const inorm = norm(imp);
      const p = bn.map((x, i) => 0.5 * x + 0.5 * (1 - inorm[i]!));
      const n = Math.floor(0.1 * width); // 25 of 256
      const order = p.map((score, i) => ({ score, i })).sort((x, y) => y.score - x.score);
      const expected = order.slice(0, n).map((o) => o.i).sort((x, y) => x - y);
      const cut = order[n - 1]!.score;
      order.forEach((o) => Math.abs(o.score - cut) <= 1e-6 && o.i !== order[n - 1]!.i && nearCut.push(`${layer}:${o.i}`));
      expect(selection[layer]!.pruned).toEqual(expected);
      expect(selection[layer]!.pruned).toHaveLength(25);
      selection[layer]!.scores.forEach((score, i) => expect(score).toBeCloseTo(p[i]!, 5));
    }
    // Recorded for the report: no neuron lies within 1e-6 of the cut on this fixture.
    expect(nearCut).toEqual([]);
    expect(selection.every((s) => s.nearCut.length === 0)).toBe(true);
  });
});

describe('selection modes', () => {
  // Two layers of 10 neurons; bias rises with the index, importance falls, so P rises with the index.
  const bias = [Float32Array.from({ length: 10 }, (_, i) => i), Float32Array.from({ length: 10 }, (_, i) => 2 * i)];
  const importance = [Float32Array.from({ length: 10 }, (_, i) => 10 - i), Float32Array.from({ length: 10 }, () => 1)];
  const base = { method: 'hybrid', biasWeight: 0.5 } as const;

  test('uniform fraction: n = min(floor(p·N), N − 1)', () => {
    expect(pruneCount(8192, 0.002)).toBe(16);
    expect(pruneCount(256, 0.1)).toBe(25);
    expect(pruneCount(10, 0.99)).toBe(9);
    expect(selectNeurons(bias, importance, { ...base, fraction: 0.3 }).map((s) => s.pruned)).toEqual([[7, 8, 9], [7, 8, 9]]);
  });

  test('all-equal values normalise to zeros; bias-only ranks by raw bias', () => {
    expect([...minMaxNormalise([3, 3, 3])]).toEqual([0, 0, 0]);
    expect([...minMaxNormalise([1, 2, 3])].map((v) => Number(v.toFixed(6)))).toEqual([0, 0.5, 1]);
    // Layer 1 has constant importance: P = 0.5·bias_n + 0.5.
    const [, layer1] = selectNeurons(bias, importance, { ...base, fraction: 0.2 });
    expect(layer1!.scores[0]).toBeCloseTo(0.5, 12);
    const biasOnly = selectNeurons([Float32Array.of(5, 1, 9, 3)], [Float32Array.of(0, 0, 0, 0)], { method: 'bias', biasWeight: 0.5, fraction: 0.5 });
    expect(biasOnly[0]!.pruned).toEqual([0, 2]);
  });

  test('per-layer fractions, layer subset, divisor, global top-K, ties', () => {
    expect(selectNeurons(bias, importance, { ...base, layerFractions: { 1: 0.2 } }).map((s) => s.pruned)).toEqual([[], [8, 9]]);
    expect(selectNeurons(bias, importance, { ...base, fraction: 0.2, layers: [0] }).map((s) => s.pruned)).toEqual([[8, 9], []]);
    // 10 − floor(1.0) = 9 kept → rounded down to 8 → 2 pruned.
    expect(selectNeurons(bias, importance, { ...base, fraction: 0.1, divisor: 4 }).map((s) => s.pruned)).toEqual([[8, 9], [8, 9]]);
    // P ≈ i/9 in layer 0 and 0.5 + i/18 in layer 1: the 3 highest are layer 1's 9, layer 0's 9, layer 1's 8.
    const global = selectNeurons(bias, importance, { ...base, globalTopK: 3 });
    expect(global.map((s) => s.pruned)).toEqual([[9], [8, 9]]);
    const ties = selectNeurons([Float32Array.of(1, 1, 0, 1)], [Float32Array.of(0, 0, 0, 0)], { method: 'bias', biasWeight: 0, fraction: 0.5 });
    expect(ties[0]!.pruned).toEqual([0, 1]);
    expect(ties[0]!.nearCut).toEqual([0, 1, 3]);
  });

  test('bad options fail with the argument named', () => {
    const check = (options: Partial<SelectionOptions>) => () => validateSelectionOptions({ ...base, ...options } as SelectionOptions, 4);
    expect(check({ fraction: 0 })).toThrow(/Option fraction: expected a number strictly between 0 and 1, got 0/);
    expect(check({ fraction: 1 })).toThrow(/Option fraction: expected a number strictly between 0 and 1, got 1/);
    expect(check({ fraction: -0.1 })).toThrow(/Option fraction:/);
    expect(check({ fraction: 0.1, biasWeight: 1.5 })).toThrow(/Option biasWeight: expected a number in \[0, 1\], got 1\.5/);
    expect(check({ fraction: 0.1, biasWeight: -0.01 })).toThrow(/Option biasWeight:/);
    expect(check({ fraction: 0.1, method: 'magic' as 'bias' })).toThrow(/Option method: expected one of hybrid, bias, got "magic"/);
    expect(check({})).toThrow(/exactly one of/);
    expect(check({ fraction: 0.1, layers: [7] })).toThrow(/Layer 7 in the layer subset is not a layer of this model \(0\.\.3\)/);
    expect(check({ layerFractions: { 2: 1.2 } })).toThrow(/Option layerFractions\[2\]: expected a number strictly between 0 and 1, got 1\.2/);
    expect(check({ globalTopK: 0 })).toThrow(/Option globalTopK: expected a positive integer/);
  });
});
