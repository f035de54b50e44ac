import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DelayedError, FlowProducer, Queue, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { canonicalJson, type AnalysisTask, type BatchPlan, type RunTask } from './plan.js';
import { deviceMemory } from './devices.js';
import { HEARTBEAT_MS, readBatchPlan, readFailures, recordEvent, taskDone, taskKey, writeHeartbeat } from './state.js';
import type { WorkerPlacement } from './tasks.js';
import { attemptTask } from './worker.js';

/** The BullMQ queue every fairprune batch uses (the Redis URL's database separates installations). */
export const QUEUE_NAME = 'fairprune-batch';
/**
 * A job's lock lasts this long without renewal: a worker killed mid-task loses its job to another after about this
 * long (plus the stalled-check interval). ORT runs block the event loop that renews it, so it is generous.
 */
export const QUEUE_LOCK_MS = 60_000;
/** How often workers look for stalled jobs. */
export const QUEUE_STALLED_CHECK_MS = 5_000;
/** How often a task held by another worker is looked at again. */
const HELD_RECHECK_MS = 500;
/** A job whose model does not fit this worker's device goes back to the queue for this long, for a worker it fits. */
export const QUEUE_DEFER_MS = 5_000;

/** What a queued job carries: the batch folder (shared filesystem) and the task. */
export interface QueueJobData {
  /** Absolute batch folder. */
  dir: string;
  /** `analysis` or `run`. */
  kind: 'analysis' | 'run';
  /** {@link AnalysisTask.id} or {@link RunTask.id}. */
  task: string;
}

/** A Redis connection from `redis://host:port/db` (BullMQ needs no request retry limit). */
export function redisConnection(url: string): Redis {
  if (!/^rediss?:\/\//.test(url)) throw new Error(`--queue: "${url}" is not a redis:// or rediss:// URL`);
  return new Redis(url, { maxRetriesPerRequest: null });
}

const hashId = (value: string) => createHash('sha256').update(value).digest('hex').slice(0, 32);

/** A run's job id: from its model's weights hash and its configuration, so submitting the same sweep again adds nothing. */
export function runJobId(plan: BatchPlan, run: RunTask): string {
  const model = plan.models.find((m) => m.name === run.model)!;
  return `run-${hashId(JSON.stringify([model.weightsHash, model.dir, run.id, canonicalJson(run.config)]))}`;
}

/**
 * Puts a planned batch on the queue: one flow per run, whose child is its model's analysis (BullMQ runs a parent after
 * its children). A child has one parent, so each run has its own analysis job; they all produce the one shared
 * artifact, which the first computes under its output lock and the others find done. Job ids are idempotent.
 * @returns how many jobs the queue holds for this batch afterwards.
 */
export async function submitToQueue(plan: BatchPlan, dir: string, url: string): Promise<number> {
  const connection = redisConnection(url);
  const flows = new FlowProducer({ connection: connection as ConnectionOptions });
  const attempts = plan.retries + 1;
  const backoff = { type: 'exponential', delay: plan.retryDelayMs } as const;
  try {
    for (const run of plan.runs) {
      const runId = runJobId(plan, run);
      await flows.add({
        name: 'run',
        queueName: QUEUE_NAME,
        data: { dir, kind: 'run', task: run.id } satisfies QueueJobData,
        opts: { jobId: runId, attempts, backoff },
        children: [
          {
            name: 'analysis',
            queueName: QUEUE_NAME,
            data: { dir, kind: 'analysis', task: run.analysis } satisfies QueueJobData,
            // Analyses first: they unblock every run of their model.
            opts: { jobId: `analysis-${run.analysis}-${runId}`, attempts, backoff, failParentOnFailure: true, priority: 1 },
          },
        ],
      });
    }
    const queue = new Queue(QUEUE_NAME, { connection: connection as ConnectionOptions });
    try {
      return Object.values(await queue.getJobCounts()).reduce((a, b) => a + b, 0);
    } finally {
      await queue.close();
    }
  } finally {
    await flows.close();
    connection.disconnect();
  }
}

function findTask(plan: BatchPlan, data: QueueJobData): AnalysisTask | RunTask {
  const task = data.kind === 'analysis' ? plan.analyses.find((a) => a.id === data.task) : plan.runs.find((r) => r.id === data.task);
  if (!task) throw new Error(`Queued ${data.kind} task ${data.task} is not in ${data.dir}/batch.json`);
  return task;
}

/**
 * Runs one queued task: done already → nothing; held by another live worker (a stalled job's first taker still
 * running, or a sibling analysis job) → waits for it; else runs it under its output lock, recording events and failures.
 */
export async function processQueuedTask(data: QueueJobData, workerId: string, placement: WorkerPlacement): Promise<'done' | 'already done'> {
  const plan = readBatchPlan(data.dir);
  const task = findTask(plan, data);
  const key = taskKey(task);
  const beat = (current: string | null) => writeHeartbeat(data.dir, { id: workerId, device: placement.device, task: current, done: 0, exited: false }).catch(() => {});
  await beat(key);
  // While it works, so that workers on other hosts can tell it from a dead one.
  const timer = setInterval(() => void beat(key), HEARTBEAT_MS);
  try {
    return await runHeld();
  } finally {
    clearInterval(timer);
    await beat(null);
  }

  async function runHeld(): Promise<'done' | 'already done'> {
    for (;;) {
      if (taskDone(data.dir, task)) return 'already done';
      // Sibling analysis jobs share one task: once it has used up its attempts, they do not start it again.
      const failures = readFailures(data.dir, key);
      if (failures.length > plan.retries) throw new Error(`${key} failed ${failures.length} times, last: ${failures.at(-1)!.message}`);
      const outcome = await attemptTask(plan, task, data.dir, placement, workerId);
      if (outcome === 'done') return 'done';
      // BullMQ retries a failed job after its backoff.
      if (outcome !== 'held') throw outcome.failed;
      await sleep(HELD_RECHECK_MS);
    }
  }
}

/** Options of {@link runQueueWorker}. */
export interface QueueWorkerOptions extends WorkerPlacement {
  /** `redis://host:port/db`. */
  queue: string;
  /** Worker id, for events and failures. */
  id: string;
  /** Aborted: stop taking jobs, let the current one finish, then return. */
  signal?: AbortSignal;
  /** BullMQ job lock duration, milliseconds. Default {@link QUEUE_LOCK_MS}. */
  lockMs?: number;
  /** Memory of this worker's device, bytes: jobs of models that need more go back to the queue. Default: {@link deviceMemory}. */
  memoryBytes?: number;
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

/** The memory a queued task's model needs, from its batch plan, with the task's key (undefined when the plan cannot be read: the task itself reports that). */
function neededMemory(data: QueueJobData): { bytes: number; task: string } | undefined {
  try {
    const plan = readBatchPlan(data.dir);
    const task = findTask(plan, data);
    const model = plan.models.find((m) => m.name === task.model);
    return model ? { bytes: model.memoryBytes, task: taskKey(task) } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes tasks from the BullMQ queue until `signal` is aborted (one at a time). A worker killed mid-task leaves its job
 * to stall; another worker takes it after {@link QUEUE_LOCK_MS}, and the output protocol removes the killed one's temp.
 */
export async function runQueueWorker(options: QueueWorkerOptions): Promise<void> {
  const connection = redisConnection(options.queue);
  const placement: WorkerPlacement = { device: options.device, ...(options.threads !== undefined ? { threads: options.threads } : {}), ...(options.onProgress ? { onProgress: options.onProgress } : {}) };
  const memory = options.memoryBytes ?? deviceMemory(options.device);
  const worker = new Worker<QueueJobData>(QUEUE_NAME, async (job: Job<QueueJobData>, token?: string) => {
    const need = neededMemory(job.data);
    if (memory !== undefined && need !== undefined && need.bytes > memory) {
      // Back to the queue, not an attempt: a worker whose device fits takes it.
      recordEvent(job.data.dir, { worker: options.id, task: need.task, event: 'deferred', message: `needs ${gib(need.bytes)}, ${options.device} has ${gib(memory)}` });
      await job.moveToDelayed(Date.now() + QUEUE_DEFER_MS, token);
      throw new DelayedError();
    }
    return processQueuedTask(job.data, options.id, placement);
  }, {
    connection: connection as ConnectionOptions,
    concurrency: 1,
    lockDuration: options.lockMs ?? QUEUE_LOCK_MS,
    stalledInterval: QUEUE_STALLED_CHECK_MS,
    // A kill is not the task's fault: the task's own failures are counted by attempts.
    maxStalledCount: 10,
  });
  // Connection errors while Redis restarts are retried by ioredis; without a listener they would throw.
  worker.on('error', (error) => options.onProgress?.(`queue: ${error.message}`));
  await new Promise<void>((resolve) => {
    if (options.signal?.aborted) resolve();
    options.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  await worker.close();
  connection.disconnect();
}
