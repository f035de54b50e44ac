import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { fixtureDir } from '@fairprune/fixtures';
import type { BiasReport, PairProjection, PruneResult, PruningPlan } from '../src/index.js';

const example = join(import.meta.dirname, '../examples/analyze-and-prune.mjs');
// The example is plain JavaScript so users can run it with node; vitest runs the same file against the sources.
const { analyzeAndPrune } = (await import(example)) as {
  analyzeAndPrune(
    modelDir: string,
    outDir: string,
    options?: { fraction?: number; log?: (line: string) => void },
  ): Promise<{ before: BiasReport; after?: BiasReport; plan: PruningPlan; files: PruneResult['files']; projection?: PairProjection }>;
};
const llama = fixtureDir('llama');
const work = mkdtempSync(join(tmpdir(), 'fairprune-example-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

test('the example uses nothing but the public API of @fairprune/core', () => {
  const imports = [...readFileSync(example, 'utf8').matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
  expect(imports).toEqual(['node:url', '@fairprune/core']);
});

test('the example analyzes and prunes the planted-bias Llama and says what it did', async () => {
  const lines: string[] = [];
  const outDir = join(work, 'pruned');
  const result = await analyzeAndPrune(llama, outDir, { log: (line: string) => lines.push(line) });

  const refs = JSON.parse(readFileSync(join(llama, 'refs/refs.json'), 'utf8')) as { optipfair_bias_metrics_pair0: { overall_mean_difference: number } };
  expect(result.before.metric!.overall.mean_difference).toBeCloseTo(refs.optipfair_bias_metrics_pair0.overall_mean_difference, 5);
  expect(lines[0]).toBe(`bias metric before: ${result.before.metric!.overall.mean_difference.toFixed(5)} (optiPfair mean_difference)`);

  // fraction 0.02 of 256 neurons → floor(5.12) = 5 per layer, and the written model is 5 neurons narrower.
  expect(Object.values(result.plan.layers).map((l) => l.length)).toEqual([5, 5, 5, 5]);
  const config = JSON.parse(readFileSync(join(outDir, 'config.json'), 'utf8')) as { intermediate_size: number };
  expect(config.intermediate_size).toBe(251);
  for (const file of Object.values(result.files)) expect(existsSync(file)).toBe(true);
  const written = JSON.parse(readFileSync(result.files.after!, 'utf8')) as { metric: { overall: { mean_difference: number } } };
  expect(written.metric.overall.mean_difference).toBe(result.after!.metric!.overall.mean_difference);
  expect(result.after!.metric!.overall.mean_difference).toBeLessThan(result.before.metric!.overall.mean_difference);

  expect(result.projection?.links.filter((l) => l.differs)).toEqual([{ a: 2, b: 2, differs: true }]);
  expect(lines.at(-1)).toMatch(/^PCA of mlp_output_layer_\d: \d+\.\d% \+ \d+\.\d% of the variance; differing tokens:  Black\/ white$/);
});
