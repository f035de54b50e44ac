import { describe, expect, test } from 'vitest';
import { comparePairs } from '../../src/bias/compare.js';
import { activationKey, computeBiasMetrics, differenceStats, HOOK_TYPES } from '../../src/bias/metrics.js';
import { ARCHITECTURES, readRefs, refActivations } from '@fairprune/fixtures';

const metricKeys = (layers: number) => Array.from({ length: layers }, (_, l) => HOOK_TYPES.map((t) => activationKey(t, l))).flat();

function expectRelative(actual: number, expected: number, tolerance = 1e-4): void {
  expect(Math.abs(actual - expected) / Math.abs(expected)).toBeLessThanOrEqual(tolerance);
}

describe.each(ARCHITECTURES)('optiPfair bias metric on %s, pair 0 (HF reference activations)', (arch) => {
  test('overall, per component and per layer match optiPfair to 1e-4 relative', async () => {
    const refs = readRefs(arch);
    const expected = refs.optipfair_bias_metrics_pair0;
    const numLayers = refs.maw_importance.length;
    const [differences] = await comparePairs(
      [{ a: refActivations(arch, refs, 0, 'a'), b: refActivations(arch, refs, 0, 'b'), metricKeys: metricKeys(numLayers) }],
      { numLayers, estimator: 'positionwise' },
    );
    const metrics = computeBiasMetrics([differences!]);
    expect(metrics.overall.total_layers).toBe(6 * numLayers);
    expect(Object.keys(metrics.layers).sort()).toEqual(Object.keys(expected.layer_mean_difference).sort());
    expectRelative(metrics.overall.mean_difference, expected.overall_mean_difference);
    for (const [type, value] of Object.entries(expected.component_mean_difference)) {
      expectRelative(metrics.components[type]!.mean_difference, value);
    }
    for (const [key, value] of Object.entries(expected.layer_mean_difference)) {
      expectRelative(metrics.layers[key]!.mean_difference, value);
    }
    // The variant without gate/up is the plain mean of the other 4 components' values (equal layer counts).
    const others = ['input_norm', 'attention_output', 'down_proj', 'mlp_output'].map((t) => expected.component_mean_difference[t]!);
    expectRelative(metrics.overall_excluding_gate_up.mean_difference, others.reduce((a, b) => a + b) / 4);
  });
});

describe('statistics over keys and pairs', () => {
  test('pair averaging, unbiased std, single-value std of 0, progression', () => {
    const metrics = computeBiasMetrics([
      { x_layer_0: 1, x_layer_1: 3, gate_proj_layer_0: 10, gate_proj_layer_1: 10 },
      { x_layer_0: 3, x_layer_1: 5, gate_proj_layer_0: 20, gate_proj_layer_1: 30 },
    ]);
    expect(metrics.pairs).toBe(2);
    // per-key means over pairs: x 2, 4; gate 15, 20
    expect(metrics.layers['x_layer_0']).toMatchObject({ mean_difference: 2, max_difference: 3, min_difference: 1, std_difference: Math.SQRT2 });
    expect(metrics.components['x']).toMatchObject({ mean_difference: 3, std_difference: Math.SQRT2, num_layers: 2 });
    expect(metrics.components['x']!.progression_metrics).toEqual({
      first_to_last_ratio: 2,
      max_to_first_ratio: 2,
      is_increasing: true,
      layer_with_max_diff: 'x_layer_1',
      mean_diffs_by_layer: { x_layer_0: 2, x_layer_1: 4 },
    });
    expect(metrics.overall.mean_difference).toBeCloseTo((2 + 4 + 15 + 20) / 4, 12);
    expect(metrics.overall.total_layers).toBe(4);
    expect(metrics.overall_excluding_gate_up).toMatchObject({ mean_difference: 3, total_layers: 2 });
    expect(differenceStats([0.5])).toMatchObject({ mean_difference: 0.5, std_difference: 0, l1_norm: 0.5, l2_norm: 0.5 });
    // optiPfair prints inf when the first layer's d is 0; JSON has no inf, so the ratio is null.
    expect(computeBiasMetrics([{ y_layer_0: 0, y_layer_1: 1 }]).components['y']!.progression_metrics!.first_to_last_ratio).toBeNull();
  });

  test('pairs with different keys are an error', () => {
    expect(() => computeBiasMetrics([{ x_layer_0: 1 }, { x_layer_1: 1 }])).toThrow(/pair 1 has keys \[x_layer_1\]/);
    expect(() => computeBiasMetrics([])).toThrow(/no pairs/);
  });
});
