import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { DATA, fixtureDir } from '@fairprune/fixtures';
import { analyzeBias } from '../../src/bias/analyze.js';
import { analysisWorkload, planMeasure } from '../../src/bias/measure-path.js';
import { loadPairs } from '../../src/bias/pairs.js';
import { openModelFolder } from '../../src/model/folder.js';
import { runFairnessPruning } from '../../src/prune/run.js';
import { chooseMeasurePath, DEFAULT_BUDGET_FRACTION, defaultMemoryBudget, estimateWorkingSet, RUNTIME_BYTES } from '../../src/model/working-set.js';

const llama = fixtureDir('llama');
const config = openModelFolder(llama).config;

describe('working-set estimate', () => {
  test('fp32 external data: the stored weights are the data file; the whole model is them as float32 plus the tied lm_head copy', () => {
    const path = join(llama, 'onnx/model_external.onnx');
    const estimate = estimateWorkingSet(path, config);
    // Independent: the bytes on disk (the file holds the float initializers, possibly aligned).
    const onDisk = statSync(join(llama, 'onnx/model_external.onnx_data')).size;
    expect(estimate.weights).toBeGreaterThan(0.95 * onDisk);
    expect(estimate.weights).toBeLessThanOrEqual(onDisk + 4096);
    expect(estimate.whole - RUNTIME_BYTES).toBeGreaterThanOrEqual(estimate.weights * 0.95);
    // One layer's weights are a fraction of the model's.
    expect(estimate.streamed!).toBeLessThan(estimate.whole);
    expect(estimate.largestSegment!.bytes).toBeGreaterThan(0);
  });

  test('fp16: onnxruntime computes in float32 on CPU, so the working set counts each fp16 weight twice its stored size', () => {
    const fp32 = estimateWorkingSet(join(llama, 'onnx/model.onnx'), config);
    const fp16 = estimateWorkingSet(join(llama, 'onnx/model_fp16.onnx'), config);
    expect(fp16.weights).toBeLessThan(0.6 * fp32.weights);
    expect(Math.abs(fp16.whole - fp32.whole) / fp32.whole).toBeLessThan(0.05);
  });

  test('without logits the streamed peak leaves out the suffix (final norm and lm_head)', () => {
    const path = join(llama, 'onnx/model.onnx');
    const withLogits = estimateWorkingSet(path, config, { tokens: 0, batchTokens: 0, logits: true });
    const without = estimateWorkingSet(path, config, { tokens: 0, batchTokens: 0, logits: false });
    expect(without.largestSegment!.name).not.toMatch(/suffix/);
    expect(without.streamed!).toBeLessThanOrEqual(withLogits.streamed!);
    // The fixture's lm_head is small: its largest segment is a layer either way.
    expect(without.largestSegment).toEqual(withLogits.largestSegment);
  });

  test('the workload adds per-token memory: all layers of one batch on the whole path; streamed, every sequence\'s residual streams, one layer\'s captures and its logits', () => {
    const path = join(llama, 'onnx/model.onnx');
    const bare = estimateWorkingSet(path, config);
    const loaded = estimateWorkingSet(path, config, { tokens: 1000, batchTokens: 100 });
    const hidden = config.hiddenSize;
    const layerCaptures = 4 * 3 * (config.intermediateSize + hidden);
    expect(loaded.whole - bare.whole).toBe(100 * (config.numHiddenLayers * layerCaptures + 4 * config.vocabSize));
    expect(loaded.streamed! - bare.streamed!).toBe(1000 * (8 * hidden + layerCaptures + 4 * config.vocabSize));
    expect(loaded.streamedPerToken).toBe(8 * hidden + layerCaptures + 4 * config.vocabSize);
  });
});

describe('choice of the measure path', () => {
  const estimate = estimateWorkingSet(join(llama, 'onnx/model.onnx'), config);

  test('whole model when it fits the budget, streamed when not, streamed when forced', () => {
    expect(chooseMeasurePath(estimate, { memoryBudget: estimate.whole })).toBe('whole');
    expect(chooseMeasurePath(estimate, { memoryBudget: estimate.whole - 1 })).toBe('streamed');
    expect(chooseMeasurePath(estimate, { memoryBudget: 1e15, streamed: true })).toBe('streamed');
  });

  test('a graph that cannot be cut keeps the whole-model path whatever the budget', () => {
    expect(chooseMeasurePath({ ...estimate, streamed: null, largestSegment: null }, { memoryBudget: 1 })).toBe('whole');
  });

  test('the default budget is a positive share of the memory available', () => {
    const budget = defaultMemoryBudget();
    expect(budget).toBeGreaterThan(0);
    expect(budget).toBeLessThanOrEqual(totalmem() * DEFAULT_BUDGET_FRACTION);
  });

  test('the workload counts every prompt of both pair sets with the tokenizer', async () => {
    const folder = openModelFolder(llama);
    const pairs = await loadPairs(DATA.pairs);
    const workload = analysisWorkload(folder, { pairs });
    const lengths = pairs.flatMap((p) => [folder.tokenizer.encode(p.a).length, folder.tokenizer.encode(p.b).length]);
    expect(workload.tokens).toBe(lengths.reduce((a, b) => a + b, 0));
    expect(workload.batchTokens).toBe(16 * Math.max(...lengths));
    expect(workload.logits).toBe(pairs.some((p) => (p.negative?.length ?? 0) > 0));
    expect(analysisWorkload(folder, { pairs, evalPairs: await loadPairs(DATA.behaviour) }).logits).toBe(true);
  });

  test('analyzeBias streams when the budget is below the whole model and gives the whole-model numbers', async () => {
    const pairs = await loadPairs(DATA.pairs);
    const messages: string[] = [];
    const small = await analyzeBias(llama, { pairs, tokenActivations: false, memoryBudget: 1, onProgress: (m) => messages.push(m) });
    expect(messages.some((m) => m.includes('(streamed, one layer at a time)'))).toBe(true);
    expect(messages.find((m) => m.startsWith('working set:'))).toMatch(/→ streamed$/);
    const roomy: string[] = [];
    const whole = await analyzeBias(llama, { pairs, tokenActivations: false, memoryBudget: 1e12, onProgress: (m) => roomy.push(m) });
    expect(roomy.some((m) => m.includes('streamed, one layer'))).toBe(false);
    expect(Math.abs(small.report.metric!.overall.mean_difference - whole.report.metric!.overall.mean_difference)).toBeLessThanOrEqual(1e-5);
  });

  test('prune measures before and after streamed when the budget is below the whole model', async () => {
    const out = mkdtempSync(join(tmpdir(), 'fairprune-budget-'));
    try {
      const messages: string[] = [];
      const result = await runFairnessPruning(llama, { outDir: join(out, 'pruned'), pairs: await loadPairs(DATA.pairs), fraction: 0.1, memoryBudget: 1, onProgress: (m) => messages.push(m) });
      expect(messages.filter((m) => m.includes('(streamed, one layer at a time)'))).toHaveLength(2);
      expect(result.after!.metric).not.toBeNull();
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  test('planMeasure with streamed set does not read the model', () => {
    expect(planMeasure('/nonexistent/model', { streamed: true })).toEqual({ path: 'streamed' });
  });
});
