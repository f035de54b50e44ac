import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { lockHolderAlive, readJsonFile, readMarker, siblingName, writeJsonOutput, type OutputLock } from '@fairprune/core';
import type { AnalysisTask, BatchPlan, RunTask } from './plan.js';
import { BATCH_FILES } from './tasks.js';

/** Where a batch keeps its state, besides the task outputs. */
const STATE = {
  events: join('state', 'events.jsonl'),
  workers: join('state', 'workers'),
  failures: join('state', 'failures'),
} as const;

/** A line of `state/events.jsonl`: what happened to which task, when, on which worker. */
export interface BatchEvent {
  /** ISO time. */
  time: string;
  /** Worker id. */
  worker: string;
  /** Task key: `analysis/<id>` or `runs/<model>/<config>`. */
  task: string;
  /** What happened. */
  event: 'claimed' | 'done' | 'failed' | 'released' | 'deferred';
  /** The failure's message, why a stale claim was released, or why a queue worker left the task to others. */
  message?: string;
}

/** One failed attempt of a task. */
export interface TaskFailure {
  /** ISO time. */
  time: string;
  /** Worker id. */
  worker: string;
  /** The error's message. */
  message: string;
}

/** What a worker last said about itself (`state/workers/<id>.json`, rewritten every heartbeat). */
export interface WorkerHeartbeat {
  /** Worker id. */
  id: string;
  /** Process id. */
  pid: number;
  /** Host name. */
  host: string;
  /** Device. */
  device: string;
  /** Task key being run, if any. */
  task: string | null;
  /** ISO time of this heartbeat. */
  heartbeat: string;
  /** Tasks it finished. */
  done: number;
  /** Whether it exited (no more tasks, or stopped). */
  exited: boolean;
}

/** How often a worker rewrites its heartbeat while it works. */
export const HEARTBEAT_MS = 1000;

/** A task's key: its output folder relative to the batch folder. */
export const taskKey = (task: AnalysisTask | RunTask): string => task.output;

/** Whether a task's output is complete. */
export function taskDone(dir: string, task: AnalysisTask | RunTask): boolean {
  return 'config' in task ? existsSync(join(dir, task.output, BATCH_FILES.result)) : readMarker(join(dir, task.output)) !== undefined;
}

/** The output whose lock is a task's claim: a run's `result.json`, an analysis's folder. */
export function claimOutput(dir: string, task: AnalysisTask | RunTask): string {
  return 'config' in task ? join(dir, task.output, BATCH_FILES.result) : join(dir, task.output);
}

/** The lock file that is a task's claim (the output protocol's lock of the task's output). */
export function claimPath(dir: string, task: AnalysisTask | RunTask): string {
  const output = claimOutput(dir, task);
  return join(dirname(output), siblingName(basename(output), 'lock'));
}

/**
 * The lock of a task's claim when its holder is on another host and gone: no heartbeat from that process (host and
 * pid) in this batch folder for `timeoutMs`, and the lock itself older than that. (Dead holders on this host are the
 * output protocol's to take over, by pid.)
 */
export function staleForeignClaim(dir: string, task: AnalysisTask | RunTask, timeoutMs: number): OutputLock | undefined {
  const path = claimPath(dir, task);
  let lock: OutputLock;
  let age: number;
  try {
    lock = readJsonFile(path) as OutputLock;
    age = Date.now() - statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
  if (typeof lock?.pid !== 'number' || typeof lock.host !== 'string' || lock.host === hostname() || age < timeoutMs) return undefined;
  const beat = readHeartbeats(dir).find((b) => b.host === lock.host && b.pid === lock.pid);
  return beat && Date.now() - Date.parse(beat.heartbeat) < timeoutMs ? undefined : lock;
}

/** Appends one event (one short line: a single append). */
export function recordEvent(dir: string, event: Omit<BatchEvent, 'time'>): void {
  mkdirSync(join(dir, 'state'), { recursive: true });
  appendFileSync(join(dir, STATE.events), `${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`);
}

/** Every event so far. */
export function readEvents(dir: string): BatchEvent[] {
  try {
    return readFileSync(join(dir, STATE.events), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as BatchEvent);
  } catch {
    return [];
  }
}

const failureFile = (dir: string, key: string) => join(dir, STATE.failures, `${key.replace(/[\\/]/g, '__')}.json`);

/** The recorded failures of a task. */
export function readFailures(dir: string, key: string): TaskFailure[] {
  try {
    return readJsonFile(failureFile(dir, key)) as TaskFailure[];
  } catch {
    return [];
  }
}

/** Records one failure (under the task's claim, so no other writer races it). */
export async function recordFailure(dir: string, key: string, failure: TaskFailure): Promise<void> {
  await writeJsonOutput(failureFile(dir, key), [...readFailures(dir, key), failure], 'batch');
}

/** Writes a worker's heartbeat. */
export async function writeHeartbeat(dir: string, beat: Omit<WorkerHeartbeat, 'pid' | 'host' | 'heartbeat'>): Promise<void> {
  const full: WorkerHeartbeat = { ...beat, pid: process.pid, host: hostname(), heartbeat: new Date().toISOString() };
  await writeJsonOutput(join(dir, STATE.workers, `${beat.id}.json`), full, 'batch');
}

/** Every worker's last heartbeat. */
export function readHeartbeats(dir: string): WorkerHeartbeat[] {
  const folder = join(dir, STATE.workers);
  if (!existsSync(folder)) return [];
  return readdirSync(folder)
    .filter((name) => name.endsWith('.json') && !name.startsWith('.'))
    .flatMap((name) => {
      try {
        return [readJsonFile(join(folder, name)) as WorkerHeartbeat];
      } catch {
        return [];
      }
    });
}

/** Where a batch stands. */
export interface BatchStatus {
  /** Tasks in the plan (analyses and runs). */
  total: number;
  /** Tasks complete. */
  done: number;
  /** Tasks that failed every attempt, with their failures. */
  failed: { task: string; failures: TaskFailure[] }[];
  /** Tasks whose claim (lock) is there, and by whom; `alive` false when its process on this host is gone (the next worker takes it over), null for another host. */
  running: { task: string; owner: string; alive: boolean | null }[];
  /** Tasks neither done, given up nor running. */
  pending: string[];
  /** Workers' last heartbeats. */
  workers: WorkerHeartbeat[];
}

/** Reads the plan a batch folder runs. */
export function readBatchPlan(dir: string): BatchPlan {
  const path = join(dir, BATCH_FILES.plan);
  try {
    return readJsonFile(path) as BatchPlan;
  } catch (error) {
    throw new Error(`${path}: cannot read the batch plan (is ${dir} a batch folder written by \`fairprune batch run\`?): ${(error as Error).message}`);
  }
}

/** Where each task of a batch folder stands. */
export function batchStatus(dir: string, plan: BatchPlan = readBatchPlan(dir)): BatchStatus {
  const status: BatchStatus = { total: 0, done: 0, failed: [], running: [], pending: [], workers: readHeartbeats(dir) };
  for (const task of [...plan.analyses, ...plan.runs]) {
    status.total++;
    const key = taskKey(task);
    if (taskDone(dir, task)) {
      status.done++;
      continue;
    }
    // A run whose analysis failed for good fails with it.
    const analysis = 'config' in task ? plan.analyses.find((a) => a.id === task.analysis) : undefined;
    const analysisFailures = analysis && !taskDone(dir, analysis) ? readFailures(dir, taskKey(analysis)) : [];
    const failures = analysisFailures.length > plan.retries ? analysisFailures : readFailures(dir, key);
    let holder: OutputLock | undefined;
    try {
      holder = readJsonFile(claimPath(dir, task)) as OutputLock;
    } catch {
      holder = undefined;
    }
    if (holder) status.running.push({ task: key, owner: `pid ${holder.pid} on ${holder.host}`, alive: lockHolderAlive(holder) ?? null });
    else if (failures.length > plan.retries) status.failed.push({ task: key, failures });
    else status.pending.push(key);
  }
  return status;
}
