import { parentPort, workerData } from 'node:worker_threads';
import { ModelSession } from '@fairprune/core';
import { scoreRows } from './scoring.js';
import type { ScorerSessionOptions, WorkerReply, WorkerRequest } from './scorer.js';

/** Runs one ORT session in a worker thread and scores the batches the main thread sends. */
const port = parentPort;
if (!port) throw new Error('scorer-worker must run in a worker thread');
const { onnxPath, sessionOptions } = workerData as { onnxPath: string; sessionOptions: ScorerSessionOptions };
const post = (reply: WorkerReply) => port.postMessage(reply);

try {
  const session = await ModelSession.create(onnxPath, { ...sessionOptions, onFallback: () => {} });
  // Batches are handled one at a time, in order.
  let queue = Promise.resolve();
  port.on('message', ({ id, rows }: WorkerRequest) => {
    queue = queue.then(async () => {
      try {
        post({ type: 'scores', id, scores: await scoreRows(session, rows) });
      } catch (error) {
        post({ type: 'error', id, message: (error as Error).message });
      }
    });
  });
  post({ type: 'ready', device: session.device, fallbackReason: session.fallbackReason });
} catch (error) {
  post({ type: 'failed', message: (error as Error).message });
}
