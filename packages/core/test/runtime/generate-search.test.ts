import { describe, expect, test } from 'vitest';
import { beamSearch, greedySearch, type GenerationOptions } from '../../src/runtime/generate.js';
import type { Decoder } from '../../src/runtime/kv-cache.js';

/**
 * The search logic on a synthetic "model" whose logits are a hash of the sequence, checked against
 * (a) exhaustive enumeration of every possible sequence and (b) a textbook, list-based beam search written here
 * from HF's documented rules (no -1e9 masking, no placeholder beams), on cases where the settings change the result.
 */

const EOS = 0;

/** Deterministic pseudo-random logits for a sequence: FNV-1a over the ids, then an LCG. */
function syntheticLogits(sequence: readonly number[], vocab: number, seed: number, eosBias: number): Float32Array {
  let h = 2166136261 ^ seed;
  for (const id of sequence) h = Math.imul(h ^ (id + 1), 16777619) >>> 0;
  const out = new Float32Array(vocab);
  for (let v = 0; v < vocab; v++) {
    h = (Math.imul(h, 1664525) + 1013904223) >>> 0;
    out[v] = (h / 2 ** 32) * 8 - 4 + (v === EOS ? eosBias : 0);
  }
  return out;
}

class SyntheticDecoder implements Decoder {
  readonly usesCache = false;
  private rows: number[][] = [];
  constructor(
    private readonly vocab: number,
    private readonly seed: number,
    private readonly eosBias = 0,
  ) {}
  logits(sequence: readonly number[]): Float32Array {
    return syntheticLogits(sequence, this.vocab, this.seed, this.eosBias);
  }
  async start(prompt: readonly number[], rows: number): Promise<Float32Array> {
    this.rows = Array.from({ length: rows }, () => [...prompt]);
    return this.logits(prompt);
  }
  async advance(parents: readonly number[], tokens: readonly number[]): Promise<Float32Array> {
    this.rows = parents.map((p, r) => [...this.rows[p]!, tokens[r]!]);
    const out = new Float32Array(this.rows.length * this.vocab);
    this.rows.forEach((row, r) => out.set(this.logits(row), r * this.vocab));
    return out;
  }
}

function logSoftmax(logits: Float32Array): number[] {
  const max = Math.max(...logits);
  const logSum = Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0)) + max;
  return Array.from(logits, (x) => Math.fround(x - logSum));
}

/** True when the last token completes an n-gram that already occurred earlier in the sequence. */
function repeatsNgram(sequence: readonly number[], n: number): boolean {
  if (n <= 0 || sequence.length < n) return false;
  const last = sequence.slice(-n).join(',');
  for (let i = 0; i + n < sequence.length; i++) if (sequence.slice(i, i + n).join(',') === last) return true;
  return false;
}

/** Every sequence the search could produce, scored sum(logprob) / generated_length ** lengthPenalty; the best. */
function exhaustiveBest(model: SyntheticDecoder, prompt: number[], maxNew: number, lengthPenalty: number, noRepeat: number) {
  let best = { ids: [] as number[], score: -Infinity };
  const visit = (ids: number[], sum: number) => {
    const lp = logSoftmax(model.logits(ids));
    for (let v = 0; v < lp.length; v++) {
      const next = [...ids, v];
      if (repeatsNgram(next, noRepeat)) continue;
      const total = Math.fround(sum + lp[v]!);
      const generated = next.length - prompt.length;
      if (v === EOS || generated === maxNew) {
        const score = Math.fround(total / Math.fround(generated ** lengthPenalty));
        if (score > best.score) best = { ids: next, score };
      } else {
        visit(next, total);
      }
    }
  };
  visit(prompt, 0);
  return best;
}

/** Textbook beam search with HF's rules, written as lists of hypotheses. */
function referenceBeamSearch(model: SyntheticDecoder, prompt: number[], o: Required<Pick<GenerationOptions, 'numBeams' | 'maxLength' | 'lengthPenalty' | 'noRepeatNgramSize' | 'numReturnSequences'>> & { earlyStopping: boolean | 'never' }) {
  type Hyp = { ids: number[]; score: number };
  let live: Hyp[] = [{ ids: [...prompt], score: 0 }];
  const done: Hyp[] = [];
  for (let length = prompt.length; ; ) {
    const cands: Hyp[] = [];
    for (const beam of live) {
      const lp = logSoftmax(model.logits(beam.ids));
      lp.forEach((l, v) => {
        const ids = [...beam.ids, v];
        const logp = repeatsNgram(ids, o.noRepeatNgramSize) ? -Infinity : l;
        cands.push({ ids, score: Math.fround(beam.score + logp) });
      });
    }
    cands.sort((a, b) => b.score - a.score);
    const top = cands.slice(0, 2 * o.numBeams);
    length += 1;
    const generated = length - prompt.length;
    const ends = (h: Hyp) => h.ids[h.ids.length - 1] === EOS || length >= o.maxLength;
    top.forEach((h, rank) => {
      if (ends(h) && rank < o.numBeams) done.push({ ids: h.ids, score: Math.fround(h.score / Math.fround(generated ** o.lengthPenalty)) });
    });
    done.sort((a, b) => b.score - a.score);
    done.splice(o.numBeams);
    live = top.filter((h) => !ends(h)).slice(0, o.numBeams);
    if (live.length === 0) break;
    if (done.length === o.numBeams) {
      if (o.earlyStopping === true) break;
      const bestLength = o.earlyStopping === 'never' && o.lengthPenalty > 0 ? o.maxLength - prompt.length : generated;
      const bestPossible = Math.fround(live[0]!.score / Math.fround(bestLength ** o.lengthPenalty));
      if (!(bestPossible > done[done.length - 1]!.score)) break;
    }
  }
  return done.slice(0, o.numReturnSequences);
}

describe('beam search = exhaustive search when the beams can hold every prefix', () => {
  // vocab 3, 4 new tokens: at most 27 live prefixes, so 27 beams never prune; "never" makes the stop rule exact.
  for (const noRepeat of [0, 2]) {
    for (const lengthPenalty of [1, 2]) {
      test(`no_repeat_ngram_size ${noRepeat}, length_penalty ${lengthPenalty}`, async () => {
        let changedByNgram = 0;
        for (let seed = 1; seed <= 12; seed++) {
          const model = new SyntheticDecoder(3, seed, -1);
          const prompt = [1, 2, 1];
          const [got] = await beamSearch(model, prompt, {
            numBeams: 27, maxNewTokens: 4, earlyStopping: 'never', lengthPenalty, noRepeatNgramSize: noRepeat, eosTokenId: EOS,
          });
          const best = exhaustiveBest(model, prompt, 4, lengthPenalty, noRepeat);
          expect(got!.ids).toEqual(best.ids);
          expect(got!.score).toBe(best.score);
          if (noRepeat > 0 && exhaustiveBest(model, prompt, 4, lengthPenalty, 0).ids.join() !== best.ids.join()) changedByNgram++;
        }
        if (noRepeat > 0) expect(changedByNgram).toBeGreaterThan(0);
      });
    }
  }
});

describe('beam search = textbook reference with few beams', () => {
  const settings: { numBeams: number; earlyStopping: boolean | 'never'; lengthPenalty: number; noRepeatNgramSize: number }[] = [];
  for (const numBeams of [2, 3])
    for (const earlyStopping of [true, false, 'never'] as const)
      for (const lengthPenalty of [1, 0, 2, -0.5])
        for (const noRepeatNgramSize of [0, 2, 3]) settings.push({ numBeams, earlyStopping, lengthPenalty, noRepeatNgramSize });

  test.each(settings)('%o', async (s) => {
    for (let seed = 1; seed <= 15; seed++) {
      // vocab 12 keeps ≥ 2 unbanned tokens per beam, so no beam ever runs out of continuations
      const model = new SyntheticDecoder(12, seed, 1.5);
      const prompt = [3, 4, 3, 5];
      const options = { ...s, maxLength: prompt.length + 10, numReturnSequences: s.numBeams, eosTokenId: EOS };
      const got = await beamSearch(model, prompt, options);
      const want = referenceBeamSearch(model, prompt, options);
      expect(got.map((h) => h.ids)).toEqual(want.map((h) => h.ids));
      expect(got.map((h) => h.score)).toEqual(want.map((h) => h.score));
    }
  });

  test('the cases above include ones where early_stopping and no_repeat_ngram_size change the best sequence', async () => {
    let earlyChanges = 0;
    let ngramChanges = 0;
    for (let seed = 1; seed <= 15; seed++) {
      const model = new SyntheticDecoder(12, seed, 1.5);
      const prompt = [3, 4, 3, 5];
      const base = { numBeams: 3, maxLength: 14, lengthPenalty: 1, numReturnSequences: 1 };
      const best = (o: { earlyStopping: boolean | 'never'; noRepeatNgramSize: number }) => referenceBeamSearch(model, prompt, { ...base, ...o })[0]!.ids.join();
      if (best({ earlyStopping: true, noRepeatNgramSize: 0 }) !== best({ earlyStopping: 'never', noRepeatNgramSize: 0 })) earlyChanges++;
      if (best({ earlyStopping: false, noRepeatNgramSize: 2 }) !== best({ earlyStopping: false, noRepeatNgramSize: 0 })) ngramChanges++;
    }
    expect(earlyChanges).toBeGreaterThan(0);
    expect(ngramChanges).toBeGreaterThan(0);
  });
});

describe('greedy', () => {
  test('argmax with the n-gram ban equals a step-by-step brute force', async () => {
    for (let seed = 1; seed <= 10; seed++) {
      const model = new SyntheticDecoder(6, seed, -0.5);
      const prompt = [1, 2];
      const got = await greedySearch(model, prompt, { maxNewTokens: 12, noRepeatNgramSize: 2, eosTokenId: EOS });
      const ids = [...prompt];
      while (ids.length < prompt.length + 12) {
        const logits = model.logits(ids);
        let pick = -1;
        for (let v = 0; v < logits.length; v++) if (!repeatsNgram([...ids, v], 2) && (pick < 0 || logits[v]! > logits[pick]!)) pick = v;
        ids.push(pick);
        if (pick === EOS) break;
      }
      expect(got.ids).toEqual(ids);
    }
  });

  test('stops at EOS and at the length limit', async () => {
    const model = new SyntheticDecoder(6, 3, 100); // EOS always wins
    expect((await greedySearch(model, [1], { maxNewTokens: 5, eosTokenId: EOS })).ids).toEqual([1, EOS]);
    const noEos = await greedySearch(new SyntheticDecoder(6, 3, -100), [1], { maxLength: 6, eosTokenId: EOS });
    expect(noEos.ids).toHaveLength(6);
  });
});

describe('options', () => {
  const model = new SyntheticDecoder(6, 1);
  test('max_length counts the prompt; too short is a clear error', async () => {
    await expect(beamSearch(model, [1, 2, 3], { numBeams: 2, maxLength: 3 })).rejects.toThrow(/maxLength 3 leaves no room after a 3-token prompt/);
  });
  test('num_return_sequences cannot exceed num_beams', async () => {
    await expect(beamSearch(model, [1], { numBeams: 2, numReturnSequences: 3 })).rejects.toThrow(/numReturnSequences \(3\) cannot exceed numBeams \(2\)/);
  });
  test('returns num_return_sequences hypotheses, best first', async () => {
    const out = await beamSearch(model, [1], { numBeams: 4, numReturnSequences: 3, maxNewTokens: 6, eosTokenId: EOS });
    expect(out).toHaveLength(3);
    expect(out[0]!.score).toBeGreaterThanOrEqual(out[1]!.score);
    expect(out[1]!.score).toBeGreaterThanOrEqual(out[2]!.score);
  });
});
