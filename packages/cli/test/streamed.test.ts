import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { DATA, fixtureDir, readRefs } from '@fairprune/fixtures';
import { runCli } from './run-cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'fairprune-cli-streamed-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test('analyze --streamed: the optiPfair metric of the seed pair, measured one layer at a time', async () => {
  const expected = readRefs('gemma').optipfair_bias_metrics_pair0;
  const { code, stdout, stderr } = await runCli('analyze', fixtureDir('gemma'), '--streamed', '--json', '--eval-pairs', DATA.behaviour);
  expect(code).toBe(0);
  const report = JSON.parse(stdout) as { metric: { overall: { mean_difference: number } }; eval: { behaviour: unknown[] } };
  expect(Math.abs(report.metric.overall.mean_difference / expected.overall_mean_difference - 1)).toBeLessThan(1e-4);
  expect(report.eval.behaviour).toHaveLength(4);
  expect(stderr).toMatch(/streamed, one layer at a time/);
  expect(stderr).toMatch(/layer 4 of 4/);
});

test('prune --streamed writes the pruned folder with both reports', async () => {
  const out = join(tmp, 'pruned');
  const { code, stdout } = await runCli('prune', fixtureDir('llama'), '--streamed', '--out', out, '--fraction', '0.1', '--json');
  expect(code).toBe(0);
  const result = JSON.parse(stdout) as { layers: Record<string, number[]> };
  expect(Object.values(result.layers).flat().length).toBeGreaterThan(0);
  for (const file of ['onnx/model.onnx', 'bias-report.before.json', 'bias-report.after.json']) expect(existsSync(join(out, file)), file).toBe(true);
});
