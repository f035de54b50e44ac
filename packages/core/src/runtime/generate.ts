import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonObject, type JsonObject } from '../io/read-json.js';
import { openDecoder, type Decoder } from './kv-cache.js';
import type { ModelSession } from './session.js';

/**
 * Greedy and beam-search generation with Hugging Face `generate()` semantics (transformers 5.x `_sample` with
 * do_sample=False and the vectorised `_beam_search`), so the same settings give the same token ids.
 */
export interface GenerationOptions {
  /** 1 = greedy. */
  numBeams?: number;
  /** Total length including the prompt (HF default 20). Ignored when `maxNewTokens` is set. */
  maxLength?: number;
  /** Tokens to generate after the prompt; overrides `maxLength`. */
  maxNewTokens?: number;
  /** true: stop when `numBeams` hypotheses are finished; false: HF's heuristic; "never": the canonical bound. */
  earlyStopping?: boolean | 'never';
  /** Finished scores are sum(logprob) / generated_length ** lengthPenalty (HF default 1). */
  lengthPenalty?: number;
  /** Bans any n-gram of this size from occurring twice in the sequence (prompt included), 0 = off. */
  noRepeatNgramSize?: number;
  /** Sequences returned per prompt, best first; at most `numBeams` (default 1). */
  numReturnSequences?: number;
  /** End-of-sequence id(s); a finished greedy row stops here. */
  eosTokenId?: number | readonly number[];
  /** Recorded for callers that pad; sequences are returned unpadded, each with its own length. */
  padTokenId?: number;
  /** The model's context (see {@link ModelValidation.contextLimit}): a prompt plus its new tokens may not exceed it. */
  contextLimit?: {
    /** Longest sequence, in tokens. */
    tokens: number;
    /** Where the limit comes from, for the message (e.g. `config.json max_position_embeddings`). */
    source: string;
  };
}

/** One generated sequence. */
export interface GeneratedSequence {
  /** Prompt ids followed by the generated ids (EOS included when it was generated). */
  ids: number[];
  /** Beam search: the length-penalised score HF ranks by. Greedy: the summed log-probability. */
  score: number;
}

interface ResolvedOptions {
  numBeams: number;
  maxLength: number;
  earlyStopping: boolean | 'never';
  lengthPenalty: number;
  noRepeatNgramSize: number;
  numReturnSequences: number;
  eos: readonly number[];
}

const NEG_1E9 = -1.0e9;

function resolveOptions(promptLength: number, options: GenerationOptions): ResolvedOptions {
  const numBeams = options.numBeams ?? 1;
  const numReturnSequences = options.numReturnSequences ?? 1;
  const noRepeatNgramSize = options.noRepeatNgramSize ?? 0;
  const positiveInt = (name: string, value: number, min: number) => {
    if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer ≥ ${min}, got ${value}`);
  };
  positiveInt('numBeams', numBeams, 1);
  positiveInt('numReturnSequences', numReturnSequences, 1);
  positiveInt('noRepeatNgramSize', noRepeatNgramSize, 0);
  if (numReturnSequences > numBeams) {
    throw new Error(`numReturnSequences (${numReturnSequences}) cannot exceed numBeams (${numBeams})`);
  }
  let maxLength: number;
  if (options.maxNewTokens !== undefined) {
    positiveInt('maxNewTokens', options.maxNewTokens, 1);
    maxLength = promptLength + options.maxNewTokens;
  } else {
    maxLength = options.maxLength ?? 20;
    positiveInt('maxLength', maxLength, 1);
    if (maxLength <= promptLength) {
      throw new Error(`maxLength ${maxLength} leaves no room after a ${promptLength}-token prompt (it counts the prompt); use maxNewTokens`);
    }
  }
  const limit = options.contextLimit;
  if (limit && maxLength > limit.tokens) {
    throw new Error(
      `a ${promptLength}-token prompt generating up to ${maxLength} tokens in all exceeds the model's context of ${limit.tokens} ` +
        `(${limit.source}); shorten the prompt or lower --max-new-tokens / --max-length`,
    );
  }
  const eos = options.eosTokenId === undefined ? [] : typeof options.eosTokenId === 'number' ? [options.eosTokenId] : [...options.eosTokenId];
  const lengthPenalty = options.lengthPenalty ?? 1.0;
  if (!Number.isFinite(lengthPenalty)) throw new Error(`lengthPenalty must be a finite number, got ${lengthPenalty}`);
  const earlyStopping = options.earlyStopping ?? false;
  if (earlyStopping !== true && earlyStopping !== false && earlyStopping !== 'never') {
    throw new Error(`earlyStopping must be true, false or "never", got ${String(earlyStopping)}`);
  }
  return { numBeams, maxLength, earlyStopping, lengthPenalty, noRepeatNgramSize, numReturnSequences, eos };
}

/** Tokens that would complete an n-gram already present in `sequence` (HF NoRepeatNGramLogitsProcessor). */
export function bannedNgramTokens(sequence: readonly number[], n: number): number[] {
  const length = sequence.length;
  if (n <= 0 || length + 1 < n) return [];
  const banned: number[] = [];
  const prefixStart = length - n + 1;
  for (let i = 0; i + n <= length; i++) {
    let same = true;
    for (let j = 0; j < n - 1 && same; j++) same = sequence[i + j] === sequence[prefixStart + j];
    if (same) banned.push(sequence[i + n - 1]!);
  }
  return banned;
}

/** log_softmax of one row in float64, rounded to float32 as torch's float32 log_softmax returns it. */
function logSoftmaxRow(logits: Float32Array, offset: number, vocab: number, into: Float32Array): void {
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) max = Math.max(max, logits[offset + v]!);
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp(logits[offset + v]! - max);
  const logSum = Math.log(sum) + max;
  for (let v = 0; v < vocab; v++) into[v] = logits[offset + v]! - logSum;
}

const f32 = Math.fround;

/** Greedy decoding of one prompt: argmax (first index on ties) until EOS or the length limit. */
export async function greedySearch(decoder: Decoder, prompt: readonly number[], options: GenerationOptions = {}): Promise<GeneratedSequence> {
  const opts = resolveOptions(prompt.length, options);
  const ids = [...prompt];
  let logits = await decoder.start(prompt, 1);
  const vocab = logits.length;
  const logProbs = new Float32Array(vocab);
  let score = 0;
  for (;;) {
    for (const token of bannedNgramTokens(ids, opts.noRepeatNgramSize)) logits[token] = -Infinity;
    let best = 0;
    for (let v = 1; v < vocab; v++) if (logits[v]! > logits[best]!) best = v;
    logSoftmaxRow(logits, 0, vocab, logProbs);
    score += logProbs[best]!;
    ids.push(best);
    if (opts.eos.includes(best) || ids.length >= opts.maxLength) break;
    logits = await decoder.advance([0], [best]);
    if (logits.length !== vocab) throw new Error(`decoder returned ${logits.length} logits, expected ${vocab}`);
  }
  return { ids, score };
}

interface Candidate {
  /** Generated tokens after the prompt. */
  tokens: number[];
  score: number;
  /** Row of the current running beams this candidate extends. */
  parent: number;
}

interface Slot {
  tokens: number[];
  score: number;
  finished: boolean;
}

/** Indices of the `k` largest values, largest first; ties keep the lower index first. */
function topK(values: ArrayLike<number>, k: number): number[] {
  const picked: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (picked.length === k && !(v > values[picked[k - 1]!]!)) continue;
    let at = picked.length === k ? k - 1 : picked.length;
    while (at > 0 && v > values[picked[at - 1]!]!) at--;
    picked.splice(at, 0, i);
    if (picked.length > k) picked.pop();
  }
  return picked;
}

/**
 * Beam search for one prompt, step for step as transformers' `_beam_search`: keep the top
 * `max(2, 1 + #eos) * numBeams` continuations, move those that end (EOS or max length) and rank among the first
 * `numBeams` into the finished set (scored with the length penalty), continue with the best `numBeams` unfinished,
 * and stop by HF's early-stopping rules.
 */
export async function beamSearch(decoder: Decoder, prompt: readonly number[], options: GenerationOptions = {}): Promise<GeneratedSequence[]> {
  const opts = resolveOptions(prompt.length, options);
  const { numBeams, maxLength, earlyStopping, lengthPenalty } = opts;
  const promptLength = prompt.length;
  const beamsToKeep = Math.max(2, 1 + opts.eos.length) * numBeams;

  // Only beam 0 is live at first (the others start at -1e9) so the first step does not pick the same token n times.
  let running: { tokens: number[]; score: number }[] = Array.from({ length: numBeams }, (_, b) => ({ tokens: [], score: b === 0 ? 0 : NEG_1E9 }));
  let finished: Slot[] = Array.from({ length: numBeams }, () => ({ tokens: [], score: NEG_1E9, finished: false }));
  let improvementPossible = true;
  let curLength = promptLength;

  const first = await decoder.start(prompt, numBeams);
  const vocab = first.length;
  if (numBeams * vocab < beamsToKeep) throw new Error(`vocabulary of ${vocab} is too small for ${numBeams} beams`);
  let logits: Float32Array = new Float32Array(numBeams * vocab);
  for (let b = 0; b < numBeams; b++) logits.set(first, b * vocab);

  const scores = new Float32Array(numBeams * vocab);
  const row = new Float32Array(vocab);
  for (;;) {
    // b. log-probs, processors (n-gram ban), plus each beam's running score
    for (let b = 0; b < numBeams; b++) {
      logSoftmaxRow(logits, b * vocab, vocab, row);
      const beam = running[b]!;
      for (const token of bannedNgramTokens([...prompt, ...beam.tokens], opts.noRepeatNgramSize)) row[token] = -Infinity;
      for (let v = 0; v < vocab; v++) scores[b * vocab + v] = f32(row[v]! + beam.score);
    }
    // c. top-K continuations over all beams
    const candidates: Candidate[] = topK(scores, beamsToKeep).map((flat) => {
      const parent = Math.floor(flat / vocab);
      return { tokens: [...running[parent]!.tokens, flat % vocab], score: scores[flat]!, parent };
    });
    // d. which continuations end here (EOS, or max length reached)
    const ends = candidates.map((c) => opts.eos.includes(c.tokens[c.tokens.length - 1]!) || curLength + 1 >= maxLength);

    // e. the best numBeams that go on
    const runningScores = candidates.map((c, k) => f32(c.score + (ends[k] ? NEG_1E9 : 0)));
    const nextRunning = topK(runningScores, numBeams).map((k) => ({ candidate: candidates[k]!, score: runningScores[k]! }));

    // f. merge newly finished hypotheses (only those ranked within the first numBeams) into the finished set
    const denominator = f32((curLength + 1 - promptLength) ** lengthPenalty);
    const beamsFull = finished.every((s) => s.finished) && earlyStopping === true;
    const merged: Slot[] = [
      ...finished,
      ...candidates.map((c, k) => {
        const justFinished = ends[k]! && k < numBeams;
        let score = f32(c.score / denominator);
        if (beamsFull) score = f32(score + NEG_1E9);
        if (!improvementPossible) score = f32(score + NEG_1E9);
        if (!justFinished) score = f32(score + NEG_1E9);
        return { tokens: c.tokens, score, finished: justFinished };
      }),
    ];
    finished = topK(merged.map((s) => s.score), numBeams).map((i) => merged[i]!);

    // g. stopping rules, evaluated for the next length
    curLength += 1;
    running = nextRunning.map(({ candidate, score }) => ({ tokens: candidate.tokens, score }));
    const bestLength = earlyStopping === 'never' && lengthPenalty > 0 ? maxLength - promptLength : curLength - promptLength;
    const bestPossible = f32(running[0]!.score / f32(bestLength ** lengthPenalty));
    const worstFinished = Math.min(...finished.map((s) => s.score));
    improvementPossible &&= finished.some((s) => bestPossible > (s.finished ? worstFinished : NEG_1E9));
    const allFinished = finished.every((s) => s.finished) && earlyStopping === true;
    if (!improvementPossible || allFinished || ends.every(Boolean)) break;

    logits = await decoder.advance(
      nextRunning.map(({ candidate }) => candidate.parent),
      nextRunning.map(({ candidate }) => candidate.tokens[candidate.tokens.length - 1]!),
    );
    if (logits.length !== numBeams * vocab) throw new Error(`decoder returned ${logits.length} logits, expected ${numBeams * vocab}`);
  }
  return finished.slice(0, opts.numReturnSequences).map((s) => ({ ids: [...prompt, ...s.tokens], score: s.score }));
}

/**
 * Generates for each prompt (token ids, BOS included; greedy when numBeams is 1) with a KV cache when the graph has
 * one (`cache: false` forces prefix recomputation); returns numReturnSequences sequences per prompt.
 * @throws before generating anything, on an empty prompt, invalid options (naming the option) or a prompt whose
 *   sequence would exceed `contextLimit`; during generation, {@link NonFiniteError} on NaN/±Inf logits.
 */
export async function generate(
  session: ModelSession,
  prompts: readonly (readonly number[])[],
  options: GenerationOptions & { cache?: boolean } = {},
): Promise<GeneratedSequence[][]> {
  checkGenerationInputs(prompts, options);
  const results: GeneratedSequence[][] = [];
  for (const prompt of prompts) {
    const decoder = openDecoder(session, { cache: options.cache });
    if ((options.numBeams ?? 1) === 1) {
      if ((options.numReturnSequences ?? 1) !== 1) throw new Error('greedy search returns one sequence; set numBeams > 1 for more');
      results.push([await greedySearch(decoder, prompt, options)]);
    } else {
      results.push(await beamSearch(decoder, prompt, options));
    }
  }
  return results;
}

/**
 * Checks every prompt against the options before anything is generated (or a model loaded): not empty, options valid,
 * prompt plus new tokens within `options.contextLimit`.
 * @throws naming the prompt index and the option or limit.
 */
export function checkGenerationInputs(prompts: readonly (readonly number[])[], options: GenerationOptions = {}): void {
  prompts.forEach((prompt, i) => {
    if (prompt.length === 0) throw new Error(`generate: prompt ${i} is empty (encode with the BOS token, or give some text)`);
    try {
      resolveOptions(prompt.length, options);
    } catch (error) {
      throw new Error(`generate: prompt ${i}: ${(error as Error).message}`);
    }
  });
}

/**
 * eos/pad ids as `generate()` would take them: generation_config.json first, then config.json; absent files give `{}`.
 * @throws {@link JsonInputError} when one of the files is not a JSON object.
 */
export function readGenerationDefaults(
  modelDir: string,
): Pick<GenerationOptions, 'eosTokenId' | 'padTokenId'> & {
  /** `max_length` of generation_config.json, when set there. */
  maxLength?: number;
} {
  const read = (name: string): JsonObject => {
    const path = join(modelDir, name);
    return existsSync(path) ? readJsonObject(path) : {};
  };
  const generation = read('generation_config.json');
  const config = read('config.json');
  const pick = (key: string): unknown => generation[key] ?? config[key];
  const ids = (value: unknown): number | number[] | undefined =>
    typeof value === 'number' ? value : Array.isArray(value) && value.every((v) => typeof v === 'number') ? (value as number[]) : undefined;
  const eos = ids(pick('eos_token_id'));
  const pad = pick('pad_token_id');
  const maxLength = generation['max_length'];
  return {
    ...(eos !== undefined ? { eosTokenId: eos } : {}),
    ...(typeof pad === 'number' ? { padTokenId: pad } : {}),
    ...(typeof maxLength === 'number' ? { maxLength } : {}),
  };
}
