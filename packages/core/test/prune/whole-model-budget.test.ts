import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { DATA, fixtureDir } from '@fairprune/fixtures';
import { loadPairs } from '../../src/bias/pairs.js';
import { estimateWorkingSet } from '../../src/model/working-set.js';
import { openModelFolder, requireOnnxPath } from '../../src/model/folder.js';
import { runFairnessPruning } from '../../src/prune/run.js';

const tmp = mkdtempSync(join(tmpdir(), 'fairprune-whole-budget-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test.each([
  ['--method behaviour', { method: 'behaviour' as const }],
  ['--compensate mean', { compensate: 'mean' as const }],
])('%s over the memory budget is refused before any work, naming the flag, the estimate and --memory-budget', async (flag, extra) => {
  const pairs = await loadPairs(DATA.behaviour);
  const folder = openModelFolder(fixtureDir('llama'));
  // The fixture's own whole-model estimate, independently: a budget just under it cannot hold the model.
  const whole = estimateWorkingSet(requireOnnxPath(folder), folder.config, { tokens: 0, batchTokens: 0 }).whole;
  const memoryBudget = whole / 2;
  const outDir = join(tmp, flag.replace(/\W+/g, '-'));
  const messages: string[] = [];
  await expect(
    runFairnessPruning(fixtureDir('llama'), { pairs, ...extra, calibrationTexts: pairs.map((p) => p.a), memoryBudget, streamed: true, outDir, onProgress: (m) => messages.push(m) }),
  ).rejects.toThrow(new RegExp(`^${flag} opens the whole model in one onnxruntime session: its working set is estimated at 0\\.\\d GB, over the memory budget of 0\\.\\d GB \\(--memory-budget\\)`));
  // Nothing ran and nothing was written.
  expect(messages).toEqual([]);
  expect(existsSync(outDir)).toBe(false);
});

test('within the budget, --compensate mean with --streamed runs', async () => {
  const pairs = await loadPairs(DATA.pairs);
  const result = await runFairnessPruning(fixtureDir('llama'), { pairs, compensate: 'mean', calibrationTexts: pairs.map((p) => p.a), fraction: 0.1, streamed: true, safetensors: false, outDir: join(tmp, 'fits') });
  expect(result.after).toBeDefined();
});
