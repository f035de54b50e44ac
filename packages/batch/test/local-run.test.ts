import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ARTIFACTS, loadPairs, runFairnessPruning } from '@fairprune/core';
import { evaluate } from '@fairprune/eval';
import { DATA, fixtureDir } from '@fairprune/fixtures';
import { runBatch, type BatchRunEvent } from '../src/run.js';
import { planBatch } from '../src/plan.js';
import { batchStatus, claimPath, readEvents } from '../src/state.js';
import type { BatchSummary } from '../src/summary.js';
import type { RunResult } from '../src/tasks.js';

const tmp = mkdtempSync(join(tmpdir(), 'fairprune-batch-local-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const worker = [process.execPath, join(import.meta.dirname, 'helpers/worker-from-source.mjs')];

/** 2 fixture models × 4 configurations, held-out pairs, BoolQ on 4 documents. */
function writeJob(base: string): string {
  const file = join(base, 'jobs.yaml');
  writeFileSync(
    file,
    `models:
  - path: ${relative(base, fixtureDir('llama'))}
  - path: ${relative(base, fixtureDir('qwen2'))}
pairs: builtin:seed
evalPairs: ${relative(base, DATA.behaviour)}
grid:
  fraction: [0.05, 0.1]
  importance: [maw, ppm]
eval:
  tasks: [boolq]
  data: { boolq: ${relative(base, DATA.boolqMini)} }
  limit: 4
`,
  );
  return file;
}

/** Every path under `dir` (names only), to look for leftovers. */
function allEntries(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' });
}

const planWithoutTime = (path: string) => {
  const plan = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  delete plan['createdAt'];
  return plan;
};

/** Kills (SIGKILL) the first process seen holding a run task's claim under `out`; `killed` says whom and which task. */
function killFirstRunHolder(out: string): { killed?: { pid: number; task: string }; stop: () => void } {
  const runsDir = join(out, 'runs');
  const state: { killed?: { pid: number; task: string }; stop: () => void } = { stop: () => clearInterval(watch) };
  const watch = setInterval(() => {
    if (state.killed || !existsSync(runsDir)) return;
    for (const entry of readdirSync(runsDir, { recursive: true, encoding: 'utf8' })) {
      if (!entry.endsWith('.result.json.fairprune-lock')) continue;
      try {
        const lock = JSON.parse(readFileSync(join(runsDir, entry), 'utf8')) as { pid: number };
        process.kill(lock.pid, 'SIGKILL');
        state.killed = { pid: lock.pid, task: join('runs', entry.split('/').slice(0, 2).join('/')) };
        return;
      } catch {
        // The lock went away between the listing and the read: look again.
      }
    }
  }, 10);
  return state;
}

describe('batch run on this machine', () => {
  test('2 models × 4 configurations on 2 CPU workers: one analysis per model, every output complete, values equal to separate runs', async () => {
    const base = mkdtempSync(join(tmp, 'sweep-'));
    const out = join(base, 'out');
    const events: BatchRunEvent[] = [];
    const result = await runBatch(writeJob(base), { out, workers: 2, workerCommand: worker, pollMs: 200, onEvent: (e) => events.push(e) });
    expect(result.status.done).toBe(10);
    expect(result.status.failed).toEqual([]);
    // One analysis per model, each done once.
    const analyses = readdirSync(join(out, 'analysis')).filter((n) => !n.startsWith('.'));
    expect(analyses).toHaveLength(2);
    const done = readEvents(out).filter((e) => e.event === 'done');
    expect(done.filter((e) => e.task.startsWith('analysis/'))).toHaveLength(2);
    expect(done).toHaveLength(10);
    // Both workers worked; progress was reported.
    expect(new Set(done.map((e) => e.worker))).toEqual(new Set(['w0', 'w1']));
    expect(events.some((e) => e.type === 'progress')).toBe(true);

    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as BatchSummary;
    expect(summary.rows).toHaveLength(8);
    expect(summary.missing).toEqual([]);
    const csv = readFileSync(join(out, 'summary.csv'), 'utf8').trim().split('\n');
    expect(csv).toHaveLength(9);
    expect(csv[0]).toContain('boolq_acc_delta');
    for (const row of summary.rows) {
      for (const name of [ARTIFACTS.plan, ARTIFACTS.biasBefore, ARTIFACTS.biasAfter, ARTIFACTS.neuronScores, ARTIFACTS.modelCard, ARTIFACTS.marker, 'onnx/model.onnx']) {
        expect(existsSync(join(out, row.output, name)), `${row.output}/${name}`).toBe(true);
      }
    }
    expect(allEntries(out).filter((n) => n.includes('.fairprune-tmp') || n.includes('.fairprune-lock'))).toEqual([]);

    // Separate `prune` and `eval` runs of one configuration per model give the same plan and values.
    const pairs = await loadPairs('builtin:seed');
    const evalPairs = await loadPairs(DATA.behaviour);
    for (const [model, config] of [['llama', { fraction: 0.1, importance: 'ppm' as const }], ['qwen2', { fraction: 0.05, importance: 'maw' as const }]] as const) {
      const row = summary.rows.find((r) => r.model === model && r.config.fraction === config.fraction && r.config.importance === config.importance)!;
      const alone = await runFairnessPruning(fixtureDir(model), {
        pairs,
        pairsSource: 'builtin:seed',
        evalPairs,
        evalPairsSource: DATA.behaviour,
        ...config,
        outDir: join(base, `alone-${model}`),
      });
      expect(planWithoutTime(join(out, row.output, ARTIFACTS.plan))).toEqual(planWithoutTime(alone.files.plan));
      expect(readFileSync(join(out, row.output, ARTIFACTS.neuronScores), 'utf8')).toBe(readFileSync(alone.files.neuronScores, 'utf8'));
      expect(row.biasBefore).toBe(alone.before.metric!.overall.mean_difference);
      expect(row.biasAfter).toBe(alone.after!.metric!.overall.mean_difference);
      expect(row.neuronsRemoved).toBe(Object.values(alone.plan.layers).flat().length);
      expect(row.parametersRemoved).toBe(alone.plan.parameters.before - alone.plan.parameters.after);
      const gaps = (report: typeof alone.before) => report.eval!.behaviour.map((b) => b.gap);
      expect(row.heldOutBefore!.gap).toBeCloseTo(gaps(alone.before).reduce((a, b) => a + b) / gaps(alone.before).length, 12);
      expect(row.heldOutAfter!.gap).toBeCloseTo(gaps(alone.after!).reduce((a, b) => a + b) / gaps(alone.after!).length, 12);
      for (const [dir, side] of [[fixtureDir(model), 'before'], [alone.outDir, 'after']] as const) {
        const evaluated = await evaluate({ model: dir, task: 'boolq', data: { file: DATA.boolqMini }, limit: 4 });
        expect(row.eval.boolq![side]).toBe(evaluated.results.boolq!.acc);
        expect(row.eval.boolq![`${side}Stderr`]).toBe(evaluated.results.boolq!.acc_stderr);
      }
    }
  });

  test('a worker killed with SIGKILL mid-task: the other finishes its task, which is done once; a rerun redoes nothing', async () => {
    const base = mkdtempSync(join(tmp, 'kill-'));
    const out = join(base, 'out');
    const killer = killFirstRunHolder(out);
    const exits: BatchRunEvent[] = [];
    let startedWorkers: { id: string; pid: number }[] = [];
    let first;
    try {
      first = await runBatch(writeJob(base), {
        out,
        workers: 2,
        workerCommand: worker,
        pollMs: 200,
        onEvent: (e) => {
          if (e.type === 'worker-exit') exits.push(e);
          if (e.type === 'started') startedWorkers = e.workers;
        },
      });
    } finally {
      killer.stop();
    }
    const killed = killer.killed;
    expect(killed).toBeDefined();
    expect(exits.some((e) => e.type === 'worker-exit' && e.signal === 'SIGKILL')).toBe(true);
    expect(first.status.done).toBe(10);
    const events = readEvents(out);
    // The other worker finished the killed one's task (the kill may land before the killed one recorded its claim).
    const killedId = startedWorkers.find((w) => w.pid === killed!.pid)!.id;
    const ofKilled = events.filter((e) => e.task === killed!.task);
    expect(ofKilled.filter((e) => e.event === 'done').map((e) => e.worker)).toEqual([killedId === 'w0' ? 'w1' : 'w0']);
    for (const task of new Set(events.map((e) => e.task))) expect(events.filter((e) => e.task === task && e.event === 'done'), task).toHaveLength(1);
    // Nothing partial of any task is visible (a heartbeat the kill cut short may leave its own lock under state/).
    for (const folder of ['runs', 'analysis']) expect(allEntries(join(out, folder)).filter((n) => n.includes('.fairprune-tmp') || n.includes('.fairprune-lock'))).toEqual([]);
    const result = JSON.parse(readFileSync(join(out, killed!.task, 'result.json'), 'utf8')) as RunResult;
    expect(result.task).toBe(killed!.task.replace(/^runs\//, ''));

    const mtime = statSync(join(out, killed!.task, 'result.json')).mtimeMs;
    const second = await runBatch(writeJob(base), { out, workers: 2, workerCommand: worker, pollMs: 200 });
    expect(second.status.done).toBe(10);
    expect(readEvents(out)).toHaveLength(events.length);
    expect(statSync(join(out, killed!.task, 'result.json')).mtimeMs).toBe(mtime);
    expect(second.summary!.rows).toEqual(first.summary!.rows);
  });

  test('the only worker killed with SIGKILL mid-task: the run stops short, a rerun takes the dead claim over and finishes, the task done once', async () => {
    const base = mkdtempSync(join(tmp, 'kill-alone-'));
    const out = join(base, 'out');
    const killer = killFirstRunHolder(out);
    try {
      await expect(runBatch(writeJob(base), { out, workers: 1, workerCommand: worker, pollMs: 200 })).rejects.toThrow(/The workers stopped with \d+ task\(s\) not done: .*runs\/.*; run again to resume/);
    } finally {
      killer.stop();
    }
    const killed = killer.killed!;
    const before = readEvents(out);
    const doneBefore = new Set(before.filter((e) => e.event === 'done').map((e) => e.task));
    // Nothing partial visible: the claim (lock) of the dead worker is there, no result, and no temp of a result.
    expect(existsSync(join(out, killed.task, 'result.json'))).toBe(false);
    // Status names the dead claim as such.
    expect(batchStatus(out).running).toEqual([{ task: killed.task, owner: `pid ${killed.pid} on ${hostname()}`, alive: false }]);
    const second = await runBatch(writeJob(base), { out, workers: 1, workerCommand: worker, pollMs: 200 });
    expect(second.status.done).toBe(10);
    const after = readEvents(out).slice(before.length);
    // The rerun did only what was not done, the killed task among them, each once.
    expect(after.filter((e) => e.event === 'claimed').map((e) => e.task).filter((t) => doneBefore.has(t))).toEqual([]);
    expect(after.filter((e) => e.event === 'done' && e.task === killed.task)).toHaveLength(1);
    const all = readEvents(out);
    for (const task of new Set(all.map((e) => e.task))) expect(all.filter((e) => e.task === task && e.event === 'done'), task).toHaveLength(1);
    for (const folder of ['runs', 'analysis']) expect(allEntries(join(out, folder)).filter((n) => n.includes('.fairprune-tmp') || n.includes('.fairprune-lock'))).toEqual([]);
  });
});

describe('failed tasks', () => {
  test('are retried up to the job\'s retries with their messages recorded, then given up; the other runs finish', async () => {
    const base = mkdtempSync(join(tmp, 'fail-'));
    const file = join(base, 'jobs.yaml');
    // Removing neurons of layer 0 only cannot be written to the fixture's safetensors: that run fails every time.
    writeFileSync(file, `models:\n  - path: ${fixtureDir('llama')}\nconfigurations:\n  - fraction: 0.1\n  - layers: [0]\n    fraction: 0.1\nretries: 1\nretryDelayMs: 100\n`);
    const out = join(base, 'out');
    const result = await runBatch(file, { out, workers: 1, workerCommand: worker, pollMs: 200 });
    expect(result.status.done).toBe(2);
    expect(result.status.failed).toHaveLength(1);
    const [failed] = result.status.failed;
    expect(failed!.task).toMatch(/^runs\/llama\/fraction-0\.1_layers-0-[0-9a-f]{8}$/);
    expect(failed!.failures).toHaveLength(2);
    for (const failure of failed!.failures) expect(failure.message).toMatch(/pruning only layers 0 of \d+ leaves the others wider/);
    // The retry waited for the delay.
    expect(Date.parse(failed!.failures[1]!.time) - Date.parse(failed!.failures[0]!.time)).toBeGreaterThanOrEqual(100);
    expect(result.summary!.rows).toHaveLength(1);
    expect(result.summary!.missing).toEqual([failed!.task.replace(/^runs\//, '')]);
    // Nothing of the failed run is left, not even its folder.
    expect(existsSync(join(out, failed!.task))).toBe(false);
  });
});

describe('placement by memory', () => {
  test('tasks of a model that needs more memory than any device has are not run and are named; the others finish', async () => {
    const base = mkdtempSync(join(tmp, 'memory-'));
    const file = join(base, 'jobs.yaml');
    writeFileSync(file, `models:\n  - path: ${fixtureDir('llama')}\n    memoryGiB: 1000000\n  - path: ${fixtureDir('qwen2')}\ngrid:\n  fraction: [0.1]\n`);
    const out = join(base, 'out');
    const events: BatchRunEvent[] = [];
    await expect(runBatch(file, { out, workers: 1, workerCommand: worker, pollMs: 200, onEvent: (e) => events.push(e) })).rejects.toThrow(
      new RegExp(`2 task\\(s\\) fit no device and were not run: analysis/[0-9a-f]{16} \\(llama needs 1000000\\.0 GiB, the largest device \\(cpu\\) has ${(totalmem() / 2 ** 30).toFixed(1)} GiB\\); runs/llama/fraction-0\\.1-[0-9a-f]{8} \\(llama needs`),
    );
    expect(events.find((e) => e.type === 'unplaceable')).toMatchObject({ tasks: [{ task: expect.stringMatching(/^analysis\//) }, { task: expect.stringMatching(/^runs\/llama\//) }] });
    expect(readEvents(out).map((e) => e.task).filter((t) => t.includes('llama'))).toEqual([]);
    expect(existsSync(join(out, 'runs', 'qwen2'))).toBe(true);
    expect((JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as BatchSummary).rows.map((r) => r.model)).toEqual(['qwen2']);
  });
});

/** Writes the heartbeat file argv[1] (the fields argv[2] and the time) every argv[3] ms for argv[4] ms, printing each beat's time. */
const HEARTBEAT_WRITER = `
const [path, fields, every, lasting] = process.argv.slice(1);
const beat = () => {
  const heartbeat = new Date().toISOString();
  require('node:fs').writeFileSync(path, JSON.stringify({ ...JSON.parse(fields), heartbeat }));
  process.stdout.write(heartbeat + '\\n');
};
beat();
const timer = setInterval(beat, Number(every));
setTimeout(() => clearInterval(timer), Number(lasting));
`;

describe('claims from another host', () => {
  test('a claim whose holder on another host keeps its heartbeat is left alone; once the heartbeat stops for claimTimeoutMs it is released and the task done once', async () => {
    const base = mkdtempSync(join(tmp, 'foreign-'));
    const file = join(base, 'jobs.yaml');
    writeFileSync(file, `models:\n  - path: ${fixtureDir('llama')}\nconfigurations:\n  - fraction: 0.1\nclaimTimeoutMs: 1000\n`);
    const out = join(base, 'out');
    const plan = await planBatch(file);
    const [run] = plan.runs;
    // A worker on another host holds the run: its lock, and its heartbeat, refreshed by this test for 3 s.
    const lock = { pid: 4242, host: 'other-host.invalid', command: 'batch run', started: new Date().toISOString() };
    mkdirSync(dirname(claimPath(out, run!)), { recursive: true });
    writeFileSync(claimPath(out, run!), `${JSON.stringify(lock)}\n`);
    mkdirSync(join(out, 'state', 'workers'), { recursive: true });
    // The remote heartbeat comes from a process of its own, as another host's would: a stall of this test process
    // (the coordinator runs here, on a shared 2-core machine) must not make it look silent.
    const fields = { id: 'remote', pid: 4242, host: lock.host, device: 'cpu', task: run!.output, done: 0, exited: false };
    const remote = spawn(process.execPath, ['-e', HEARTBEAT_WRITER, join(out, 'state', 'workers', 'remote.json'), JSON.stringify(fields), '200', '3000']);
    let lastBeat = '';
    remote.stdout.on('data', (chunk: Buffer) => (lastBeat = chunk.toString().trim().split('\n').at(-1)!));
    const beating = new Promise((resolve) => remote.on('exit', resolve));
    await new Promise((resolve) => remote.stdout.once('data', resolve));
    const result = await runBatch(file, { out, workers: 1, workerCommand: worker, pollMs: 200 });
    await beating;
    expect(result.status.done).toBe(2);
    const events = readEvents(out).filter((e) => e.task === run!.output);
    expect(events.map((e) => e.event)).toEqual(['released', 'claimed', 'done']);
    expect(events[0]!.message).toMatch(/pid 4242 on other-host\.invalid sent no heartbeat for 1000 ms/);
    // Not released while the heartbeat went on, nor before it had been silent for the timeout.
    expect(Date.parse(events[0]!.time)).toBeGreaterThanOrEqual(Date.parse(lastBeat) + 1000);
    expect(Date.parse(events[0]!.time) - Date.parse(lock.started)).toBeGreaterThanOrEqual(3000);
    expect(existsSync(join(out, run!.output, 'result.json'))).toBe(true);
  });
});
