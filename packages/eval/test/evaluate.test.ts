import { describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { openModelFolder } from '@fairprune/core';
import { evaluate, encodePair, lambadaRequest, loadDocs, tasks, type EvalResults, type Sample } from '../src/index.js';
import { DATA, FIXTURES, readRefs } from '@fairprune/fixtures';

/** Per-document log-likelihoods of the ONNX fixtures against lm-evaluation-harness-protocol references from HF. */

const ARCHITECTURES = ['llama', 'qwen2', 'gemma'] as const;
const LIMIT = 32; // refs cover docs 0–31

async function run(arch: string, task: 'lambada_openai' | 'boolq', batchSize: number): Promise<EvalResults> {
  return evaluate({
    model: join(FIXTURES, arch),
    task,
    data: { file: task === 'boolq' ? DATA.boolqMini : DATA.lambadaMini },
    limit: LIMIT,
    batchSize,
    logSamples: true,
    thread: 'main',
    threads: 1,
    bootstrapIters: 1000,
  });
}

function samples(results: EvalResults, task: 'lambada_openai' | 'boolq'): Sample[] {
  return results.samples![task]!;
}

describe.each(ARCHITECTURES)('%s', (arch) => {
  const refs = readRefs(arch).eval;
  const batchSizes = arch === 'llama' ? [1, 8] : [8];

  test('LAMBADA tokenization split equals the reference ctx_ids / cont_ids', async () => {
    const { tokenizer } = openModelFolder(join(FIXTURES, arch));
    const { docs } = await loadDocs(tasks.lambada_openai, { file: DATA.lambadaMini }, { limit: LIMIT });
    docs.forEach((doc, i) => {
      const { context, continuation } = lambadaRequest((doc as { text: string }).text);
      expect(encodePair(tokenizer, context, continuation, false)).toEqual({ context: refs.lambada[i]!.ctx_ids, continuation: refs.lambada[i]!.cont_ids });
    });
  });

  test.each(batchSizes)('LAMBADA per-doc ll (≤ 1e-3) and greedy flags, batch size %i', async (batchSize) => {
    const out = await run(arch, 'lambada_openai', batchSize);
    const got = samples(out, 'lambada_openai');
    expect(got).toHaveLength(LIMIT);
    got.forEach((s, i) => {
      expect(Math.abs(s.resps[0]![0] - refs.lambada[i]!.ll)).toBeLessThanOrEqual(1e-3);
      expect(s.resps[0]![1]).toBe(refs.lambada[i]!.greedy);
    });
    // aggregates from the reference values, computed here independently
    const lls = refs.lambada.map((r) => r.ll);
    const p = refs.lambada.filter((r) => r.greedy).length / LIMIT;
    const metrics = out.results.lambada_openai!;
    expect(metrics.acc).toBeCloseTo(p, 12);
    expect(metrics.acc_stderr).toBeCloseTo(Math.sqrt((p * (1 - p)) / (LIMIT - 1)), 12);
    expect(metrics.perplexity! / Math.exp(-lls.reduce((a, b) => a + b, 0) / LIMIT)).toBeCloseTo(1, 3);
  });

  test.each(batchSizes)('BoolQ ll_no / ll_yes (≤ 1e-3) and predictions, batch size %i', async (batchSize) => {
    const out = await run(arch, 'boolq', batchSize);
    const got = samples(out, 'boolq');
    got.forEach((s, i) => {
      const ref = refs.boolq[i]!;
      expect(s.arguments[0]![1]).toBe(' no');
      expect(s.arguments[1]![1]).toBe(' yes');
      expect(Math.abs(s.resps[0]![0] - ref.ll_no)).toBeLessThanOrEqual(1e-3);
      expect(Math.abs(s.resps[1]![0] - ref.ll_yes)).toBeLessThanOrEqual(1e-3);
      expect(s.acc).toBe(ref.pred === ref.label ? 1 : 0);
      expect(s.resps[1]![0] > s.resps[0]![0] ? 1 : 0).toBe(ref.pred);
    });
    const accuracy = refs.boolq.filter((r) => r.pred === r.label).length / LIMIT;
    expect(out.results.boolq!.acc).toBeCloseTo(accuracy, 12);
    expect(out.results.boolq!.perplexity).toBeUndefined();
  });
});

test('batch sizes 1 and 8 agree on every document (padded rows score as unpadded)', async () => {
  for (const task of ['lambada_openai', 'boolq'] as const) {
    const one = samples(await run('llama', task, 1), task);
    const eight = samples(await run('llama', task, 8), task);
    one.forEach((s, i) => {
      s.resps.forEach(([ll, greedy], j) => {
        expect(Math.abs(ll - eight[i]!.resps[j]![0])).toBeLessThanOrEqual(1e-4);
        expect(greedy).toBe(eight[i]!.resps[j]![1]);
      });
    });
  }
});

test('results record the configuration', async () => {
  const out = await run('llama', 'boolq', 8);
  expect(out.config).toMatchObject({ model: join(FIXTURES, 'llama'), data: DATA.boolqMini, bos: false, limit: 32, batch_size: 8, device: 'cpu' });
  expect(out.config.fairprune_version).toMatch(/^\d+\.\d+\.\d+/);
  expect(out['n-samples'].boolq).toEqual({ original: 64, effective: 32 });
});

test('--bos prepends the BOS id to context and whole encodings', async () => {
  const { tokenizer } = openModelFolder(join(FIXTURES, 'llama'));
  const plain = encodePair(tokenizer, 'The cat sat on the', ' mat', false);
  const withBos = encodePair(tokenizer, 'The cat sat on the', ' mat', true);
  expect(withBos.context).toEqual([tokenizer.bosTokenId, ...plain.context]);
  expect(withBos.continuation).toEqual(plain.continuation);
  // trailing context spaces move into the continuation, as in the harness
  expect(encodePair(tokenizer, 'Answer: ', 'yes', false)).toEqual(encodePair(tokenizer, 'Answer:', ' yes', false));
});

test('the KV-cache graph (empty past) scores like the plain graph', async () => {
  const refs = readRefs('llama').eval;
  const out = await evaluate({
    model: join(FIXTURES, 'llama'),
    onnxFile: 'onnx/model_kv.onnx',
    task: 'lambada_openai',
    data: { file: DATA.lambadaMini },
    limit: LIMIT,
    batchSize: 8,
    logSamples: true,
    thread: 'main',
    threads: 1,
    bootstrapIters: 0,
  });
  samples(out, 'lambada_openai').forEach((s, i) => {
    expect(Math.abs(s.resps[0]![0] - refs.lambada[i]!.ll)).toBeLessThanOrEqual(1e-3);
    expect(s.resps[0]![1]).toBe(refs.lambada[i]!.greedy);
  });
  expect(out.results.lambada_openai!.perplexity_stderr).toBe('N/A');
});

describe('scoring one layer at a time (model segments)', () => {
  const refs = readRefs('llama').eval;
  const segmented = (task: 'lambada_openai' | 'boolq', extra: { memoryBudget?: number; streamed?: boolean }, notices: string[] = []) =>
    evaluate({
      model: join(FIXTURES, 'llama'),
      task,
      data: { file: task === 'boolq' ? DATA.boolqMini : DATA.lambadaMini },
      limit: LIMIT,
      logSamples: true,
      thread: 'main',
      threads: 1,
      bootstrapIters: 1000,
      onNotice: (m) => notices.push(m),
      ...extra,
    });

  test('--streamed: LAMBADA and BoolQ per-document log-likelihoods equal the references and the whole-model run', async () => {
    for (const task of ['lambada_openai', 'boolq'] as const) {
      const notices: string[] = [];
      const streamed = samples(await segmented(task, { streamed: true }, notices), task);
      expect(notices.some((n) => n.startsWith('scoring one layer at a time'))).toBe(true);
      const whole = samples(await run('llama', task, 8), task);
      streamed.forEach((s, i) => {
        s.resps.forEach((r, j) => expect(Math.abs(r[0] - whole[i]!.resps[j]![0]), `${task} doc ${i}`).toBeLessThanOrEqual(1e-5));
        if (task === 'lambada_openai') {
          expect(Math.abs(s.resps[0]![0] - refs.lambada[i]!.ll)).toBeLessThanOrEqual(1e-3);
          expect(s.resps[0]![1]).toBe(refs.lambada[i]!.greedy);
        } else {
          expect(Math.abs(s.resps[0]![0] - refs.boolq[i]!.ll_no)).toBeLessThanOrEqual(1e-3);
          expect(Math.abs(s.resps[1]![0] - refs.boolq[i]!.ll_yes)).toBeLessThanOrEqual(1e-3);
        }
      });
    }
  });

  test('a budget below the whole model chooses the segments, in chunks no longer than the longest document when nothing more fits', async () => {
    const notices: string[] = [];
    const out = samples(await segmented('lambada_openai', { memoryBudget: 1 }, notices), 'lambada_openai');
    const longest = Math.max(...refs.lambada.map((r) => r.ctx_ids.length + r.cont_ids.length - 1));
    expect(notices).toContainEqual(expect.stringMatching(new RegExp(`documents in chunks of up to ${longest} tokens$`)));
    out.forEach((s, i) => expect(Math.abs(s.resps[0]![0] - refs.lambada[i]!.ll)).toBeLessThanOrEqual(1e-3));
  });
});
