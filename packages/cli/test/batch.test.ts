import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { fixtureDir } from '@fairprune/fixtures';
import { runCli } from './run-cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'fairprune-cli-batch-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const launcher = join(import.meta.dirname, 'helpers/fairprune-from-source.mjs');

describe('fairprune batch', () => {
  const job = join(tmp, 'jobs.yaml');
  writeFileSync(job, `models:\n  - path: ${fixtureDir('llama')}\ngrid:\n  fraction: [0.05, 0.1]\nretries: 0\n`);

  test('plan prints the runs and the analysis they share, and --json the plan', async () => {
    const text = await runCli('batch', 'plan', job);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/1 model\(s\), 1 shared analysis task\(s\), 2 run\(s\)/);
    expect(text.stdout).toMatch(/analysis [0-9a-f]{16}: llama .* — shared by 2 run\(s\)/);
    const json = await runCli('batch', 'plan', job, '--json');
    const plan = JSON.parse(json.stdout) as { runs: { config: { fraction: number } }[] };
    expect(plan.runs.map((r) => r.config.fraction)).toEqual([0.05, 0.1]);
  });

  test('a job file error names the line and field and exits 1', async () => {
    const bad = join(tmp, 'bad.yaml');
    writeFileSync(bad, `models:\n  - path: x\ngrid:\n  fraction: [2]\n`);
    const result = await runCli('batch', 'plan', bad);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${bad}:4: grid.fraction`);
  });

  test('run starts workers as `fairprune worker` processes, writes the summary, and status reports it', async () => {
    const out = join(tmp, 'out');
    const run = spawnSync(process.execPath, [launcher, 'batch', 'run', job, '--out', out, '--workers', '2'], { encoding: 'utf8' });
    expect(run.stderr).toMatch(/workers: w0 cpu \(\d+ threads\) pid \d+, w1 cpu/);
    expect(run.stderr).toMatch(/batch 3\/3 done/);
    expect(run.status).toBe(0);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { rows: unknown[] };
    expect(summary.rows).toHaveLength(2);
    const status = await runCli('batch', 'status', out);
    expect(status.stdout).toMatch(/^batch 3\/3 done/);
    const missing = await runCli('batch', 'status', join(tmp, 'nothing'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/batch\.json: cannot read the batch plan/);
  });
});
