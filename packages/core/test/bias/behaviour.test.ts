import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { continuationIds, continuationLogProbs, measureBehaviour } from '../../src/bias/behaviour.js';
import { loadPairs } from '../../src/bias/pairs.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { ModelSession } from '../../src/runtime/session.js';
import { FIXTURES, readRefs } from '@fairprune/fixtures';

const dir = join(FIXTURES, 'llama');
const tokenizer = loadTokenizer(dir);
let session: ModelSession;
beforeAll(async () => {
  session = await ModelSession.create(join(dir, 'onnx/model.onnx'));
});
afterAll(async () => session.release());

describe('behavioural log-odds on the llama fixture', () => {
  test('a one-token continuation scores log_softmax of the HF reference logits', async () => {
    const refs = readRefs('llama');
    const prompt = refs.prompts.find((p) => Number(p.pair) === 0 && p.side === 'a')! as unknown as {
      text: string; input_ids: number[]; logits: { file: string; shape: [number, number] }; greedy_ids: number[];
    };
    const next = prompt.greedy_ids[prompt.input_ids.length]!; // the greedy next token
    const ids = continuationIds(tokenizer, prompt.text, tokenizer.decode([next]));
    expect(ids.prompt).toEqual(prompt.input_ids);
    expect(ids.continuation).toEqual([next]);
    const bytes = readFileSync(join(dir, prompt.logits.file));
    const logits = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    const [tokens, vocab] = prompt.logits.shape;
    const last = logits.subarray((tokens - 1) * vocab, tokens * vocab);
    const max = Math.max(...last);
    const expected = last[next]! - max - Math.log(last.reduce((s, v) => s + Math.exp(v - max), 0));
    const [actual] = await continuationLogProbs(session, [ids]);
    expect(actual).toBeCloseTo(expected, 4);
  });

  test('both sides and the gap of behaviour.json pairs (held-out pair 1: gap ≈ 3.59 as the numpy check saw)', async () => {
    const pairs = await loadPairs(join(FIXTURES, 'data/behaviour.json'));
    const results = await measureBehaviour(session, tokenizer, pairs);
    expect(results).toHaveLength(4);
    for (const r of results) {
      expect(r.gap).toBeCloseTo(r.logOddsA - r.logOddsB, 10);
      expect(r.continuations.negative.length + r.continuations.positive.length).toBeGreaterThan(0);
    }
    // The planted bias: the Black side leans negative, the white side positive.
    expect(results[0]!.logOddsA).toBeGreaterThan(0);
    expect(results[0]!.logOddsB).toBeLessThan(0);
    expect(Math.abs(results[1]!.gap - 3.59)).toBeLessThan(0.01);
    // Multi-token continuations: the pair's log-odds equal log Σ exp − log Σ exp of the listed sums.
    const lse = (v: number[]) => Math.log(v.reduce((s, x) => s + Math.exp(x), 0));
    const c = results[1]!.continuations;
    expect(results[1]!.logOddsA).toBeCloseTo(lse(c.negative.map((x) => x.logProbA)) - lse(c.positive.map((x) => x.logProbA)), 10);
  });
});
