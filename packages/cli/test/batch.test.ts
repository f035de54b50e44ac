import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { paretoFront } from '../src/report/sweep.js';
import { launchChromium, pageProblems } from './report-browser.js';
import { fixtureDir } from '@fairprune/fixtures';
import { runCli } from './run-cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'fairprune-cli-batch-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const launcher = join(import.meta.dirname, 'helpers/fairprune-from-source.mjs');


/** The pids still running after up to 5 s (signalled processes get that long to exit). */
async function stillAlive(pids: readonly number[]): Promise<number[]> {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 50 && pids.some(alive); i++) await sleep(100);
  return pids.filter(alive);
}
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
    // The sweep page, in headless Chromium: one chart for the model, one linked point per configuration, offline.
    const browser = await launchChromium(join(tmp, 'profile'));
    try {
      const page = await browser.newPage();
      const problems = pageProblems(page);
      await page.route(/^(?!file:)/, (route) => {
        problems.push(`network request ${route.request().url()}`);
        return route.abort();
      });
      await page.goto(pathToFileURL(join(out, 'index.html')).href, { waitUntil: 'load' });
      expect(await page.locator('svg.chart#sweep-llama').count()).toBe(1);
      const points = page.locator('svg#sweep-llama .point');
      expect(await points.count()).toBe(2);
      // More neurons removed cost more parameters; a point is on the front unless another beats it on both axes.
      expect(await page.locator('svg#sweep-llama .point.pareto').count()).toBeGreaterThanOrEqual(1);
      const hrefs = await page.locator('svg#sweep-llama a.run-link').evaluateAll((links) => links.map((a) => a.getAttribute('href')!));
      for (const href of hrefs) expect(existsSync(join(out, href)), href).toBe(true);
      await page.locator('svg#sweep-llama a.run-link').first().click();
      await page.waitForLoadState('load');
      expect(await page.title()).toMatch(/^Fairness pruning: llama\/fraction-/);
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }

    const status = await runCli('batch', 'status', out);
    expect(status.stdout).toMatch(/^batch 3\/3 done/);
    const missing = await runCli('batch', 'status', join(tmp, 'nothing'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/batch\.json: cannot read the batch plan/);
  });
});

test('SIGTERM to `batch run` stops its workers, which hand their tasks back; a rerun finishes', async () => {
  const { spawn } = await import('node:child_process');
  const job = join(tmp, 'term.yaml');
  writeFileSync(job, `models:\n  - path: ${fixtureDir('llama')}\n  - path: ${fixtureDir('qwen2')}\ngrid:\n  fraction: [0.05, 0.1]\n  importance: [maw, ppm]\n`);
  const out = join(tmp, 'term-out');
  const runner = spawn(process.execPath, [launcher, 'batch', 'run', job, '--out', out, '--workers', '2'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  runner.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => runner.on('close', (code) => resolve(code)));
  // Once a run task is under way, stop the sweep.
  while (!existsSync(join(out, 'state', 'events.jsonl')) || !readFileSync(join(out, 'state', 'events.jsonl'), 'utf8').includes('"runs/')) await sleep(20);
  runner.kill('SIGTERM');
  expect(await exited).toBe(143);
  const pids = [...stderr.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
  expect(pids).toHaveLength(2);
  expect(await stillAlive(pids)).toEqual([]);
  const { readdirSync } = await import('node:fs');
  for (const folder of ['runs', 'analysis']) {
    expect(readdirSync(join(out, folder), { recursive: true, encoding: 'utf8' }).filter((n) => n.includes('.fairprune-tmp') || n.includes('.fairprune-lock'))).toEqual([]);
  }
  const rerun = spawnSync(process.execPath, [launcher, 'batch', 'run', job, '--out', out, '--workers', '2'], { encoding: 'utf8' });
  expect(rerun.status, rerun.stderr).toBe(0);
  expect(rerun.stderr).toMatch(/batch 10\/10 done/);
});

test('the Pareto front keeps the points no other beats on both bias reduction and ability loss', () => {
  // (loss, reduction): (1, 10) beats (2, 5); (3, 20) is alone at the top; (1, 10) and (0.5, 2) trade off.
  const points = [
    { x: 1, y: 10 },
    { x: 2, y: 5 },
    { x: 3, y: 20 },
    { x: 0.5, y: 2 },
    { x: 1, y: 10 },
  ];
  expect([...paretoFront(points)].sort()).toEqual([0, 2, 3, 4]);
});

describe('fairprune batch on a queue', () => {
  test('`worker --queue --workers 2` starts two worker processes; `batch run --queue` submits and waits; SIGTERM stops every worker process', async () => {
    const { spawn } = await import('node:child_process');
    const { createServer } = await import('node:net');
      const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    await new Promise((resolve) => server.close(resolve));
    const redisDir = mkdtempSync(join(tmp, 'redis-'));
    const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', redisDir, '--appendonly', 'yes', '--save', ''], { stdio: 'ignore' });
    const url = `redis://127.0.0.1:${port}/0`;
    const job = join(tmp, 'queue.yaml');
    writeFileSync(job, `models:\n  - path: ${fixtureDir('qwen2')}\ngrid:\n  fraction: [0.05, 0.1]\n`);
    let worker: ReturnType<typeof spawn> | undefined;
    try {
      for (let i = 0; i < 50 && spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() !== 'PONG'; i++) await sleep(100);
      let workerErr = '';
      worker = spawn(process.execPath, [launcher, 'worker', '--queue', url, '--workers', '2', '--id', 'cli'], { stdio: ['ignore', 'ignore', 'pipe'] });
      worker.stderr!.on('data', (chunk: Buffer) => (workerErr += chunk.toString()));
      const out = join(tmp, 'queue-out');
      const detached = spawnSync(process.execPath, [launcher, 'batch', 'run', job, '--out', out, '--queue', url, '--detach'], { encoding: 'utf8' });
      expect(detached.status).toBe(0);
      expect(detached.stderr).toMatch(/the queue holds 4 job\(s\)/);
      const run = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [launcher, 'batch', 'run', job, '--out', out, '--queue', url], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.on('close', (code) => resolve({ code, stderr }));
      });
      expect(run.stderr).toMatch(/the queue holds 4 job\(s\)/);
      expect(run.code).toBe(0);
      expect((JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { rows: unknown[] }).rows).toHaveLength(2);
      expect(workerErr).toMatch(/started cli-w0 \(cpu, pid \d+\), cli-w1 \(cpu, pid \d+\)/);
      const exited = new Promise((resolve) => worker!.on('close', resolve));
      worker.kill('SIGTERM');
      await exited;
      // The SIGTERM reached both worker processes.
      const pids = [...workerErr.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
      expect(pids).toHaveLength(2);
      expect(await stillAlive(pids)).toEqual([]);
    } finally {
      worker?.kill('SIGKILL');
      redis.kill('SIGKILL');
    }
  });
});
