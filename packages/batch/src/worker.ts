import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { OutputError, removeStaleLock } from '@fairprune/core';
import { deviceMemory } from './devices.js';
import type { AnalysisTask, BatchPlan, RunTask } from './plan.js';
import { claimOutput, claimPath, HEARTBEAT_MS, readBatchPlan, readFailures, recordEvent, recordFailure, staleForeignClaim, taskDone, taskKey, writeHeartbeat } from './state.js';
import { runAnalysisTask, runConfigurationTask, type TaskHooks, type WorkerPlacement } from './tasks.js';

/** Options of {@link runLocalWorker}. */
export interface LocalWorkerOptions extends WorkerPlacement {
  /** The batch folder (holds `batch.json`). */
  dir: string;
  /** Worker id, unique in the batch. */
  id: string;
  /** Aborted: finish the current task, then stop. */
  signal?: AbortSignal;
  /** Memory of this worker's device, bytes: tasks of models that need more are left to others. Default: {@link deviceMemory} (unlimited when unknown). */
  memoryBytes?: number;
}

/** A task another worker holds is looked at again after this long. */
const BUSY_RECHECK_MS = 500;

/** The run of a task, with the hooks given. */
export function runTask(plan: BatchPlan, task: AnalysisTask | RunTask, dir: string, placement: WorkerPlacement, hooks: TaskHooks): Promise<unknown> {
  return 'config' in task ? runConfigurationTask(plan, task, dir, placement, hooks) : runAnalysisTask(plan, task, dir, placement, hooks);
}

/** What one attempt at a task came to. */
export type AttemptOutcome = 'done' | 'held' | { failed: Error };

/**
 * One attempt at a task, recorded in the batch folder (`claimed`, `done`, `failed` events; failures with their
 * messages): `held` when another live process holds its claim, `failed` with the error when it failed under this
 * worker's claim (recorded before the claim was released).
 * @throws what kept it from being claimed at all, other than another holder.
 */
export async function attemptTask(plan: BatchPlan, task: AnalysisTask | RunTask, dir: string, placement: WorkerPlacement, workerId: string, onClaimed: () => void = () => {}): Promise<AttemptOutcome> {
  const key = taskKey(task);
  let claimed = false;
  try {
    await runTask(plan, task, dir, placement, {
      onClaimed: () => {
        claimed = true;
        onClaimed();
        recordEvent(dir, { worker: workerId, task: key, event: 'claimed' });
      },
      onFailed: async (error) => {
        const message = error instanceof Error ? error.message : String(error);
        recordEvent(dir, { worker: workerId, task: key, event: 'failed', message });
        await recordFailure(dir, key, { time: new Date().toISOString(), worker: workerId, message });
      },
    });
  } catch (error) {
    if (claimed) return { failed: error instanceof Error ? error : new Error(String(error)) };
    // Not claimed, and the output protocol names another writer or the lock is there: another live worker holds it.
    const held = error instanceof OutputError && /being written by another|keep taking it/.test(error.message);
    if (!held && !existsSync(claimPath(dir, task))) throw error;
    // Its holder on another host is gone: free the claim for the next attempt.
    const stale = staleForeignClaim(dir, task, plan.claimTimeoutMs);
    if (stale) {
      removeStaleLock(claimOutput(dir, task), stale);
      recordEvent(dir, { worker: workerId, task: key, event: 'released', message: `pid ${stale.pid} on ${stale.host} sent no heartbeat for ${plan.claimTimeoutMs} ms` });
    }
    return 'held';
  }
  recordEvent(dir, { worker: workerId, task: key, event: 'done' });
  return 'done';
}

/**
 * A worker on a batch folder: takes the next task nobody holds (analyses first, then the runs whose analysis is done),
 * runs it under the output protocol's lock (its claim; a dead holder's lock is taken over), records events and
 * failures, retries failed tasks with exponential backoff up to the plan's retries, and returns when every task is
 * done or given up. A heartbeat file says what it is doing.
 * @returns how many tasks it finished.
 */
export async function runLocalWorker(options: LocalWorkerOptions): Promise<number> {
  const { dir, id } = options;
  const plan = readBatchPlan(dir);
  const placement: WorkerPlacement = { device: options.device, ...(options.threads !== undefined ? { threads: options.threads } : {}), ...(options.onProgress ? { onProgress: options.onProgress } : {}) };
  let current: string | null = null;
  let done = 0;
  const beat = (exited = false) => writeHeartbeat(dir, { id, device: options.device, task: current, done, exited }).catch(() => {});
  await beat();
  const timer = setInterval(() => void beat(), HEARTBEAT_MS);
  const busySince = new Map<string, number>();
  const memory = options.memoryBytes ?? deviceMemory(options.device);
  const analysisOf = (task: RunTask) => plan.analyses.find((a) => a.id === task.analysis)!;

  /** The next task to try, 'wait' when only held or backing-off tasks remain, 'finished' when none can run. */
  const next = (): AnalysisTask | RunTask | 'wait' | 'finished' => {
    let waiting = false;
    const now = Date.now();
    for (const task of [...plan.analyses, ...plan.runs]) {
      const key = taskKey(task);
      if (taskDone(dir, task)) continue;
      if (memory !== undefined && plan.models.find((m) => m.name === task.model)!.memoryBytes > memory) continue;
      const failures = readFailures(dir, key);
      if (failures.length > plan.retries) continue;
      if ('config' in task) {
        const analysis = analysisOf(task);
        if (!taskDone(dir, analysis)) {
          // A run waits for its analysis unless the analysis has failed for good.
          if (readFailures(dir, taskKey(analysis)).length <= plan.retries) waiting = true;
          continue;
        }
      }
      const last = failures.at(-1);
      if (last && now < Date.parse(last.time) + plan.retryDelayMs * 2 ** (failures.length - 1)) {
        waiting = true;
        continue;
      }
      if (now - (busySince.get(key) ?? -Infinity) < BUSY_RECHECK_MS) {
        waiting = true;
        continue;
      }
      return task;
    }
    return waiting ? 'wait' : 'finished';
  };

  try {
    while (!options.signal?.aborted) {
      const task = next();
      if (task === 'finished') break;
      if (task === 'wait') {
        await sleep(BUSY_RECHECK_MS / 2);
        continue;
      }
      const key = taskKey(task);
      current = key;
      try {
        const outcome = await attemptTask(plan, task, dir, placement, id, () => void beat());
        if (outcome === 'done') done++;
        else if (outcome === 'held') busySince.set(key, Date.now());
        // A failure is recorded; the task is retried after its delay, by this worker or another.
      } finally {
        current = null;
      }
    }
  } finally {
    clearInterval(timer);
    await beat(true);
  }
  return done;
}
