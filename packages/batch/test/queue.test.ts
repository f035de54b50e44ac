import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, test } from 'vitest';
import { Queue, type ConnectionOptions } from 'bullmq';
import { DATA, fixtureDir } from '@fairprune/fixtures';
import { QUEUE_NAME, redisConnection } from '../src/queue.js';
import { runBatch, type BatchRunEvent } from '../src/run.js';
import { readEvents } from '../src/state.js';

const tmp = mkdtempSync(join(tmpdir(), 'fairprune-batch-queue-'));
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await sleep(200);
  rmSync(tmp, { recursive: true, force: true });
});
const launcher = join(import.meta.dirname, 'helpers/worker-from-source.mjs');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A real redis-server on a loopback port, AOF on (every write fsynced), data in `dir`. */
async function startRedis(port: number, dir: string): Promise<ChildProcess> {
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], { stdio: 'ignore' });
  children.push(redis);
  const client = redisConnection(`redis://127.0.0.1:${port}/0`);
  // Refused connections until it is up are expected; ping says when it is.
  client.on('error', () => {});
  try {
    for (let i = 0; i < 100; i++) {
      try {
        if ((await client.ping()) === 'PONG') return redis;
      } catch {
        // not up yet
      }
      await sleep(100);
    }
  } finally {
    client.disconnect();
  }
  throw new Error(`redis-server did not answer on port ${port}`);
}

function startWorker(url: string, id: string): ChildProcess {
  const child = spawn(process.execPath, [launcher, '--queue', url, '--id', id, '--device', 'cpu', '--threads', '1', '--lock-ms', '3000'], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.resume();
  children.push(child);
  return child;
}

describe('batch on BullMQ + Redis', () => {
  test('one submitter, two workers: idempotent submits, a worker killed mid-task, Redis restarted mid-sweep, every task done once', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}/0`;
    const redisDir = mkdtempSync(join(tmp, 'redis-'));
    let redis = await startRedis(port, redisDir);
    const base = mkdtempSync(join(tmp, 'sweep-'));
    const file = join(base, 'jobs.yaml');
    writeFileSync(
      file,
      `models:\n  - path: ${relative(base, fixtureDir('llama'))}\n  - path: ${relative(base, fixtureDir('qwen2'))}\npairs: builtin:seed\nevalPairs: ${relative(base, DATA.behaviour)}\n` +
        `grid:\n  fraction: [0.05, 0.1]\n  importance: [maw, ppm]\neval:\n  tasks: [boolq]\n  data: { boolq: ${relative(base, DATA.boolqMini)} }\n  limit: 4\nretryDelayMs: 200\n`,
    );
    const out = join(base, 'out');

    // Submitting twice adds nothing: 8 runs, each with its analysis child.
    const first = await runBatch(file, { out, queue: url, detach: true });
    const second = await runBatch(file, { out, queue: url, detach: true });
    expect(first.queuedJobs).toBe(16);
    expect(second.queuedJobs).toBe(16);

    const workers = [startWorker(url, 'qa'), startWorker(url, 'qb')];
    const runsDir = join(out, 'runs');
    let killed: { pid: number; task: string } | undefined;
    let restarted = false;
    const watch = setInterval(() => {
      if (!killed && existsSync(runsDir)) {
        for (const entry of readdirSync(runsDir, { recursive: true, encoding: 'utf8' })) {
          if (!entry.endsWith('.result.json.fairprune-lock')) continue;
          try {
            const lock = JSON.parse(readFileSync(join(runsDir, entry), 'utf8')) as { pid: number };
            if (!workers.some((w) => w.pid === lock.pid)) continue;
            process.kill(lock.pid, 'SIGKILL');
            killed = { pid: lock.pid, task: join('runs', entry.split('/').slice(0, 2).join('/')) };
            break;
          } catch {
            // The lock went away between the listing and the read.
          }
        }
      }
    }, 10);
    const progress: BatchRunEvent[] = [];
    const waiting = runBatch(file, { out, queue: url, pollMs: 200, onEvent: (e) => progress.push(e) });
    // Restart Redis (SIGKILL: only the AOF keeps the queue) once the sweep is under way.
    while (readEvents(out).filter((e) => e.event === 'done').length < 4) await sleep(50);
    redis.kill('SIGKILL');
    await new Promise((resolve) => redis.once('exit', resolve));
    await sleep(500);
    redis = await startRedis(port, redisDir);
    restarted = true;
    const result = await waiting;
    clearInterval(watch);

    expect(restarted).toBe(true);
    expect(killed).toBeDefined();
    expect(result.status.done).toBe(10);
    expect(result.status.failed).toEqual([]);
    expect(result.summary!.rows).toHaveLength(8);
    expect(progress.some((e) => e.type === 'progress')).toBe(true);
    const events = readEvents(out);
    for (const task of new Set(events.map((e) => e.task))) expect(events.filter((e) => e.task === task && e.event === 'done'), task).toHaveLength(1);
    expect(new Set(events.map((e) => e.task)).size).toBe(10);
    // The other worker finished the killed one's task (the kill may land before the killed one recorded its claim).
    const killedId = workers[0]!.pid === killed!.pid ? 'qa' : 'qb';
    const ofKilled = events.filter((e) => e.task === killed!.task);
    expect(ofKilled.filter((e) => e.event === 'done').map((e) => e.worker)).toEqual([killedId === 'qa' ? 'qb' : 'qa']);
    expect(readdirSync(join(out, 'analysis')).filter((n) => !n.startsWith('.'))).toHaveLength(2);
    for (const folder of ['runs', 'analysis']) {
      expect(readdirSync(join(out, folder), { recursive: true, encoding: 'utf8' }).filter((n) => n.includes('.fairprune-tmp') || n.includes('.fairprune-lock'))).toEqual([]);
    }

    // The queue kept every job through the restart, and a third submit still adds nothing.
    const connection = redisConnection(url);
    const queue = new Queue(QUEUE_NAME, { connection: connection as ConnectionOptions });
    try {
      for (let i = 0; i < 100 && (await queue.getJobCounts('completed')).completed! < 16; i++) await sleep(100);
      expect(await queue.getJobCounts('completed', 'failed', 'waiting', 'active')).toEqual({ completed: 16, failed: 0, waiting: 0, active: 0, paused: 0 });
    } finally {
      await queue.close();
      connection.disconnect();
    }
    expect((await runBatch(file, { out, queue: url, detach: true })).queuedJobs).toBe(16);
  }, 300_000);

  test('a failing task is retried by BullMQ with its backoff, each failure recorded; the waiting submitter ends with it failed', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}/0`;
    const redis = await startRedis(port, mkdtempSync(join(tmp, 'redis-fail-')));
    const base = mkdtempSync(join(tmp, 'fail-'));
    const file = join(base, 'jobs.yaml');
    // Removing neurons of layer 0 only cannot be written to the fixture's safetensors: that run fails every time.
    writeFileSync(file, `models:\n  - path: ${fixtureDir('llama')}\nconfigurations:\n  - fraction: 0.1\n  - layers: [0]\n    fraction: 0.1\nretries: 1\nretryDelayMs: 300\n`);
    const out = join(base, 'out');
    const worker = startWorker(url, 'qf');
    try {
      const result = await runBatch(file, { out, queue: url, pollMs: 200 });
      expect(result.status.done).toBe(2);
      expect(result.status.failed).toHaveLength(1);
      const [failed] = result.status.failed;
      expect(failed!.task).toMatch(/^runs\/llama\/fraction-0\.1_layers-0-/);
      expect(failed!.failures.map((f) => f.worker)).toEqual(['qf', 'qf']);
      for (const failure of failed!.failures) expect(failure.message).toMatch(/pruning only layers 0 of \d+ leaves the others wider/);
      expect(Date.parse(failed!.failures[1]!.time) - Date.parse(failed!.failures[0]!.time)).toBeGreaterThanOrEqual(300);
      expect(result.summary!.rows).toHaveLength(1);
    } finally {
      worker.kill('SIGKILL');
      redis.kill('SIGKILL');
    }
  }, 120_000);

  test('a job whose model needs more memory than the worker\'s device goes back to the queue, not run; the others are', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}/0`;
    const redis = await startRedis(port, mkdtempSync(join(tmp, 'redis-memory-')));
    const base = mkdtempSync(join(tmp, 'memory-'));
    const file = join(base, 'jobs.yaml');
    writeFileSync(file, `models:\n  - path: ${fixtureDir('llama')}\n    memoryGiB: 1000000\n  - path: ${fixtureDir('qwen2')}\nconfigurations:\n  - fraction: 0.1\n`);
    const out = join(base, 'out');
    const worker = startWorker(url, 'qm');
    const connection = redisConnection(url);
    const queue = new Queue(QUEUE_NAME, { connection: connection as ConnectionOptions });
    try {
      await runBatch(file, { out, queue: url, detach: true });
      const deferred = () => readEvents(out).filter((e) => e.event === 'deferred');
      const qwenDone = () => readEvents(out).some((e) => e.event === 'done' && e.task.startsWith('runs/qwen2/'));
      for (let i = 0; i < 300 && !(qwenDone() && deferred().length > 0); i++) await sleep(100);
      const [first] = deferred();
      expect(first).toMatchObject({ worker: 'qm', task: expect.stringMatching(/^analysis\//), message: expect.stringMatching(/^needs 1000000\.0 GiB, cpu has [\d.]+ GiB$/) });
      // Only qwen2's analysis and run were claimed.
      const claimed = readEvents(out).filter((e) => e.event === 'claimed').map((e) => e.task);
      expect(claimed).toHaveLength(2);
      expect(claimed[0]).toMatch(/^analysis\//);
      expect(claimed[0]).not.toBe(first!.task);
      expect(claimed[1]).toMatch(/^runs\/qwen2\//);
      expect((await queue.getJobCounts('delayed')).delayed).toBeGreaterThanOrEqual(1);
    } finally {
      await queue.close();
      connection.disconnect();
      worker.kill('SIGKILL');
      redis.kill('SIGKILL');
    }
  }, 120_000);
});
