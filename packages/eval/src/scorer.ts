import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ModelSession, SegmentedModel, type ModelSessionOptions } from '@fairprune/core';
import { scoreContinuation, scoreRows, type RowScores, type ScoringRow } from './scoring.js';

/** Where the forward passes run. `worker` keeps the calling thread free (progress bars, signals) while ORT works. */
export type ScorerThread = 'worker' | 'main';

/** The serialisable part of ModelSessionOptions (a worker cannot receive callbacks). */
export type ScorerSessionOptions = Omit<ModelSessionOptions, 'onFallback' | 'externalData'>;

export interface RowScorer {
  /** The execution provider the session ended up on, and why it fell back to CPU if it did. */
  readonly device: string;
  readonly fallbackReason: string | undefined;
  /** True when a second batch may be submitted before the first resolves (the worker queues it). */
  readonly pipelined: boolean;
  score(rows: ScoringRow[]): Promise<RowScores[]>;
  close(): Promise<void>;
}

const compiledWorker = new URL('./scorer-worker.js', import.meta.url);

/**
 * `worker` when the compiled worker module sits next to this one (the built package); `main` when running from
 * TypeScript sources (e.g. under vitest), where a worker thread could not load them.
 */
export function defaultScorerThread(): ScorerThread {
  return existsSync(fileURLToPath(compiledWorker)) ? 'worker' : 'main';
}

export async function openScorer(
  onnxPath: string,
  sessionOptions: ScorerSessionOptions,
  thread: ScorerThread = defaultScorerThread(),
  workerUrl: URL = compiledWorker,
): Promise<RowScorer> {
  return thread === 'main' ? openMainThreadScorer(onnxPath, sessionOptions) : openWorkerScorer(onnxPath, sessionOptions, workerUrl);
}

async function openMainThreadScorer(onnxPath: string, sessionOptions: ScorerSessionOptions): Promise<RowScorer> {
  const session = await ModelSession.create(onnxPath, { ...sessionOptions, onFallback: () => {} });
  return {
    device: session.device,
    fallbackReason: session.fallbackReason,
    pipelined: false,
    score: (rows) => scoreRows(session, rows),
    close: () => session.release(),
  };
}

/**
 * A scorer that runs the model one decoder layer at a time ({@link SegmentedModel}): each batch of rows goes through
 * the prefix, every layer's segment and the suffix, with one segment's weights loaded at a time, so a batch should
 * hold as many rows as the memory budget allows. Rows of equal length share a forward; none is padded, so each
 * row's log-likelihoods are those of the whole-model scorer.
 */
export function openSegmentedScorer(onnxPath: string, sessionOptions: ScorerSessionOptions): RowScorer {
  const model = SegmentedModel.open(onnxPath, {
    ...(sessionOptions.config ? { config: sessionOptions.config } : {}),
    ...(sessionOptions.threads !== undefined ? { threads: sessionOptions.threads } : {}),
    ...(sessionOptions.device ? { device: sessionOptions.device } : {}),
    onFallback: () => {},
  });
  return {
    // The CUDA fallback happens when the first segment opens, so the device is known after the first batch.
    get device() {
      return model.fallbackReason || sessionOptions.device !== 'cuda' ? 'cpu' : 'cuda';
    },
    get fallbackReason() {
      return model.fallbackReason;
    },
    pipelined: false,
    async score(rows) {
      const scores: RowScores[] = new Array(rows.length);
      await model.run(
        rows.map((row) => row.input),
        {
          onLogits: (i, logits, vocab) => {
            const row = rows[i]!;
            scores[i] = row.continuations.map((continuation) => scoreContinuation(logits, 0, vocab, row.input.length, continuation));
          },
        },
      );
      return scores;
    },
    close: async () => model.close(),
  };
}

/** Messages between the scorer and its worker (see scorer-worker.ts). */
export type WorkerRequest = { id: number; rows: ScoringRow[] };
export type WorkerReply =
  | { type: 'ready'; device: string; fallbackReason: string | undefined }
  | { type: 'failed'; message: string }
  | { type: 'scores'; id: number; scores: RowScores[] }
  | { type: 'error'; id: number; message: string };

async function openWorkerScorer(onnxPath: string, sessionOptions: ScorerSessionOptions, workerUrl: URL): Promise<RowScorer> {
  const worker = new Worker(workerUrl, { workerData: { onnxPath, sessionOptions } });
  const pending = new Map<number, { resolve: (s: RowScores[]) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  let failure: Error | undefined;
  const failAll = (error: Error) => {
    failure ??= error;
    for (const { reject } of pending.values()) reject(error);
    pending.clear();
  };
  const ready = new Promise<{ device: string; fallbackReason: string | undefined }>((resolve, reject) => {
    worker.on('message', (reply: WorkerReply) => {
      if (reply.type === 'ready') resolve(reply);
      else if (reply.type === 'failed') reject(new Error(reply.message));
      else {
        const waiter = pending.get(reply.id);
        pending.delete(reply.id);
        if (reply.type === 'scores') waiter?.resolve(reply.scores);
        else waiter?.reject(new Error(reply.message));
      }
    });
    worker.on('error', (error) => {
      reject(error);
      failAll(error);
    });
    worker.on('exit', (code) => {
      const error = new Error(`the scoring worker exited (code ${code})`);
      reject(error);
      failAll(error);
    });
  });
  let info;
  try {
    info = await ready;
  } catch (error) {
    await worker.terminate();
    throw error;
  }
  return {
    device: info.device,
    fallbackReason: info.fallbackReason,
    pipelined: true,
    score(rows) {
      if (failure) return Promise.reject(failure);
      const id = nextId++;
      return new Promise<RowScores[]>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, rows } satisfies WorkerRequest);
      });
    },
    async close() {
      worker.removeAllListeners('exit');
      await worker.terminate();
    },
  };
}
