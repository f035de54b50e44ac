import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { DATA, FIXTURES } from '@fairprune/fixtures';
import { loadPairs } from '../../src/bias/pairs.js';
import { ARTIFACTS } from '../../src/io/artifacts.js';
import { analyzeModel } from '../../src/prune/model-analysis.js';
import { runFairnessPruning } from '../../src/prune/run.js';

const llama = join(FIXTURES, 'llama');
const tmp = mkdtempSync(join(tmpdir(), 'fairprune-model-analysis-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A written JSON file without the fields that are times by nature. */
function withoutTimes(path: string): unknown {
  const value = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  delete value['createdAt'];
  delete value['timings'];
  return value;
}

describe('a model analysis reused by several prune runs', () => {
  test('gives byte-identical plans, reports and scores to runs that measure themselves, and refuses other settings', async () => {
    const pairs = await loadPairs(DATA.pairs);
    const evalPairs = await loadPairs(DATA.behaviour);
    const settings = { pairs, pairsSource: DATA.pairs, evalPairs, evalPairsSource: DATA.behaviour, kernelDevice: 'cpu' as const };
    const analysis = await analyzeModel(llama, { ...settings, importance: ['maw', 'ppm'] });
    expect(JSON.parse(JSON.stringify(analysis))).toEqual(analysis);
    for (const [index, config] of [{ importance: 'maw' as const, fraction: 0.1 }, { importance: 'ppm' as const, fraction: 0.05, biasWeight: 0.8 }].entries()) {
      const alone = await runFairnessPruning(llama, { ...settings, ...config, outDir: join(tmp, `alone-${index}`) });
      const reused = await runFairnessPruning(llama, { ...settings, ...config, analysis, outDir: join(tmp, `reused-${index}`) });
      expect(reused.plan.model.weightsHash).toBe(alone.plan.model.weightsHash);
      for (const name of [ARTIFACTS.plan, ARTIFACTS.biasBefore, ARTIFACTS.neuronScores, ARTIFACTS.biasAfter]) {
        const a = withoutTimes(join(alone.outDir, name)) as { model?: { path?: string; onnxFile?: string } };
        const b = withoutTimes(join(reused.outDir, name)) as { model?: { path?: string; onnxFile?: string } };
        // The after report names its own output folder.
        if (name === ARTIFACTS.biasAfter) for (const v of [a, b]) delete v.model;
        expect(b, name).toEqual(a);
      }
      expect(Object.values(alone.plan.layers).flat().length).toBeGreaterThan(0);
    }
    await expect(runFairnessPruning(llama, { ...settings, estimator: 'pooled', analysis, outDir: join(tmp, 'other') })).rejects.toThrow(/estimator "positionwise".*"pooled"/);
    const otherWeights = { ...analysis, model: { ...analysis.model, weightsHash: 'f'.repeat(64) } };
    await expect(runFairnessPruning(llama, { ...settings, analysis: otherWeights, outDir: join(tmp, 'other') })).rejects.toThrow(
      /made on weights with hash ffffffffffff…, .*model\.onnx has [0-9a-f]{12}…/,
    );
    await expect(runFairnessPruning(llama, { ...settings, importance: 'l2', analysis, outDir: join(tmp, 'other') })).rejects.toThrow(/no "l2" importance/);
  });
});
