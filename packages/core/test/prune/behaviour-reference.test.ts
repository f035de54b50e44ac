// --method behaviour against an independent computation: a plain-JS Llama forward from the fixture's safetensors
// (reference-llama.ts, itself checked against Hugging Face's logits here) recomputes L_A, L_B and the answer margin
// of the chosen set, removed and mean-replaced, with means it computes itself.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DATA, fixtureDir, maxAbsDiff, readRefData, readRefs } from '@fairprune/fixtures';
import { continuationIds } from '../../src/bias/behaviour.js';
import { readPairsFile, type PromptPair } from '../../src/bias/pairs.js';
import { openModelFolder } from '../../src/model/folder.js';
import { calibrationMeans } from '../../src/prune/behaviour-run.js';
import { BEHAVIOUR_DEFAULTS, BehaviourProbe, selectByBehaviour, type BehaviourSelection, type ChoiceItem, type NeuronRef } from '../../src/prune/behaviour-select.js';
import { NeuronMaskedModel } from '../../src/runtime/neuron-masks.js';
import { continuationLogProb, ReferenceLlama, type GluEdit } from './reference-llama.js';

const llama = fixtureDir('llama');
const onnxPath = join(llama, 'onnx/model.onnx');
const folder = openModelFolder(llama);
const tokenizer = folder.tokenizer;
const reference = new ReferenceLlama();
const texts = readFileSync(DATA.lambadaMini, 'utf8').trim().split('\n').slice(0, 8).map((l) => (JSON.parse(l) as { text: string }).text);
// BoolQ-format items written here from the lm-eval template: "<passage>\nQuestion: <question>?\nAnswer:" then " no" / " yes".
const choices: ChoiceItem[] = readFileSync(DATA.boolqCalibration, 'utf8')
  .trim()
  .split('\n')
  .slice(0, 10)
  .map((l) => JSON.parse(l) as { question: string; passage: string; label: number })
  .map((d) => ({ context: `${d.passage}\nQuestion: ${d.question}?\nAnswer:`, choices: [' no', ' yes'], label: d.label }));

const logSumExp = (v: number[]) => {
  const m = Math.max(...v);
  return m + Math.log(v.reduce((s, x) => s + Math.exp(x - m), 0));
};
const avg = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;

function logProb(prompt: string, continuation: string, edit: GluEdit): number {
  const ids = continuationIds(tokenizer, prompt, continuation);
  return continuationLogProb(reference.forward([...ids.prompt, ...ids.continuation], edit), ids.prompt.length, ids.continuation);
}

/** Mean L_A, L_B and the answer margin (balanced over the right answers) of the reference with `edit`. */
function referenceScore(pairs: readonly PromptPair[], edit: GluEdit): { meanA: number; meanB: number; margin: number } {
  const side = (prompt: string, pair: PromptPair) =>
    logSumExp(pair.negative!.map((c) => logProb(prompt, c, edit))) - logSumExp(pair.positive!.map((c) => logProb(prompt, c, edit)));
  const margins = new Map<number, number[]>();
  for (const item of choices) {
    const lp = item.choices.map((c) => logProb(item.context, c, edit));
    const m = lp[item.label]! - logSumExp(lp.filter((_, i) => i !== item.label));
    margins.set(item.label, [...(margins.get(item.label) ?? []), m]);
  }
  return { meanA: avg(pairs.map((p) => side(p.a, p))), meanB: avg(pairs.map((p) => side(p.b, p))), margin: avg([...margins.values()].map(avg)) };
}

/** Removal (mask 0) or mean replacement (mask 0, shift = mean) of `neurons`. */
function editOf(neurons: readonly NeuronRef[], means?: readonly Float64Array[]): GluEdit {
  const edit = new Map<number, Map<number, [number, number]>>();
  for (const { layer, neuron } of neurons) {
    const layerEdit = edit.get(layer) ?? new Map<number, [number, number]>();
    layerEdit.set(neuron, [0, means ? means[layer]![neuron]! : 0]);
    edit.set(layer, layerEdit);
  }
  return edit;
}

test('the reference forward reproduces Hugging Face\'s logits (pair 0, side a)', () => {
  const refs = readRefs('llama');
  const prompt = refs.prompts.find((p) => Number(p.pair) === 0 && p.side === 'a')!;
  const expected = readRefData('llama', prompt.logits);
  const logits = reference.forward(prompt.input_ids);
  expect(maxAbsDiff(Float64Array.from(logits.flatMap((r) => [...r])), expected)).toBeLessThan(1e-4);
});

describe('behaviour selection with mean replacement and the answer-margin guard (4 selection pairs, layer 2)', () => {
  let pairs: PromptPair[];
  let model: NeuronMaskedModel;
  let result: BehaviourSelection;
  let tight: BehaviourSelection;
  let refMeans: Float64Array[];
  const options = { ...BEHAVIOUR_DEFAULTS, compensate: 'mean' as const, maxNeurons: 6, layers: [2] };
  beforeAll(async () => {
    pairs = (await readPairsFile(DATA.behaviourSelection)).slice(0, 4);
    const means = await calibrationMeans({ folder, onnxPath, calibrationTexts: texts, threads: 1 });
    refMeans = reference.meanGlu(texts.map((t) => tokenizer.encode(t)));
    means.forEach((m, layer) => expect(maxAbsDiff(m, refMeans[layer]!)).toBeLessThan(1e-4));
    model = await NeuronMaskedModel.create(onnxPath, { replacement: true, threads: 1 });
    const probe = new BehaviourProbe(model, tokenizer, pairs, { texts, choices }, means);
    result = await selectByBehaviour(probe, model.widths, options);
    // A margin limit of zero: no chosen set may lower the answer margin at all.
    tight = await selectByBehaviour(probe, model.widths, { ...options, maxMarginDrop: 0 });
  }, 600_000);
  afterAll(async () => model?.release());

  test('before and after: L_A, L_B and the answer margin agree with the reference (mean-replaced)', () => {
    const base = referenceScore(pairs, new Map());
    expect(result.before.meanA).toBeCloseTo(base.meanA, 3);
    expect(result.before.meanB).toBeCloseTo(base.meanB, 3);
    expect(result.before.margin).toBeCloseTo(base.margin, 3);
    expect(result.chosen.length).toBeGreaterThan(0);
    const after = referenceScore(pairs, editOf(result.chosen, refMeans));
    expect(result.after.meanA).toBeCloseTo(after.meanA, 3);
    expect(result.after.meanB).toBeCloseTo(after.meanB, 3);
    expect(result.after.margin).toBeCloseTo(after.margin, 3);
    // What the selection promises, on the reference: a narrower gap, side B and the margin within their limits.
    expect(after.meanA - after.meanB).toBeLessThan(base.meanA - base.meanB);
    expect(after.meanB - base.meanB).toBeLessThanOrEqual(options.sideBTolerance + 1e-6);
    expect(base.margin - after.margin).toBeLessThanOrEqual(options.maxMarginDrop + 1e-6);
  }, 300_000);

  test('the first chosen neuron\'s effects alone agree with the reference', () => {
    const base = referenceScore(pairs, new Map());
    const first = result.chosen[0]!;
    const alone = referenceScore(pairs, editOf([first], refMeans));
    expect(first.deltaA).toBeCloseTo(alone.meanA - base.meanA, 3);
    expect(first.deltaB).toBeCloseTo(alone.meanB - base.meanB, 3);
    expect(first.deltaMargin).toBeCloseTo(alone.margin - base.margin, 3);
  }, 300_000);

  test('with a margin limit of 0 the chosen set keeps the reference margin and each neuron alone did too', () => {
    const base = referenceScore(pairs, new Map());
    expect(tight.chosen.length).toBeGreaterThan(0);
    const after = referenceScore(pairs, editOf(tight.chosen, refMeans));
    expect(after.margin).toBeGreaterThanOrEqual(base.margin - 1e-4);
    for (const e of tight.chosen) expect(e.deltaMargin).toBeGreaterThanOrEqual(0);
  }, 300_000);

  test('removal instead of replacement: the reference agrees on the chosen set with zeroed neurons', async () => {
    const zeroed = await NeuronMaskedModel.create(onnxPath, { threads: 1 });
    try {
      const [score] = await new BehaviourProbe(zeroed, tokenizer, pairs, { texts, choices }).score([result.chosen], { a: true, b: true, nll: true });
      const expected = referenceScore(pairs, editOf(result.chosen));
      expect(score!.meanA).toBeCloseTo(expected.meanA, 3);
      expect(score!.meanB).toBeCloseTo(expected.meanB, 3);
      expect(score!.margin).toBeCloseTo(expected.margin, 3);
    } finally {
      await zeroed.release();
    }
  }, 300_000);
});
