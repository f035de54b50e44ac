import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { DATA, fixtureDir, type ALL_ARCHITECTURES } from '@fairprune/fixtures';
import { analyzeBias, type BiasReport, type PairSetMeasurement } from '../../src/bias/analyze.js';
import { loadPairs } from '../../src/bias/pairs.js';
import { measurePrunedStreamed } from '../../src/bias/streamed-measure.js';
import { runFairnessPruning, type PruneOptions } from '../../src/prune/run.js';
import { planSelection } from '../../src/prune/plan.js';

const tmp = mkdtempSync(join(tmpdir(), 'fairprune-masked-verify-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Every per-key statistic of the metric and the behaviour log-odds agree within `tolerance`; the pair lists are identical. */
function expectSameMeasurement(masked: PairSetMeasurement, fresh: PairSetMeasurement, tolerance: number): void {
  expect(masked.pairs).toEqual(fresh.pairs);
  expect(masked.metric!.pairs).toBe(fresh.metric!.pairs);
  expect(Object.keys(masked.metric!.layers).sort()).toEqual(Object.keys(fresh.metric!.layers).sort());
  for (const [key, stats] of Object.entries(fresh.metric!.layers)) {
    for (const stat of ['mean_difference', 'max_difference', 'min_difference', 'std_difference', 'l2_norm'] as const) {
      expect(Math.abs(masked.metric!.layers[key]![stat] - stats[stat]), `${key} ${stat}`).toBeLessThanOrEqual(tolerance);
    }
  }
  expect(Math.abs(masked.metric!.overall.mean_difference - fresh.metric!.overall.mean_difference)).toBeLessThanOrEqual(tolerance);
  expect(masked.behaviour).toHaveLength(fresh.behaviour.length);
  masked.behaviour.forEach((b, i) => {
    expect(Math.abs(b.logOddsA - fresh.behaviour[i]!.logOddsA)).toBeLessThanOrEqual(tolerance * 10);
    expect(Math.abs(b.logOddsB - fresh.behaviour[i]!.logOddsB)).toBeLessThanOrEqual(tolerance * 10);
  });
}

type Arch = (typeof ALL_ARCHITECTURES)[number];

describe('streamed prune: the after-report from masked segments of the original equals a fresh streamed analysis of the written folder', async () => {
  const pairs = await loadPairs(DATA.pairs);
  const evalPairs = await loadPairs(DATA.behaviour);
  const calibrationTexts = pairs.flatMap((p) => [p.a, p.b]);
  const cases: [string, Arch, Partial<PruneOptions>, number][] = [
    ['remove, external data', 'qwen2', { onnxFile: 'onnx/model_external.onnx' }, 1e-5],
    ['zero', 'llama', { mode: 'zero' }, 1e-5],
    ['remove with mean compensation', 'llama', { compensate: 'mean', calibrationTexts, safetensors: false }, 1e-5],
    ['zero with mean compensation, KV export', 'gemma', { mode: 'zero', compensate: 'mean', calibrationTexts, onnxFile: 'onnx/model_kv.onnx', safetensors: false }, 1e-5],
    ['remove, fused gate_up', 'phi3', { onnxFile: 'onnx/model_dynamo.onnx' }, 1e-5],
    ['remove, fp16', 'llama', { onnxFile: 'onnx/model_fp16.onnx' }, 1e-5],
  ];
  test.each(cases)('%s (%s)', async (name, arch, extra, tolerance) => {
    const outDir = join(tmp, name.replace(/\W+/g, '-'));
    const messages: string[] = [];
    const options = { pairs, evalPairs, fraction: 0.1, ...extra };
    const result = await runFairnessPruning(fixtureDir(arch), { ...options, outDir, streamed: true, onProgress: (m) => messages.push(m) });
    // The pruned model was measured on the masked original, not read back.
    expect(messages.filter((m) => m.includes("with the plan's neurons masked"))).toHaveLength(1);
    expect(Object.values(result.plan.layers).flat().length).toBeGreaterThan(0);
    const fresh: BiasReport = (
      await analyzeBias(outDir, { pairs, evalPairs, streamed: true, tokenActivations: false, ...(extra.onnxFile ? { onnxFile: extra.onnxFile } : {}) })
    ).report;
    const masked = result.after!;
    expect(masked.model).toEqual(fresh.model);
    if (extra.mode !== 'zero') expect(masked.model.intermediateSizes.some((w, l) => w < result.before.model.intermediateSizes[l]!)).toBe(true);
    expect(masked.inputChecks).toEqual(fresh.inputChecks);
    expectSameMeasurement(masked, fresh, tolerance);
    expectSameMeasurement(masked.eval!, fresh.eval!, tolerance);
    // Pruning changed the measurement: the comparison is not of two copies of the original's report.
    expect(masked.metric!.overall.mean_difference).not.toBe(result.before.metric!.overall.mean_difference);
  });

  test('a written folder that is not the plan applied is refused, naming the file and the difference', async () => {
    const outDir = join(tmp, 'mismatch');
    const result = await runFairnessPruning(fixtureDir('llama'), { pairs, fraction: 0.1, mode: 'zero', outDir, streamed: true, analyzeAfter: false });
    const selection = planSelection(result.plan);
    // Other neurons than the written ones: same widths (zero mode), another hidden state.
    const shifted = new Map([...selection].map(([layer, neurons]) => [layer, neurons.map((n) => (n + 1) % 256)]));
    const sourceOnnx = join(fixtureDir('llama'), 'onnx/model.onnx');
    await expect(measurePrunedStreamed(outDir, { sourceOnnx, selection: shifted, mode: 'zero' }, { pairs })).rejects.toThrow(
      /model\.onnx: the written model's last hidden state for a \d+-token prompt differs from the masked original's by /,
    );
    // Removal claimed where the weights were zeroed: the widths disagree.
    await expect(measurePrunedStreamed(outDir, { sourceOnnx, selection, mode: 'remove' }, { pairs })).rejects.toThrow(/model\.onnx: the written model's MLP widths are \[256, 256, 256, 256\], the plan \(remove\) gives/);
    await expect(measurePrunedStreamed(outDir, { sourceOnnx, selection, mode: 'zero' }, { pairs })).resolves.toBeDefined();
  });
});
