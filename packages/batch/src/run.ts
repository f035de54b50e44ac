import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeJsonOutput } from '@fairprune/core';
import type { BatchJob } from './job.js';
import { deviceMemory, visibleGpus } from './devices.js';
import { planBatch, type BatchPlan } from './plan.js';
import { submitToQueue } from './queue.js';
import { batchStatus, taskKey, type BatchStatus } from './state.js';
import { writeSummary, type BatchSummary } from './summary.js';
import { BATCH_FILES } from './tasks.js';

/** What {@link runBatch} reports while it runs. */
export type BatchRunEvent =
  | {
      /** Tasks planned and written to `batch.json`. */
      type: 'planned';
      /** The plan. */
      plan: BatchPlan;
    }
  | {
      /** Workers started. */
      type: 'started';
      /** Device of each worker. */
      workers: { id: string; device: string; threads?: number; pid: number }[];
    }
  | {
      /** Every poll: where the batch stands, and the estimated time left (null until a task finished in this run). */
      type: 'progress';
      /** The status. */
      status: BatchStatus;
      /** Estimated milliseconds left. */
      etaMs: number | null;
    }
  | {
      /** A worker process exited. */
      type: 'worker-exit';
      /** Worker id. */
      id: string;
      /** Exit code, null when killed by a signal. */
      code: number | null;
      /** The signal. */
      signal: NodeJS.Signals | null;
      /** The end of its log (`state/logs/<id>.log`). */
      stderr: string;
    }
  | {
      /** Tasks no device can hold: they are left undone and named at the end. */
      type: 'unplaceable';
      /** Each task and why. */
      tasks: { task: string; reason: string }[];
    }
  | {
      /** Submitted to the queue. */
      type: 'submitted';
      /** Jobs the queue holds afterwards. */
      queuedJobs: number;
    }
  | {
      /** Done: summary written. */
      type: 'finished';
      /** Final status. */
      status: BatchStatus;
      /** The summary written. */
      summary: BatchSummary;
    };

/** Options of {@link runBatch}. */
export interface RunBatchOptions {
  /** The batch folder (state and outputs). Default: the job's `out`. */
  out?: string;
  /** Devices, one worker each: `cpu`, `cuda:N`. Default: every GPU `nvidia-smi -L` lists, else one CPU worker per `workers`. */
  devices?: string[];
  /** CPU workers when no devices are given (the cores are split between them). Default 1. */
  workers?: number;
  /** Command line that starts one worker; gets `--dir DIR --id ID --device DEV [--threads N]` appended. Default: this package's worker script. */
  workerCommand?: string[];
  /** Never download hub models. */
  offline?: boolean;
  /** How often progress is read, milliseconds. Default 1000. */
  pollMs?: number;
  /** Progress and lifecycle events. */
  onEvent?: (event: BatchRunEvent) => void;
  /** Planning progress lines. */
  onProgress?: (message: string) => void;
  /** `redis://host:port/db`: put the tasks on the BullMQ queue there (for `fairprune worker --queue` processes) instead of starting workers. */
  queue?: string;
  /** With `queue`: only submit, do not wait. */
  detach?: boolean;
  /** Aborted: SIGTERM to every worker process (each hands its task back), then the run ends as the workers exit. */
  signal?: AbortSignal;
}

/** Result of {@link runBatch}. */
export interface BatchRunResult {
  /** The batch folder. */
  dir: string;
  /** Final status. */
  status: BatchStatus;
  /** The summary written; absent when detached. */
  summary?: BatchSummary;
  /** With `queue`: jobs the queue holds after submitting. */
  queuedJobs?: number;
}

/** The worker script of this package (built: dist/worker-main.js). */
const DEFAULT_WORKER = fileURLToPath(new URL('./worker-main.js', import.meta.url));

/** A progress event; the ETA extrapolates the rate of the tasks finished since `started` (`startDone` were done before). */
function progressEvent(status: BatchStatus, startDone: number, started: number): BatchRunEvent {
  const finishedHere = status.done - startDone;
  const left = status.total - status.done - status.failed.length;
  return { type: 'progress', status, etaMs: finishedHere > 0 ? ((Date.now() - started) / finishedHere) * left : null };
}

/** The tasks whose model needs more memory than any of the devices has, with the reason. */
export function unplaceableTasks(plan: BatchPlan, devices: readonly string[]): { task: string; reason: string }[] {
  const memories = devices.map((d) => ({ device: d, bytes: deviceMemory(d) }));
  const known = memories.filter((m): m is { device: string; bytes: number } => m.bytes !== undefined);
  // A device whose memory is unknown might fit anything.
  if (known.length < memories.length || known.length === 0) return [];
  const largest = known.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  return [...plan.analyses, ...plan.runs].flatMap((task) => {
    const model = plan.models.find((m) => m.name === task.model)!;
    return model.memoryBytes > largest.bytes ? [{ task: taskKey(task), reason: `${model.name} needs ${gib(model.memoryBytes)}, the largest device (${largest.device}) has ${gib(largest.bytes)}` }] : [];
  });
}

/** One worker per device; CPU workers split the cores. */
export function placeWorkers(options: Pick<RunBatchOptions, 'devices' | 'workers'>): WorkerPlacementSpec[] {
  const devices = options.devices ?? (options.workers === undefined ? visibleGpus() : []);
  const list = devices.length > 0 ? devices : Array.from({ length: options.workers ?? 1 }, () => 'cpu');
  for (const device of list) if (!/^(cpu|cuda:\d+)$/.test(device)) throw new Error(`--devices: "${device}" is not cpu or cuda:N`);
  const cpuWorkers = list.filter((d) => d === 'cpu').length;
  const threads = Math.max(1, Math.floor(availableParallelism() / Math.max(1, cpuWorkers)));
  return list.map((device, index) => ({ id: `w${index}`, device, ...(device === 'cpu' ? { threads } : {}) }));
}

/** A started worker process. */
export interface WorkerProcess {
  /** Where it runs. */
  placement: WorkerPlacementSpec;
  /** Its process id. */
  pid: number;
  /** The process. */
  child: ChildProcess;
  /** Resolves when it exited. */
  exited: Promise<void>;
}

/** A worker's id, device and threads, as {@link placeWorkers} gives them. */
export interface WorkerPlacementSpec {
  /** Worker id. */
  id: string;
  /** `cpu` or `cuda:N`. */
  device: string;
  /** onnxruntime intra-op threads (CPU workers). */
  threads?: number;
}

/**
 * Starts one worker process per placement: `command` plus `source` (`--dir DIR` or `--queue URL`) and the placement's
 * `--id --device [--threads]`; a GPU worker sees only its GPU (`CUDA_VISIBLE_DEVICES`). Its stderr goes to
 * `logDir/<id>.log` (a file outlives this process, so a worker never writes into a closed pipe), or to this
 * process's stderr without `logDir`.
 */
export function startWorkerProcesses(
  command: readonly string[],
  source: readonly string[],
  placements: readonly WorkerPlacementSpec[],
  onExit: (exit: { id: string; code: number | null; signal: NodeJS.Signals | null; stderr: string }) => void,
  logDir?: string,
): WorkerProcess[] {
  if (logDir !== undefined) mkdirSync(logDir, { recursive: true });
  return placements.map((placement) => {
    const args = [...command.slice(1), ...source, '--id', placement.id, '--device', placement.device, ...(placement.threads !== undefined ? ['--threads', String(placement.threads)] : [])];
    const env = { ...process.env, ...(placement.device.startsWith('cuda:') ? { CUDA_VISIBLE_DEVICES: placement.device.slice(5) } : {}) };
    const log = logDir === undefined ? undefined : join(logDir, `${placement.id}.log`);
    const fd = log === undefined ? undefined : openSync(log, 'a');
    const child = spawn(command[0]!, args, { env, stdio: ['ignore', 'ignore', fd ?? 'inherit'] });
    if (fd !== undefined) closeSync(fd);
    return {
      placement,
      pid: child.pid ?? -1,
      child,
      exited: new Promise<void>((resolveExit) =>
        child.on('close', (code, signal) => {
          onExit({ id: placement.id, code, signal, stderr: log === undefined ? '' : tail(log) });
          resolveExit();
        }),
      ),
    };
  });
}

/** The last 4000 characters of a log file. */
function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').slice(-4000);
  } catch {
    return '';
  }
}

/**
 * Runs a sweep on this machine: plans it, writes `batch.json`, starts one worker process per device, reports
 * progress until they exit, then writes `summary.json` and `summary.csv`. Rerunning on the same folder skips finished
 * tasks, takes over tasks of dead workers, and retries failed ones (up to the job's retries).
 * @throws when the workers exit with tasks neither done nor given up.
 */
export async function runBatch(job: BatchJob | string, options: RunBatchOptions = {}): Promise<BatchRunResult> {
  const emit = options.onEvent ?? (() => {});
  const plan = await planBatch(job, { ...(options.offline ? { offline: true } : {}), ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
  const outRoot = options.out ?? (typeof job === 'string' ? undefined : job.out);
  if (outRoot === undefined) throw new Error('No batch folder: give --out (or `out:` in the job file)');
  const dir = resolve(outRoot);
  await writeJsonOutput(join(dir, BATCH_FILES.plan), plan, 'batch');
  emit({ type: 'planned', plan });
  if (options.queue !== undefined) return runOnQueue(plan, dir, options.queue, options);

  const command = options.workerCommand ?? [process.execPath, DEFAULT_WORKER];
  const placements = placeWorkers(options);
  const unplaceable = unplaceableTasks(plan, [...new Set(placements.map((p) => p.device))]);
  if (unplaceable.length > 0) emit({ type: 'unplaceable', tasks: unplaceable });
  const startDone = batchStatus(dir, plan).done;
  const started = Date.now();
  const exits = startWorkerProcesses(command, ['--dir', dir], placements, (exit) => emit({ type: 'worker-exit', ...exit }), join(dir, 'state', 'logs'));
  emit({ type: 'started', workers: exits.map((e) => ({ ...e.placement, pid: e.pid })) });
  const stop = () => exits.forEach((e) => e.child.kill('SIGTERM'));
  options.signal?.addEventListener('abort', stop, { once: true });
  const report = () => emit(progressEvent(batchStatus(dir, plan), startDone, started));
  const timer = setInterval(report, options.pollMs ?? 1000);
  try {
    await Promise.all(exits.map((e) => e.exited));
  } finally {
    clearInterval(timer);
    options.signal?.removeEventListener('abort', stop);
  }
  const status = batchStatus(dir, plan);
  const summary = await writeSummary(dir, plan);
  emit({ type: 'finished', status, summary });
  const skipped = new Set(unplaceable.map((u) => u.task));
  const unfinished = [...status.pending, ...status.running.map((r) => r.task)].filter((t) => !skipped.has(t));
  if (unfinished.length > 0) throw new Error(`The workers stopped with ${unfinished.length} task(s) not done: ${unfinished.join(', ')}; run again to resume`);
  if (unplaceable.length > 0) {
    throw new Error(`${unplaceable.length} task(s) fit no device and were not run: ${unplaceable.map((u) => `${u.task} (${u.reason})`).join('; ')}; add a larger device, or set the model's memoryGiB in the job file if the estimate is wrong`);
  }
  return { dir, status, summary };
}

/** Submits to the queue and, unless detached, reports progress from the batch folder until every task is done or failed for good. */
async function runOnQueue(plan: BatchPlan, dir: string, url: string, options: RunBatchOptions): Promise<BatchRunResult> {
  const emit = options.onEvent ?? (() => {});
  const queuedJobs = await submitToQueue(plan, dir, url);
  emit({ type: 'submitted', queuedJobs });
  if (options.detach) return { dir, status: batchStatus(dir, plan), queuedJobs };
  const startDone = batchStatus(dir, plan).done;
  const started = Date.now();
  for (;;) {
    const status = batchStatus(dir, plan);
    if (status.pending.length === 0 && status.running.length === 0) break;
    emit(progressEvent(status, startDone, started));
    await sleep(options.pollMs ?? 1000);
  }
  const status = batchStatus(dir, plan);
  const summary = await writeSummary(dir, plan);
  emit({ type: 'finished', status, summary });
  return { dir, status, summary, queuedJobs };
}
