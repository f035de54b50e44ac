import type { ModelSession } from '@fairprune/core';
import type { LoglikelihoodResult } from './tasks.js';

/**
 * One model input and the continuations scored on it. Requests whose inputs are identical share a row (BoolQ's
 * " no" / " yes" after the same context: the harness's logits cache does the same, with identical results).
 */
export interface ScoringRow {
  input: number[];
  /** Each continuation's tokens; its last `length` positions of `input` (shifted by one) predict it. */
  continuations: number[][];
}

/** The log-prob and greedy check of every continuation on a row. */
export type RowScores = LoglikelihoodResult[];

/**
 * Scores a batch of rows in one forward pass: rows are right-padded (token 0, attention mask 0) to the longest;
 * padding sits after every real token, so with a causal model it cannot change their logits.
 */
export async function scoreRows(session: ModelSession, rows: readonly ScoringRow[]): Promise<RowScores[]> {
  if (rows.length === 0) return [];
  const width = Math.max(...rows.map((r) => r.input.length));
  const padded = rows.map((r) => (r.input.length === width ? r.input : [...r.input, ...new Array<number>(width - r.input.length).fill(0)]));
  const feeds = session.initialFeeds(padded);
  if (rows.some((r) => r.input.length < width)) {
    if (!session.needsAttentionMask) throw new Error('this model takes no attention_mask, so batches of different lengths cannot be padded; use --batch-size 1');
    // initialFeeds gives a mask of ones; zero the padded positions in place.
    const mask = feeds['attention_mask']!.data as BigInt64Array;
    rows.forEach((r, i) => mask.fill(0n, i * width + r.input.length, (i + 1) * width));
  }
  const outputs = await session.run(feeds, [session.logitsName]);
  const tensor = outputs[session.logitsName]!;
  const logits = session.checkedLogits(tensor);
  const vocab = tensor.dims[2]!;
  return rows.map((row, i) =>
    row.continuations.map((continuation) => scoreContinuation(logits, (i * width) * vocab, vocab, row.input.length, continuation)),
  );
}

/**
 * Sum of log_softmax over the full vocabulary at the positions predicting each continuation token, and whether
 * each token is the argmax there (the first maximum on ties, as torch.argmax).
 */
export function scoreContinuation(logits: Float32Array, rowOffset: number, vocab: number, inputLength: number, continuation: readonly number[]): LoglikelihoodResult {
  let ll = 0;
  let isGreedy = true;
  const first = inputLength - continuation.length;
  for (let j = 0; j < continuation.length; j++) {
    const offset = rowOffset + (first + j) * vocab;
    let max = -Infinity;
    let argmax = 0;
    for (let v = 0; v < vocab; v++) {
      const x = logits[offset + v]!;
      if (x > max) {
        max = x;
        argmax = v;
      }
    }
    let sum = 0;
    for (let v = 0; v < vocab; v++) sum += Math.exp(logits[offset + v]! - max);
    const token = continuation[j]!;
    if (token < 0 || token >= vocab) throw new Error(`continuation token ${token} is outside the model's vocabulary of ${vocab}`);
    ll += logits[offset + token]! - max - Math.log(sum);
    if (argmax !== token) isGreedy = false;
  }
  return { ll, isGreedy };
}
