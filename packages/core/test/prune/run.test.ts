import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { analyzeBias, type BiasReport } from '../../src/bias/analyze.js';
import { loadPairs, type PromptPair } from '../../src/bias/pairs.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { writePrunedFolder } from '../../src/prune/apply.js';
import { readPlan } from '../../src/prune/plan.js';
import { runFairnessPruning, type PruneResult } from '../../src/prune/run.js';
import { readCardEval, updateCardEval, updateModelCardEval, type CardEvalEntry } from '../../src/prune/model-card.js';
import { parse as parseYaml } from 'yaml';
import { ModelSession } from '../../src/runtime/session.js';
import { FIXTURES } from '@fairprune/fixtures';

const llama = join(FIXTURES, 'llama');
const tmp = mkdtempSync(join(tmpdir(), 'fairprune-prune-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Parameter count read straight from a safetensors header. */
function safetensorsParameters(path: string): number {
  const bytes = readFileSync(path);
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8')) as Record<string, { shape?: number[] }>;
  return Object.entries(header).reduce((n, [k, v]) => (k === '__metadata__' ? n : n + v.shape!.reduce((a, b) => a * b, 1)), 0);
}

/** The mini-LAMBADA passages. */
function lambadaTexts(): string[] {
  return readFileSync(join(FIXTURES, 'data/lambada-mini.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { text: string }).text);
}

/** Mini-LAMBADA greedy accuracy, computed directly (lm-evaluation-harness protocol: no BOS, joint encoding split,
 *  every target token must be the argmax). Not @fairprune/eval. */
async function lambadaGreedyAccuracy(dir: string): Promise<number> {
  const tokenizer = loadTokenizer(dir);
  const session = await ModelSession.create(join(dir, 'onnx/model.onnx'));
  const docs = lambadaTexts();
  let correct = 0;
  for (const text of docs) {
    const cut = text.lastIndexOf(' ');
    const context = tokenizer.encode(text.slice(0, cut), { addSpecialTokens: false });
    const whole = tokenizer.encode(text, { addSpecialTokens: false });
    const target = whole.slice(context.length);
    const { logits, dims } = await session.forward([whole]);
    const vocab = dims[2];
    const ok = target.every((token, k) => {
      const row = logits.subarray((context.length + k - 1) * vocab, (context.length + k) * vocab);
      let best = 0;
      for (let v = 1; v < vocab; v++) if (row[v]! > row[best]!) best = v;
      return best === token;
    });
    if (ok) correct++;
  }
  await session.release();
  return correct / docs.length;
}

/** Selection on behaviour.json's pair 0, measurement on its held-out pair 1, as prune and analyze options. */
async function heldOutPairs() {
  const pairs = await loadPairs(join(FIXTURES, 'data/behaviour.json'));
  return { pairs: [pairs[0]!], pairsSource: 'behaviour.json#0', evalPairs: [pairs[1]!], evalPairsSource: 'behaviour.json#1' };
}

/** Two bias reports agree: the same fields and model, every number within `tolerance` (relative above 1); timings aside. */
function expectSameReport(got: BiasReport, want: BiasReport, tolerance: number): void {
  expect(got.model).toEqual(want.model);
  const close = (a: unknown, b: unknown, path: string): void => {
    if (typeof a === 'number' && typeof b === 'number') expect(Math.abs(a - b), path).toBeLessThanOrEqual(tolerance * Math.max(1, Math.abs(b)));
    else if (a && typeof a === 'object' && b && typeof b === 'object') {
      expect(Object.keys(a).sort(), path).toEqual(Object.keys(b).sort());
      for (const key of Object.keys(a)) close((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], `${path}.${key}`);
    } else expect(a, path).toEqual(b);
  };
  const { timings: _g, ...gotRest } = got;
  const { timings: _w, ...wantRest } = want;
  close(gotRest, wantRest, 'report');
}

describe('Fairness Pruning on the llama fixture: select on pair 0, measure on held-out pair 1', () => {
  let pairs: PromptPair[];
  let result: PruneResult;
  beforeAll(async () => {
    pairs = await loadPairs(join(FIXTURES, 'data/behaviour.json'));
    result = await runFairnessPruning(llama, {
      outDir: join(tmp, 'fair'),
      ...(await heldOutPairs()),
      importance: 'ppm',
      biasWeight: 0.5,
      fraction: 0.1,
    });
  });

  test('writes the model, the plan, both reports and the neuron scores', () => {
    for (const f of ['config.json', 'onnx/model.onnx', 'model.safetensors', 'pruning-plan.json', 'bias-report.before.json', 'bias-report.after.json', 'neuron-scores.json']) {
      expect(existsSync(join(result.outDir, f)), f).toBe(true);
    }
    const plan = JSON.parse(readFileSync(result.files.plan, 'utf8')) as { layers: Record<string, number[]> };
    expect(Object.values(plan.layers).map((l) => l.length)).toEqual([25, 25, 25, 25]);
    const config = JSON.parse(readFileSync(join(result.outDir, 'config.json'), 'utf8')) as { intermediate_size: number };
    expect(config.intermediate_size).toBe(231);
    // 25 neurons × 4 layers × (gate row + up row + down column of 64).
    const before = safetensorsParameters(join(llama, 'model.safetensors'));
    const after = safetensorsParameters(join(result.outDir, 'model.safetensors'));
    expect(result.plan.parameters).toEqual({ before, after, affected: 100 * 3 * 64 });
    const scores = result.neuronScores.layers[2]!;
    expect(scores.bias).toHaveLength(256);
    expect(scores.pruned.filter(Boolean)).toHaveLength(25);
    expect(scores.pruned.map((p, i) => (p ? i : -1)).filter((i) => i >= 0)).toEqual(result.plan.layers['2']);
  });

  test('bias-report.after.json equals a fresh analysis of the written folder (within 1e-5)', async () => {
    const written = JSON.parse(readFileSync(join(result.outDir, 'bias-report.after.json'), 'utf8')) as BiasReport;
    const fresh = (
      await analyzeBias(result.outDir, { ...(await heldOutPairs()), tokenActivations: false })
    ).report;
    expectSameReport(written, fresh, 1e-5);
    expect(written.metric!.overall.mean_difference).toBeGreaterThan(0);
  });

  test('the held-out gap falls by at least 25%; both sides are reported', () => {
    const before = result.before.eval!.behaviour[0]!;
    const after = result.after!.eval!.behaviour[0]!;
    console.log(`held-out gap ${before.gap.toFixed(3)} → ${after.gap.toFixed(3)}; sides a ${before.logOddsA.toFixed(3)} → ${after.logOddsA.toFixed(3)}, b ${before.logOddsB.toFixed(3)} → ${after.logOddsB.toFixed(3)}`);
    expect(before.gap).toBeCloseTo(3.59, 1);
    expect(after.gap).toBeLessThanOrEqual(0.75 * before.gap);
    expect(Number.isFinite(after.logOddsA) && Number.isFinite(after.logOddsB)).toBe(true);
    expect(result.after!.metric!.overall.mean_difference).toBeLessThan(result.before.metric!.overall.mean_difference);
  });

  test('a random pruning of the same size barely moves the gap', async () => {
    // Deterministic LCG so the test is reproducible.
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const selection = new Map<number, number[]>();
    for (let layer = 0; layer < 4; layer++) {
      const chosen = new Set<number>();
      while (chosen.size < 25) chosen.add(Math.floor(next() * 256));
      selection.set(layer, [...chosen]);
    }
    const out = join(tmp, 'random');
    writePrunedFolder(llama, out, { selection, mode: 'remove' });
    const { report } = await analyzeBias(out, { pairs: [pairs[1]!], tokenActivations: false });
    const before = result.before.eval!.behaviour[0]!.gap;
    const random = report.behaviour[0]!.gap;
    console.log(`random pruning: held-out gap ${before.toFixed(3)} → ${random.toFixed(3)}`);
    expect(Math.abs(random - before) / before).toBeLessThan(0.1);
  });

  test('mini-LAMBADA greedy accuracy stays ≥ 0.95', async () => {
    const accuracy = await lambadaGreedyAccuracy(result.outDir);
    console.log(`mini-LAMBADA greedy accuracy after pruning: ${accuracy}`);
    expect(accuracy).toBeGreaterThanOrEqual(0.95);
  });

  test('--plan re-applies exactly: same indices, byte-identical weights', async () => {
    const plan = await readPlan(result.files.plan);
    const again = await runFairnessPruning(llama, { outDir: join(tmp, 'again'), plan, pairs: [pairs[0]!], analyzeAfter: false });
    expect(again.plan.layers).toEqual(plan.layers);
    expect(readFileSync(join(again.outDir, 'model.safetensors')).equals(readFileSync(join(result.outDir, 'model.safetensors')))).toBe(true);
    expect(readFileSync(join(again.outDir, 'onnx/model.onnx')).equals(readFileSync(join(result.outDir, 'onnx/model.onnx')))).toBe(true);
    // A plan made on other weights is refused.
    await expect(
      runFairnessPruning(llama, { outDir: join(tmp, 'other'), plan: { ...plan, model: { ...plan.model, weightsHash: '0'.repeat(64) } }, analyzeAfter: false }),
    ).rejects.toThrow(/plan was made on weights with hash 000000000000….*--plan-mismatch-ok/);
    expect(existsSync(join(tmp, 'other'))).toBe(false);
  });

  test('a plan made on other weights, applied with applyToOtherWeights, records this model and the plan\'s origin', async () => {
    const plan = await readPlan(result.files.plan);
    const foreign = { ...plan, createdAt: '2020-01-01T00:00:00.000Z', model: { ...plan.model, path: '/elsewhere/model', weightsHash: '0'.repeat(64) } };
    const applied = await runFairnessPruning(llama, { outDir: join(tmp, 'applied'), plan: foreign, applyToOtherWeights: true, pairs: [pairs[0]!], analyzeAfter: false });
    const written = await readPlan(applied.files.plan);
    expect(written.layers).toEqual(plan.layers);
    expect(written.model.path).toBe(llama);
    expect(written.model.weightsHash).toBe(plan.model.weightsHash);
    expect(written.origin).toEqual({ model: foreign.model, createdAt: foreign.createdAt });
    const pruned = Object.values(plan.layers).reduce((n, l) => n + l.length, 0);
    expect(written.parameters.before).toBe(safetensorsParameters(join(llama, 'model.safetensors')));
    expect(written.parameters.after).toBe(safetensorsParameters(join(applied.outDir, 'model.safetensors')));
    expect(written.parameters.before - written.parameters.after).toBe(pruned * 3 * 64);
  });
});

/** Architectures, ONNX forms and modes the masked verify must reproduce: fused gate_up (phi3), KV export, external data, dynamo, fp16. */
const verifyCases = [
  ['llama', 'onnx/model.onnx', 'zero', 'none'],
  ['llama', 'onnx/model.onnx', 'remove', 'mean'],
  ['llama', 'onnx/model_kv.onnx', 'remove', 'none'],
  ['llama', 'onnx/model_fp16.onnx', 'remove', 'mean'],
  ['phi3', 'onnx/model.onnx', 'remove', 'none'],
  ['phi3', 'onnx/model_dynamo.onnx', 'zero', 'mean'],
  ['qwen2', 'onnx/model_external.onnx', 'remove', 'none'],
  ['gemma', 'onnx/model.onnx', 'remove', 'mean'],
  ['gemma3', 'onnx/model_kv.onnx', 'zero', 'none'],
] as const;

describe.each(verifyCases)('%s %s, %s, compensate %s: bias-report.after.json equals a fresh analysis of the written folder', (arch, form, mode, compensate) => {
  test('every field, the after-report on the open session vs a new session over the written files; the before-report unchanged by the masks', async () => {
    const { evalPairs, evalPairsSource } = await heldOutPairs();
    const calibrationTexts = lambadaTexts().slice(0, 3);
    const analysis = { onnxFile: form, evalPairs, evalPairsSource, tokenActivations: false } as const;
    const result = await runFairnessPruning(join(FIXTURES, arch), {
      ...analysis,
      outDir: join(tmp, `verify-${arch}-${form.replace(/\W/g, '_')}-${mode}-${compensate}`),
      mode,
      compensate,
      calibrationTexts,
      fraction: 0.1,
      safetensors: false,
    });
    const fresh = (await analyzeBias(result.outDir, analysis)).report;
    const written = JSON.parse(readFileSync(result.files.after!, 'utf8')) as BiasReport;
    // fp16 rounds every intermediate (~5e-4 relative): the written model sums fewer columns and a stored fp16 bias
    // where the session sums masked columns plus the cast means, a few roundings apart.
    expectSameReport(written, fresh, form.includes('fp16') ? 5e-3 : 1e-5);
    // The pruning is seen: removed widths in the report, and the held-out behaviour moved.
    expect(written.model.intermediateSizes).toEqual(result.plan.intermediateSizes);
    expect(written.eval!.behaviour[0]!.gap).not.toBe(result.before.eval!.behaviour[0]!.gap);
    expect(result.timings['checkWritten']).toBeGreaterThan(0);
    // The mask inputs, all ones while the original is measured, change nothing: the before-report is exactly a plain analysis's.
    expectSameReport(result.before, (await analyzeBias(join(FIXTURES, arch), analysis)).report, 0);
  });
});


describe('the model card of the pruned folder', () => {
  let result: PruneResult;
  const EVAL_START = '<!-- fairprune:eval:start -->';
  const EVAL_END = '<!-- fairprune:eval:end -->';
  /** The card without its evaluation section. */
  const outside = (card: string) => card.slice(0, card.indexOf(EVAL_START)) + card.slice(card.indexOf(EVAL_END));
  const frontMatter = (card: string) => parseYaml(/^---\n([\s\S]*?)\n---\n/.exec(card)![1]!) as Record<string, unknown>;
  beforeAll(async () => {
    // A base folder with a card and a hub name, as a download from the hub has them.
    const base = join(tmp, 'card-base');
    mkdirSync(join(base, 'onnx'), { recursive: true });
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx']) copyFileSync(join(llama, f), join(base, f));
    const config = JSON.parse(readFileSync(join(llama, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(base, 'config.json'), JSON.stringify({ ...config, _name_or_path: 'example-org/tiny-llama' }));
    writeFileSync(join(base, 'README.md'), '---\nlicense: llama3.2\nlanguage:\n- en\n---\n# tiny llama\n');
    result = await runFairnessPruning(base, {
      outDir: join(tmp, 'fair-card'),
      ...(await heldOutPairs()),
      importance: 'ppm',
      fraction: 0.05,
    });
  });

  test('YAML front matter: base model and license from the base folder, the tags, pipeline and library', () => {
    const card = readFileSync(result.files.card, 'utf8');
    expect(result.files.card).toBe(join(result.outDir, 'README.md'));
    const front = frontMatter(card);
    expect(front).toMatchObject({ base_model: 'example-org/tiny-llama', license: 'llama3.2', pipeline_tag: 'text-generation', library_name: 'onnx' });
    expect(front['tags']).toEqual(expect.arrayContaining(['fairprune', 'pruned']));
  });

  test('the body names the removed counts from the plan, the parameters, every option and both sides of the gaps', () => {
    const card = readFileSync(result.files.card, 'utf8');
    const plan = JSON.parse(readFileSync(result.files.plan, 'utf8')) as { layers: Record<string, number[]>; parameters: { before: number; after: number } };
    for (const [layer, indices] of Object.entries(plan.layers)) expect(card).toContain(`| ${layer} | ${indices.length} | 256 → ${256 - indices.length} |`);
    expect(card).toContain(`${plan.parameters.before.toLocaleString('en-US')} before, ${plan.parameters.after.toLocaleString('en-US')} after`);
    expect(card).toContain('| importance | ppm |');
    expect(card).toContain('| fraction | 0.05 |');
    const b = result.before.eval!.behaviour[0]!;
    const a = result.after!.eval!.behaviour[0]!;
    expect(card).toContain(`| ${b.logOddsA.toFixed(3)} → ${a.logOddsA.toFixed(3)} | ${b.logOddsB.toFixed(3)} → ${a.logOddsB.toFixed(3)} | ${b.gap.toFixed(3)} → ${a.gap.toFixed(3)} |`);
    expect(card).toContain(`| overall | ${result.before.metric!.overall.mean_difference.toFixed(6)} | ${result.after!.metric!.overall.mean_difference.toFixed(6)} |`);
    expect(card).toContain('fairprune prune example-org/tiny-llama --out fair-card --plan pruning-plan.json');
    expect(card).toContain('## Limitations');
    expect(readCardEval(card)).toEqual([]);
  });

  test('an eval updates exactly its section; tasks accumulate, a task evaluated again replaces its row', () => {
    const card = readFileSync(result.files.card, 'utf8');
    const boolq: CardEvalEntry = { task: 'boolq', metrics: { acc: 0.625, acc_stderr: 0.0869 }, documents: 32, total: 3270, bos: false, date: '2026-11-30T14:00:00.000Z' };
    const lambada: CardEvalEntry = {
      task: 'lambada_openai',
      metrics: { perplexity: 12.5, perplexity_stderr: 'N/A', acc: 0.5, acc_stderr: 0.1 },
      documents: 5153,
      total: 5153,
      bos: true,
      date: '2026-11-30T15:00:00.000Z',
    };
    const once = updateCardEval(card, [boolq], 'fair-card');
    expect(outside(once)).toBe(outside(card));
    expect(once).toContain('| boolq | acc | 0.6250 | 0.0869 | 32 of 3270 | no | 2026-11-30T14:00:00.000Z |');
    const twice = updateCardEval(once, [lambada], 'fair-card');
    expect(outside(twice)).toBe(outside(card));
    expect(twice).toContain('| boolq | acc | 0.6250 |');
    expect(twice).toContain('| lambada_openai | perplexity | 12.5000 | n/a | 5153 | yes |');
    expect(twice).toContain('| lambada_openai | acc | 0.5000 | 0.1000 | 5153 | yes |');
    const again = updateCardEval(twice, [{ ...boolq, metrics: { acc: 0.75, acc_stderr: 0.07 } }], 'fair-card');
    expect(again).not.toContain('0.6250');
    expect(again.match(/\| boolq \| acc \|/g)).toHaveLength(1);
    expect(readCardEval(again).map((e) => e.task).sort()).toEqual(['boolq', 'lambada_openai']);
    expect(frontMatter(again)).toEqual(frontMatter(card));
    expect(() => updateCardEval('# not a fairprune card\n', [boolq], 'x')).toThrow(/no fairprune evaluation section/);
  });

  test('updateModelCardEval rewrites a card file, and leaves alone a folder without a card or with a linked one', async () => {
    const boolq: CardEvalEntry = { task: 'boolq', metrics: { acc: 0.5, acc_stderr: 0.1 }, documents: 4, total: 64, bos: false, date: '2026-11-30T14:00:00.000Z' };
    const copy = join(tmp, 'card-copy');
    mkdirSync(copy);
    writeFileSync(join(copy, 'README.md'), readFileSync(result.files.card));
    expect(await updateModelCardEval(copy, [boolq])).toBe(join(copy, 'README.md'));
    expect(readCardEval(readFileSync(join(copy, 'README.md'), 'utf8'))).toEqual([boolq]);
    const linked = join(tmp, 'card-linked');
    mkdirSync(linked);
    symlinkSync(join(copy, 'README.md'), join(linked, 'README.md'));
    const before = readFileSync(join(copy, 'README.md'), 'utf8');
    expect(await updateModelCardEval(linked, [{ ...boolq, task: 'lambada_openai' }])).toBeUndefined();
    expect(readFileSync(join(copy, 'README.md'), 'utf8')).toBe(before);
    expect(await updateModelCardEval(join(tmp, 'never-there'), [boolq])).toBeUndefined();
  });
});

describe('bad input fails before any model work', () => {
  const missing = '/nonexistent/model';
  const base = { outDir: join(tmp, 'never') };
  test.each([
    [{ fraction: 0 }, /Option fraction: expected a number strictly between 0 and 1, got 0/],
    [{ fraction: 1 }, /Option fraction: expected a number strictly between 0 and 1, got 1/],
    [{ biasWeight: 1.5 }, /Option biasWeight: expected a number in \[0, 1\], got 1\.5/],
    [{ biasWeight: -1 }, /Option biasWeight: expected a number in \[0, 1\], got -1/],
    [{ outDir: '' }, /Option outDir: expected the path of the output folder, got ""/],
    [{ importance: 'magic' }, /Option importance: expected one of maw, ppm, vow, pon, l2, got "magic"/],
    [{ method: 'magic' }, /Option method: expected one of hybrid, bias, behaviour, got "magic"/],
    [{ mode: 'cut' }, /Option mode: expected one of remove, zero, got "cut"/],
    [{ estimator: 'magic' }, /Option estimator: expected one of positionwise, pooled, glu, got "magic"/],
    [{ pairs: [], pairsSource: 'empty.json' }, /No prompt pairs in empty\.json/],
  ])('%o', async (options, message) => {
    await expect(runFairnessPruning(missing, { ...base, ...(options as object) })).rejects.toThrow(message);
  });

  test('all pairs skipped: error names the pairs before the weights are loaded, nothing written', async () => {
    // A folder whose tokenizer is real but whose ONNX file is garbage: only the tokenizer may be touched.
    const broken = join(tmp, 'broken-model');
    mkdirSync(join(broken, 'onnx'), { recursive: true });
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(llama, f), join(broken, f));
    writeFileSync(join(broken, 'onnx/model.onnx'), 'not an onnx file');
    const out = join(tmp, 'skipped');
    const pairs = [{ a: 'A Latino man walked.', b: 'A white man walked.' }];
    await expect(runFairnessPruning(broken, { outDir: out, pairs, pairsSource: 'mine.json' })).rejects.toThrow(/All 1 prompt pairs from mine\.json were skipped/);
    await expect(analyzeBias(broken, { pairs, pairsSource: 'mine.json' })).rejects.toThrow(/All 1 prompt pairs from mine\.json were skipped/);
    expect(existsSync(out)).toBe(false);
    // The same folder with usable pairs does reach the ONNX file (so the check above ran first).
    await expect(analyzeBias(broken, {})).rejects.toThrow(/model\.onnx/);
  });

  test('uneven removal from a safetensors folder is refused before the model is analysed', async () => {
    // The same garbage-ONNX folder, with the real safetensors: the refusal must come before the ONNX file is read.
    const folder = join(tmp, 'uneven-model');
    mkdirSync(join(folder, 'onnx'), { recursive: true });
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']) copyFileSync(join(llama, f), join(folder, f));
    writeFileSync(join(folder, 'onnx/model.onnx'), 'not an onnx file');
    const out = join(tmp, 'uneven');
    await expect(runFairnessPruning(folder, { outDir: out, globalTopK: 10 })).rejects.toThrow(/global top-K.*--mode zero.*--no-safetensors/);
    await expect(runFairnessPruning(folder, { outDir: out, layerFractions: { 0: 0.1, 3: 0.2 } })).rejects.toThrow(/per-layer fractions/);
    await expect(runFairnessPruning(folder, { outDir: out, layers: [1], fraction: 0.1 })).rejects.toThrow(/only layers 1 of 4/);
    expect(existsSync(out)).toBe(false);
    // Zero mode keeps the shapes, so it gets past the check and reaches the (broken) ONNX file.
    await expect(runFairnessPruning(folder, { outDir: out, globalTopK: 10, mode: 'zero' })).rejects.toThrow(/model\.onnx/);
  });

  test('an existing folder that fairprune did not write is refused before any work', async () => {
    await expect(runFairnessPruning(llama, { outDir: join(FIXTURES, 'data') })).rejects.toThrow(/data exists and was not written by fairprune/);
  });
});
