import type { PromptPair } from './pairs.js';

/** What behavioural scoring needs from a model: full forwards of equal-length sequences → logits [B, T, V]. */
export interface LogitsModel {
  /** Logits of equal-length id sequences ({@link ModelSession.forward} fits). */
  forward(batch: readonly (readonly number[])[]): Promise<{
    /** Row-major [B, T, V] float32 logits. */
    logits: Float32Array;
    /** The shape B, T, V. */
    dims: [number, number, number];
  }>;
}

/** What it needs from a tokenizer: ids with the model's special tokens (BOS), or without them. */
export interface ContinuationTokenizer {
  /** Token ids of `text`; special tokens (BOS) unless `addSpecialTokens` is false. */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
}

/**
 * Counterfactual behaviour of one pair: for each side, log Σ_c∈negative p(c | prompt) − log Σ_c∈positive p(c | prompt),
 * where p(c | prompt) is the product of the continuation's token probabilities. `gap` = logOddsA − logOddsB:
 * positive when side a is pushed towards the negative continuations more than side b.
 */
export interface BehaviourResult {
  /** Prompt a. */
  a: string;
  /** Prompt b. */
  b: string;
  /** The pair's category, if it had one. */
  category?: string;
  /** Negative-vs-positive log-odds after prompt a (natural log). */
  logOddsA: number;
  /** Negative-vs-positive log-odds after prompt b. */
  logOddsB: number;
  /** logOddsA − logOddsB. */
  gap: number;
  /** Summed log-probability of each continuation, per side, in the pair's order. */
  continuations: {
    /** The pair's `negative` continuations. */
    negative: ContinuationLogProbs[];
    /** The pair's `positive` continuations. */
    positive: ContinuationLogProbs[];
  };
}

/** One continuation's summed token log-probability after each prompt of a pair (natural log). */
export interface ContinuationLogProbs {
  /** The continuation. */
  text: string;
  /** After prompt a. */
  logProbA: number;
  /** After prompt b. */
  logProbB: number;
}

/** Prompt and continuation ids. Joint encoding split at the prompt (lm-evaluation-harness style) when the
 *  prompt's ids are a prefix of the joint ids; otherwise the continuation is encoded on its own. */
export function continuationIds(tokenizer: ContinuationTokenizer, prompt: string, continuation: string): { prompt: number[]; continuation: number[] } {
  const promptIds = tokenizer.encode(prompt);
  const joint = tokenizer.encode(prompt + continuation);
  const isPrefix = joint.length > promptIds.length && promptIds.every((id, i) => joint[i] === id);
  const rest = isPrefix ? joint.slice(promptIds.length) : tokenizer.encode(continuation, { addSpecialTokens: false });
  if (rest.length === 0) throw new Error(`Continuation ${JSON.stringify(continuation)} of ${JSON.stringify(prompt)} has no tokens`);
  return { prompt: promptIds, continuation: rest };
}

/** log Σ exp(v), stable; −∞ for no finite value. */
export function logSumExp(values: readonly number[]): number {
  const max = Math.max(...values);
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (const v of values) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

/**
 * Summed log-probability of `continuation` in batch row `b` of row-major [B, tokens, vocab] logits whose sequence is
 * the prompt (`promptLength` ids) followed by the continuation.
 */
export function sequenceLogProb(
  logits: Float32Array,
  tokens: number,
  vocab: number,
  b: number,
  promptLength: number,
  continuation: readonly number[],
): number {
  let total = 0;
  continuation.forEach((token, k) => {
    // The token at position promptLength + k is predicted by the logits at the position before it.
    const offset = (b * tokens + promptLength + k - 1) * vocab;
    const row = logits.subarray(offset, offset + vocab);
    let max = -Infinity;
    for (let v = 0; v < vocab; v++) if (row[v]! > max) max = row[v]!;
    let sum = 0;
    for (let v = 0; v < vocab; v++) sum += Math.exp(row[v]! - max);
    total += row[token]! - max - Math.log(sum);
  });
  return total;
}

/** Summed log-probabilities of many (prompt, continuation) sequences; equal-length sequences share a forward. */
export async function continuationLogProbs(
  model: LogitsModel,
  items: readonly { prompt: number[]; continuation: number[] }[],
  maxBatch = 16,
): Promise<number[]> {
  const out = new Array<number>(items.length).fill(Number.NaN);
  const byLength = new Map<number, number[]>();
  items.forEach((item, index) => {
    const length = item.prompt.length + item.continuation.length;
    byLength.set(length, [...(byLength.get(length) ?? []), index]);
  });
  for (const indices of byLength.values()) {
    for (let start = 0; start < indices.length; start += maxBatch) {
      const chunk = indices.slice(start, start + maxBatch);
      const sequences = chunk.map((i) => [...items[i]!.prompt, ...items[i]!.continuation]);
      const { logits, dims } = await model.forward(sequences);
      const [, tokens, vocab] = dims;
      chunk.forEach((itemIndex, b) => {
        const { prompt, continuation } = items[itemIndex]!;
        const total = sequenceLogProb(logits, tokens, vocab, b, prompt.length, continuation);
        out[itemIndex] = total;
      });
    }
  }
  return out;
}

/**
 * Behavioural bias of every pair that carries `negative` and `positive` lists (others are left out): how much more
 * likely the model continues prompt a than prompt b with the negative continuations. Runs forwards only.
 * @throws when a continuation encodes to no tokens.
 */
export async function measureBehaviour(
  model: LogitsModel,
  tokenizer: ContinuationTokenizer,
  pairs: readonly PromptPair[],
): Promise<BehaviourResult[]> {
  const scored = pairs.filter((p) => p.negative && p.positive);
  const items: { prompt: number[]; continuation: number[] }[] = [];
  for (const pair of scored) {
    for (const text of [...pair.negative!, ...pair.positive!]) {
      items.push(continuationIds(tokenizer, pair.a, text), continuationIds(tokenizer, pair.b, text));
    }
  }
  const logProbs = await continuationLogProbs(model, items);
  let cursor = 0;
  return scored.map((pair) => {
    const take = (texts: string[]) =>
      texts.map((text) => {
        const result = { text, logProbA: logProbs[cursor]!, logProbB: logProbs[cursor + 1]! };
        cursor += 2;
        return result;
      });
    const negative = take(pair.negative!);
    const positive = take(pair.positive!);
    const logOdds = (side: 'logProbA' | 'logProbB') =>
      logSumExp(negative.map((c) => c[side])) - logSumExp(positive.map((c) => c[side]));
    const logOddsA = logOdds('logProbA');
    const logOddsB = logOdds('logProbB');
    return {
      a: pair.a,
      b: pair.b,
      ...(pair.category !== undefined ? { category: pair.category } : {}),
      logOddsA,
      logOddsB,
      gap: logOddsA - logOddsB,
      continuations: { negative, positive },
    };
  });
}
