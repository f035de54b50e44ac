import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { analyzeBias } from '../../src/bias/analyze.js';
import { loadPairs } from '../../src/bias/pairs.js';
import { ARCHITECTURES, FIXTURES, readRefs } from '@fairprune/fixtures';

function expectRelative(actual: number, expected: number, tolerance = 1e-4): void {
  expect(Math.abs(actual - expected) / Math.abs(expected)).toBeLessThanOrEqual(tolerance);
}

describe.each(ARCHITECTURES)('analyzeBias through ORT on %s', (arch) => {
  test('pair 0 (the seed pair) reproduces optiPfair overall, per component and per layer', async () => {
    const expected = readRefs(arch).optipfair_bias_metrics_pair0;
    const { report, neuronBias, tokenActivations } = await analyzeBias(join(FIXTURES, arch), { pairs: await loadPairs('builtin:seed') });
    const metric = report.metric!;
    expectRelative(metric.overall.mean_difference, expected.overall_mean_difference);
    for (const [type, value] of Object.entries(expected.component_mean_difference)) expectRelative(metric.components[type]!.mean_difference, value);
    for (const [key, value] of Object.entries(expected.layer_mean_difference)) expectRelative(metric.layers[key]!.mean_difference, value);
    expect(report.pairs).toEqual([expect.objectContaining({ tokensA: 16, tokensB: 16, skipped: false, reason: null })]);
    expect(report.behaviour).toEqual([]);
    expect(neuronBias.layers).toHaveLength(report.model.numLayers);
    expect(tokenActivations!.a.tokens).toHaveLength(16);
    expect(tokenActivations!.a.tokens[0]).toBe('<|begin_of_text|>');
    expect(tokenActivations!.a.activations).toHaveLength(16 * tokenActivations!.width);
  });
});

test('bad options fail before the model is opened', async () => {
  const missing = '/nonexistent/model';
  await expect(analyzeBias(missing, { estimator: 'magic' as 'pooled' })).rejects.toThrow(/Option estimator: expected one of positionwise, pooled, glu, got "magic"/);
  await expect(analyzeBias(missing, { aggregation: 'median' as 'mean' })).rejects.toThrow(/Option aggregation: expected one of mean, max, got "median"/);
  await expect(analyzeBias(missing, { pairs: [], pairsSource: 'x.json' })).rejects.toThrow(/No prompt pairs in x\.json/);
  await expect(analyzeBias(missing, { components: ['attn'] })).rejects.toThrow(/Option components: expected one of .*glu_product, got "attn"/);
});
