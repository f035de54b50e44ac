import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DATA, fixtureDir } from '@fairprune/fixtures';
import { measureBehaviour } from '../../src/bias/behaviour.js';
import { readPairsFile, type PromptPair } from '../../src/bias/pairs.js';
import { openModelFolder } from '../../src/model/folder.js';
import { writePrunedFolder } from '../../src/prune/apply.js';
import { BEHAVIOUR_DEFAULTS, BehaviourProbe, meanGap, selectByBehaviour, type BehaviourSelection } from '../../src/prune/behaviour-select.js';
import { runFairnessPruning } from '../../src/prune/run.js';
import { NeuronMaskedModel } from '../../src/runtime/neuron-masks.js';
import { ModelSession } from '../../src/runtime/session.js';

const root = mkdtempSync(join(tmpdir(), 'fp-behaviour-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const llama = fixtureDir('llama');
const tokenizer = openModelFolder(llama).tokenizer;
const calibration = readFileSync(DATA.lambadaMini, 'utf8').trim().split('\n').slice(0, 8).map((l) => (JSON.parse(l) as { text: string }).text);
let pairs: PromptPair[];
let written = 0;

/** Independent path: the model written to disk without `neurons`, measured by measureBehaviour and a log-softmax written here. */
async function measureRemoved(neurons: Map<number, number[]>): Promise<{ a: number[]; b: number[]; nll: number }> {
  const dir = join(root, `removed-${written++}`);
  writePrunedFolder(llama, dir, { selection: neurons, mode: 'remove', onnxFiles: ['onnx/model.onnx'], safetensors: false });
  const session = await ModelSession.create(join(dir, 'onnx/model.onnx'), { threads: 1 });
  try {
    const behaviour = await measureBehaviour(session, tokenizer, pairs);
    let nll = 0;
    let count = 0;
    for (const text of calibration) {
      const ids = tokenizer.encode(text);
      const { logits, dims } = await session.forward([ids]);
      const vocab = dims[2];
      for (let t = 1; t < ids.length; t++) {
        const row = Array.from(logits.subarray((t - 1) * vocab, t * vocab));
        const max = Math.max(...row);
        const logZ = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
        nll += logZ - row[ids[t]!]!;
        count++;
      }
    }
    return { a: behaviour.map((r) => r.logOddsA), b: behaviour.map((r) => r.logOddsB), nll: nll / count };
  } finally {
    await session.release();
  }
}

const avg = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
const guardItems = readFileSync(DATA.boolqCalibration, 'utf8')
  .trim()
  .split('\n')
  .slice(0, 6)
  .map((l) => JSON.parse(l) as { question: string; passage: string; label: number })
  .map((d) => ({ context: `${d.passage}\nQuestion: ${d.question}?\nAnswer:`, choices: [' no', ' yes'], label: d.label }));

describe('behaviour selection on the llama fixture (4 selection pairs, layer 3)', () => {
  let model: NeuronMaskedModel;
  let probe: BehaviourProbe;
  let result: BehaviourSelection;
  const options = { ...BEHAVIOUR_DEFAULTS, compensate: 'none' as const, maxNeurons: 6, layers: [3] };
  beforeAll(async () => {
    pairs = (await readPairsFile(DATA.behaviourSelection)).slice(0, 4);
    model = await NeuronMaskedModel.create(join(llama, 'onnx/model.onnx'), { threads: 1 });
    probe = new BehaviourProbe(model, tokenizer, pairs, { texts: calibration });
    result = await selectByBehaviour(probe, model.widths, options);
  }, 600_000);
  afterAll(async () => model?.release());

  test('the probe scores a set of removed neurons as the pruned model on disk does (≤ 1e-4)', async () => {
    const neurons = new Map([[1, [5, 77]], [3, [10, 200]]]);
    const [score] = await probe.score([[...neurons].flatMap(([layer, ns]) => ns.map((neuron) => ({ layer, neuron })))], { a: true, b: true, nll: true });
    const expected = await measureRemoved(neurons);
    expected.a.forEach((v, i) => expect(score!.logOddsA[i]).toBeCloseTo(v, 4));
    expected.b.forEach((v, i) => expect(score!.logOddsB[i]).toBeCloseTo(v, 4));
    expect(score!.nll).toBeCloseTo(expected.nll, 4);
  }, 120_000);

  test('chosen neurons: effects measured alone and the set as a whole agree with the pruned models on disk', async () => {
    expect(result.chosen.length).toBeGreaterThan(0);
    expect(result.chosen.length).toBeLessThanOrEqual(6);
    expect(result.layers.slice(0, 3).every((l) => l.length === 0)).toBe(true);
    const base = await measureRemoved(new Map());
    expect(result.before.meanA).toBeCloseTo(avg(base.a), 4);
    // The first-ranked neuron alone.
    const first = result.chosen[0]!;
    const alone = await measureRemoved(new Map([[first.layer, [first.neuron]]]));
    expect(first.deltaA).toBeCloseTo(avg(alone.a) - avg(base.a), 4);
    expect(first.deltaB).toBeCloseTo(avg(alone.b) - avg(base.b), 4);
    expect(first.deltaA).toBeLessThan(0);
    // The whole set: side A lower, side B and the NLL within their limits, as measured on disk.
    const set = await measureRemoved(new Map([[3, result.layers[3]!]]));
    expect(result.after.meanA).toBeCloseTo(avg(set.a), 4);
    expect(result.after.meanB).toBeCloseTo(avg(set.b), 4);
    expect(avg(set.a)).toBeLessThan(avg(base.a));
    expect(avg(set.a) - avg(set.b)).toBeLessThan(avg(base.a) - avg(base.b));
    expect(avg(set.b) - avg(base.b)).toBeLessThanOrEqual(options.sideBTolerance + 1e-6);
    expect(set.nll - base.nll).toBeLessThanOrEqual(options.maxNllIncrease + 1e-6);
  }, 120_000);

  test('every neuron of the layer is measured alone; each chosen one kept its own limits and the set narrowed the gap', () => {
    expect(result.measured).toBe(256);
    for (const e of result.chosen) {
      expect(e.deltaB).toBeLessThanOrEqual(options.sideBTolerance);
      expect(e.deltaNll).toBeLessThanOrEqual(options.maxNllIncrease);
    }
    expect(meanGap(result.after)).toBeLessThan(meanGap(result.before));
  });

  test('greedy: each step re-measures candidates with the chosen set; the set measured on disk agrees and keeps the limits', async () => {
    const greedy = await selectByBehaviour(probe, model.widths, { ...options, maxNeurons: 3, greedy: true, greedyCandidates: 8 });
    expect(greedy.chosen.length).toBeGreaterThan(0);
    const base = await measureRemoved(new Map());
    const set = await measureRemoved(new Map([[3, greedy.layers[3]!]]));
    expect(greedy.after.meanA).toBeCloseTo(avg(set.a), 4);
    expect(greedy.after.meanB).toBeCloseTo(avg(set.b), 4);
    expect(avg(set.a) - avg(set.b)).toBeLessThan(avg(base.a) - avg(base.b));
    expect(avg(set.b) - avg(base.b)).toBeLessThanOrEqual(options.sideBTolerance + 1e-6);
    expect(set.nll - base.nll).toBeLessThanOrEqual(options.maxNllIncrease + 1e-6);
  }, 120_000);
});

test('prune --method behaviour end to end: defaults mode zero and mean compensation; the plan records the objective and effects', async () => {
  const selection = (await readPairsFile(DATA.behaviourSelection)).slice(0, 2);
  const out = join(root, 'pruned');
  const result = await runFairnessPruning(llama, {
    outDir: out,
    pairs: selection,
    pairsSource: 'behaviour-selection.json[0:2]',
    method: 'behaviour',
    behaviour: { maxNeurons: 3, ability: { items: guardItems, source: 'boolq-calibration[0:6]' } },
    layers: [2],
    calibrationTexts: calibration,
    calibrationSource: 'lambada-mini[0:8]',
    analyzeAfter: false,
    threads: 1,
  });
  expect(result.plan.mode).toBe('zero');
  expect(result.plan.options['method']).toBe('behaviour');
  expect(result.plan.options['compensate']).toBe('mean');
  const record = result.plan.behaviour!;
  expect(record.objective).toContain('log Σ p(negative continuations) − log Σ p(positive continuations)');
  expect(record.settings.sideBTolerance).toBe(BEHAVIOUR_DEFAULTS.sideBTolerance);
  expect(record.settings.compensate).toBe('mean');
  expect(record.chosen.map((c) => c.neuron).sort((a, b) => a - b)).toEqual(result.plan.layers['2']);
  expect(record.after.gap).toBeLessThan(record.before.gap);
  // The answer-margin guard: its source and size, and the margin before and after within the default limit.
  expect(record.ability).toEqual({ source: 'boolq-calibration[0:6]', items: 6 });
  expect(record.settings.maxMarginDrop).toBe(BEHAVIOUR_DEFAULTS.maxMarginDrop);
  expect(record.before.margin).toEqual(expect.any(Number));
  expect(record.before.margin! - record.after.margin!).toBeLessThanOrEqual(BEHAVIOUR_DEFAULTS.maxMarginDrop + 1e-6);
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  expect(config['mlp_bias']).toBe(true);
  expect(existsSync(join(out, 'onnx/model.onnx'))).toBe(true);
}, 600_000);

test('prune --method behaviour refuses pairs without continuations and missing calibration texts, before loading', async () => {
  await expect(runFairnessPruning(llama, { outDir: join(root, 'x'), method: 'behaviour', calibrationTexts: calibration })).rejects.toThrow(
    /--method behaviour needs pairs with "negative" and "positive" continuations; the built-in seed pair has none/,
  );
  const withContinuations = (await readPairsFile(DATA.behaviourSelection)).slice(0, 1);
  await expect(runFairnessPruning(llama, { outDir: join(root, 'x'), method: 'behaviour', pairs: withContinuations })).rejects.toThrow(/need calibration texts \(--calibration FILE\)/);
  await expect(
    runFairnessPruning(llama, { outDir: join(root, 'x'), method: 'behaviour', pairs: withContinuations, calibrationTexts: calibration, mode: 'remove' }),
  ).rejects.toThrow(/a behaviour selection removes a different number of neurons per layer.*--mode zero/);
});
