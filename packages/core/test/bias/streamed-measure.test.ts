import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { ALL_ARCHITECTURES, ARCHITECTURES, DATA, fixtureDir, maxAbsDiff, ONNX_FORMS, readRefs } from '@fairprune/fixtures';
import { analyzeBias, type AnalyzeOptions, type PairSetMeasurement } from '../../src/bias/analyze.js';
import { loadPairs } from '../../src/bias/pairs.js';
import { runFairnessPruning } from '../../src/prune/run.js';
import { SegmentedModel } from '../../src/runtime/segmented-model.js';

/** Whether onnxruntime-node has the CUDA provider library beside its binding (what `fairprune doctor` checks). */
const cudaProviderInstalled = existsSync(
  join(dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json')), 'bin/napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so'),
);

const tmp = mkdtempSync(join(tmpdir(), 'fairprune-streamed-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Every per-key d of the metric and the behaviour log-odds agree within `tolerance`; the pair lists are identical. */
function expectSameMeasurement(streamed: PairSetMeasurement, whole: PairSetMeasurement, tolerance: number): void {
  expect(streamed.pairs).toEqual(whole.pairs);
  expect(streamed.metric!.pairs).toBe(whole.metric!.pairs);
  expect(Object.keys(streamed.metric!.layers).sort()).toEqual(Object.keys(whole.metric!.layers).sort());
  for (const [key, stats] of Object.entries(whole.metric!.layers)) {
    expect(Math.abs(streamed.metric!.layers[key]!.mean_difference - stats.mean_difference), key).toBeLessThanOrEqual(tolerance);
    expect(Math.abs(streamed.metric!.layers[key]!.max_difference - stats.max_difference), key).toBeLessThanOrEqual(tolerance);
  }
  expect(Math.abs(streamed.metric!.overall.mean_difference - whole.metric!.overall.mean_difference)).toBeLessThanOrEqual(tolerance);
  expect(streamed.behaviour).toHaveLength(whole.behaviour.length);
  streamed.behaviour.forEach((b, i) => {
    expect(Math.abs(b.logOddsA - whole.behaviour[i]!.logOddsA)).toBeLessThanOrEqual(1e-4);
    expect(Math.abs(b.logOddsB - whole.behaviour[i]!.logOddsB)).toBeLessThanOrEqual(1e-4);
  });
}

describe.each(ALL_ARCHITECTURES)('streamed analysis of %s', async (arch) => {
  const pairs = await loadPairs(DATA.pairs);
  const evalPairs = await loadPairs(DATA.behaviour);

  test.each(ONNX_FORMS)('%s: metric, neuron scores, behaviour and token activations equal the whole-model run', async (form) => {
    const options: AnalyzeOptions = { onnxFile: form, pairs, evalPairs, estimator: 'pooled', aggregation: 'max' };
    const whole = await analyzeBias(fixtureDir(arch), options);
    const streamed = await analyzeBias(fixtureDir(arch), { ...options, streamed: true });
    expect(streamed.report.model).toEqual(whole.report.model);
    expectSameMeasurement(streamed.report, whole.report, 1e-5);
    expectSameMeasurement(streamed.report.eval!, whole.report.eval!, 1e-5);
    expect(streamed.report.eval!.behaviour.length).toBeGreaterThan(0);
    expect(streamed.neuronBias.pairs).toBe(whole.neuronBias.pairs);
    expect(streamed.neuronBias.layers).toHaveLength(whole.neuronBias.layers.length);
    whole.neuronBias.layers.forEach((layer, l) => expect(maxAbsDiff(streamed.neuronBias.layers[l]!, layer), `layer ${l}`).toBeLessThanOrEqual(1e-5));
    expect(streamed.tokenActivations!.key).toBe(whole.tokenActivations!.key);
    expect(maxAbsDiff(streamed.tokenActivations!.b.activations, whole.tokenActivations!.b.activations)).toBeLessThanOrEqual(1e-5);
    expect(Object.keys(streamed.report.timings)).toEqual(Object.keys(whole.report.timings));
  });
});

describe('streamed analysis, other estimators', () => {
  test.each([
    ['llama', 'positionwise'],
    ['phi3', 'glu'],
    ['gemma3', 'positionwise'],
  ] as const)('%s, %s estimator: equal to the whole-model run', async (arch, estimator) => {
    const options: AnalyzeOptions = { pairs: await loadPairs(DATA.pairs), estimator, components: ['mlp_output', 'glu_product'], tokenActivations: false };
    const whole = await analyzeBias(fixtureDir(arch), options);
    const streamed = await analyzeBias(fixtureDir(arch), { ...options, streamed: true });
    expectSameMeasurement(streamed.report, whole.report, 1e-5);
    whole.neuronBias.layers.forEach((layer, l) => expect(maxAbsDiff(streamed.neuronBias.layers[l]!, layer)).toBeLessThanOrEqual(1e-5));
  });

  test.each(ARCHITECTURES)('%s: the seed pair reproduces optiPfair per layer (HF reference)', async (arch) => {
    const expected = readRefs(arch).optipfair_bias_metrics_pair0;
    const { report } = await analyzeBias(fixtureDir(arch), { pairs: await loadPairs('builtin:seed'), streamed: true, onnxFile: 'onnx/model_external.onnx' });
    for (const [key, value] of Object.entries(expected.layer_mean_difference)) {
      expect(Math.abs(report.metric!.layers[key]!.mean_difference - value) / Math.abs(value), key).toBeLessThanOrEqual(1e-4);
    }
    expect(Math.abs(report.metric!.overall.mean_difference - expected.overall_mean_difference) / expected.overall_mean_difference).toBeLessThanOrEqual(1e-4);
  });

  test('CUDA session device: without the provider libraries every segment runs on CPU after one message, with the CPU numbers', async () => {
    const options: AnalyzeOptions = { pairs: await loadPairs(DATA.pairs), streamed: true, tokenActivations: false };
    const cpu = await analyzeBias(fixtureDir('llama'), options);
    const messages: string[] = [];
    const cuda = await analyzeBias(fixtureDir('llama'), { ...options, sessionDevice: 'cuda', onProgress: (m) => messages.push(m) });
    const fallbacks = messages.filter((line) => line.includes('CUDA execution provider unavailable'));
    // A machine with the CUDA provider gets no message; one without its libraries gets exactly one, not one per segment.
    expect(fallbacks).toHaveLength(cudaProviderInstalled ? 0 : 1);
    if (!cudaProviderInstalled) {
      expect(fallbacks).toHaveLength(1);
      expect(fallbacks[0]).toMatch(/running on CPU\. Install the provider libraries with ONNXRUNTIME_NODE_INSTALL=cuda12/);
    }
    expect(Math.abs(cuda.report.metric!.overall.mean_difference - cpu.report.metric!.overall.mean_difference)).toBeLessThanOrEqual(fallbacks.length > 0 ? 1e-7 : 1e-4);
  });

  test('SegmentedModel on cuda records the fallback reason and reports it once', async () => {
    const messages: string[] = [];
    const model = SegmentedModel.open(join(fixtureDir('llama'), 'onnx/model.onnx'), { device: 'cuda', onFallback: (m) => messages.push(m) });
    try {
      const ref = readRefs('llama').prompts[0]!;
      await model.forward([ref.input_ids]);
      expect(messages).toHaveLength(cudaProviderInstalled ? 0 : 1);
      expect(model.fallbackReason).toBe(messages[0]);
    } finally {
      model.close();
    }
  });
});

test('prune --streamed writes the same plan and pruned weights as the whole-model prune, and measures the pruned model streamed', async () => {
  const options = { pairs: await loadPairs(DATA.pairs), fraction: 0.1, onnxFile: 'onnx/model_external.onnx' };
  const whole = await runFairnessPruning(fixtureDir('qwen2'), { ...options, outDir: join(tmp, 'whole') });
  const messages: string[] = [];
  const streamed = await runFairnessPruning(fixtureDir('qwen2'), { ...options, outDir: join(tmp, 'streamed'), streamed: true, onProgress: (m) => messages.push(m) });
  // Both the model and the pruned model were measured layer by layer.
  expect(messages.filter((m) => m.includes('streamed, one layer at a time'))).toHaveLength(2);
  expect(streamed.plan.layers).toEqual(whole.plan.layers);
  expect(Object.values(streamed.plan.layers).flat().length).toBeGreaterThan(0);
  const data = (dir: string) => readFileSync(join(tmp, dir, 'onnx/model_external.onnx_data'));
  expect(data('streamed').equals(data('whole'))).toBe(true);
  expect(Math.abs(streamed.after!.metric!.overall.mean_difference - whole.after!.metric!.overall.mean_difference)).toBeLessThanOrEqual(1e-5);
});

test("fp16 export: equal to the whole-model run within fp16 rounding (onnxruntime optimises a cut graph differently, and fp16 shows it)", async () => {
  const options: AnalyzeOptions = { onnxFile: 'onnx/model_fp16.onnx', pairs: await loadPairs(DATA.pairs) };
  const whole = await analyzeBias(fixtureDir('llama'), options);
  const streamed = await analyzeBias(fixtureDir('llama'), { ...options, streamed: true });
  expect(Math.abs(streamed.report.metric!.overall.mean_difference / whole.report.metric!.overall.mean_difference - 1)).toBeLessThanOrEqual(1e-3);
  whole.neuronBias.layers.forEach((layer, l) => expect(maxAbsDiff(streamed.neuronBias.layers[l]!, layer)).toBeLessThanOrEqual(2e-3));
});

test('one pass through the segments serves the pairs and every behaviour forward', async () => {
  const run = vi.spyOn(SegmentedModel.prototype, 'run');
  try {
    const { report } = await analyzeBias(fixtureDir('gemma3'), { pairs: await loadPairs(DATA.behaviour), streamed: true });
    expect(report.behaviour).toHaveLength(4);
    expect(run).toHaveBeenCalledTimes(1);
  } finally {
    run.mockRestore();
  }
});
