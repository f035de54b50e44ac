import { expect, test } from 'vitest';
import { join } from 'node:path';
import { openModelFolder } from '@fairprune/core';
import { openScorer, loadDocs, tasks, encodePair, lambadaRequest, modelInput, type ScoringRow } from '../src/index.js';
import { DATA, FIXTURES, readRefs } from '@fairprune/fixtures';

// The worker runs src/scorer-worker.ts through test hooks (TypeScript stripped); built code uses dist/scorer-worker.js.
const workerFromSource = new URL('./helpers/scorer-worker-from-source.mjs', import.meta.url);

test('the worker-thread scorer gives the reference log-likelihoods and keeps the main thread responsive', async () => {
  const folder = openModelFolder(join(FIXTURES, 'llama'));
  const { docs } = await loadDocs(tasks.lambada_openai, { file: DATA.lambadaMini }, { limit: 32 });
  const rows: ScoringRow[] = docs.map((doc) => {
    const { context, continuation } = lambadaRequest((doc as { text: string }).text);
    const pair = encodePair(folder.tokenizer, context, continuation, false);
    return { input: modelInput(pair, 256), continuations: [pair.continuation] };
  });
  const scorer = await openScorer(join(FIXTURES, 'llama/onnx/model.onnx'), { threads: 1, config: folder.config }, 'worker', workerFromSource);
  try {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const scores = (await Promise.all([0, 8, 16, 24].map((start) => scorer.score(rows.slice(start, start + 8))))).flat();
    clearInterval(timer);
    const refs = readRefs('llama').eval.lambada;
    scores.forEach(([result], i) => {
      expect(Math.abs(result!.ll - refs[i]!.ll)).toBeLessThanOrEqual(1e-3);
      expect(result!.isGreedy).toBe(refs[i]!.greedy);
    });
    expect(ticks).toBeGreaterThan(0);
    // errors inside the worker come back as rejections naming the problem
    await expect(scorer.score([{ input: [1, 2, 3], continuations: [[5000]] }])).rejects.toThrow(/outside the model's vocabulary/);
  } finally {
    await scorer.close();
  }
});

test('a model the worker cannot open is a clear error', async () => {
  await expect(openScorer(join(FIXTURES, 'llama/config.json'), {}, 'worker', workerFromSource)).rejects.toThrow(/onnxruntime could not load .*config.json/);
});
