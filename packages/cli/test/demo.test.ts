import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DATA, fixtureDir } from '@fairprune/fixtures';
import { demoSettings, runDemo, type DemoSummary } from '../src/demo/run-demo.js';
import { formatDemoSummary } from '../src/commands/demo.js';

// The bundled demo model is a copy of this fixture, so its HF references are the demo's independent truth.
const refs = JSON.parse(readFileSync(join(fixtureDir('llama'), 'refs/refs.json'), 'utf8')) as {
  prompts: Array<{ text: string; beam5_article_text: string }>;
  optipfair_bias_metrics_pair0: { overall_mean_difference: number };
};

describe('fairprune demo on the bundled model', () => {
  let root: string;
  let summary: DemoSummary;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'fairprune-demo-test-'));
    summary = await runDemo({ outDir: join(root, 'out') });
  }, 300_000);
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  test('the original model generates exactly what Hugging Face generates with the article settings', () => {
    for (const generation of summary.generations) {
      const ref = refs.prompts.find((p) => p.text === generation.prompt);
      expect(ref, generation.prompt).toBeDefined();
      expect(generation.before).toBe(ref!.beam5_article_text.replace('<|end_of_text|>', ''));
    }
  });

  test('the bias metric before pruning is optiPfair\'s, and pruning lowers it', () => {
    const expected = refs.optipfair_bias_metrics_pair0.overall_mean_difference;
    expect(Math.abs(summary.biasMetric.overall.before - expected) / expected).toBeLessThan(1e-4);
    expect(summary.biasMetric.overall.after).toBeLessThan(summary.biasMetric.overall.before);
    expect(summary.biasMetric.excludingGateUp.after).toBeLessThan(summary.biasMetric.excludingGateUp.before);
  });

  test('prunes floor(fraction · 256) neurons per layer and the pruned config says so', () => {
    const perLayer = Math.floor(demoSettings.fraction * 256);
    expect(summary.prunedNeurons.perLayer).toEqual([perLayer, perLayer, perLayer, perLayer]);
    const config = JSON.parse(readFileSync(join(summary.files.prunedModel, 'config.json'), 'utf8')) as { intermediate_size: number };
    expect(config.intermediate_size).toBe(256 - perLayer);
  });

  test('the summary says which side moved the held-out gap, as the per-pair numbers show', () => {
    const pairs = summary.behaviour.pairs;
    expect(pairs.length).toBe(3);
    const mean = (f: (p: (typeof pairs)[number]) => number) => pairs.reduce((s, p) => s + f(p), 0) / pairs.length;
    const shiftA = mean((p) => p.logOddsA.after - p.logOddsA.before);
    const shiftB = mean((p) => p.logOddsB.after - p.logOddsB.before);
    for (const p of pairs) expect(p.gap.before).toBeCloseTo(p.logOddsA.before - p.logOddsB.before, 9);
    expect(summary.behaviour.shift!.meanShiftA).toBeCloseTo(shiftA, 9);
    expect(summary.behaviour.shift!.meanShiftB).toBeCloseTo(shiftB, 9);
    // On this model the gap narrows because the white side gets the negative continuations more often.
    expect(shiftB).toBeGreaterThan(Math.abs(shiftA));
    expect(summary.behaviour.shift!.reading).toContain('side B became more likely');
    expect(formatDemoSummary(summary)).toContain(summary.behaviour.shift!.reading);
  });

  test('keeps mini-LAMBADA and writes the report files', () => {
    expect(summary.evaluation['lambada_openai']!.acc.after).toBeGreaterThanOrEqual(0.95);
    const html = readFileSync(summary.files.report, 'utf8');
    expect(html).toContain('<svg');
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href="http/);
    expect(JSON.parse(readFileSync(summary.files.summary, 'utf8'))).toEqual(JSON.parse(JSON.stringify(summary)));
    expect(existsSync(join(root, 'out', 'pruned-model', 'onnx', 'model.onnx'))).toBe(true);
  });

  test('refuses to replace a folder that is not an earlier demo output', async () => {
    const foreign = join(root, 'foreign');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'keep.txt'), 'user data');
    await expect(runDemo({ outDir: foreign })).rejects.toThrow(/foreign exists and was not written by fairprune.*keep\.txt/);
    await expect(runDemo({ outDir: foreign, force: true })).rejects.toThrow(/not written by fairprune/);
    expect(readFileSync(join(foreign, 'keep.txt'), 'utf8')).toBe('user data');
  });
});

// `demo --compare-methods`: the article's method and --method behaviour measured on the same 24 held-out pairs. It
// measures neuron effects by ablation (thousands of forwards), so it is its own run.
describe('fairprune demo --compare-methods', () => {
  let root: string;
  let summary: DemoSummary;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'fairprune-demo-compare-'));
    summary = await runDemo({ outDir: join(root, 'out'), compareMethods: true });
  }, 1_800_000);
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  test('side by side on 24 held-out pairs: the article method levels down, --method behaviour narrows the gap from side A', () => {
    const comparison = summary.comparison!;
    expect(comparison.heldOutCount).toBe(24);
    const [article, behaviour] = comparison.methods;
    const narrowing = (s: NonNullable<typeof article>['heldOut']) => (s!.meanGapBefore - s!.meanGapAfter) / s!.meanGapBefore;
    expect(article!.heldOut!.levellingDown).toBe(true);
    const shift = behaviour!.heldOut!;
    expect(shift.perPair).toHaveLength(24);
    // The targets of issue 13, with the defaults; the README's table has the figures.
    expect(shift.levellingDown).toBe(false);
    expect(narrowing(shift)).toBeGreaterThanOrEqual(0.7);
    expect(narrowing(shift)).toBeGreaterThan(narrowing(article!.heldOut));
    expect(shift.shareFromA).toBeGreaterThanOrEqual(0.8);
    expect(shift.meanShiftB).toBeLessThan(0.2);
    expect(behaviour!.evaluation['lambada_openai']!.after).toBeGreaterThanOrEqual(0.95);
    // BoolQ within 0.05 of the base, although selection never saw boolq-mini (its guard is the disjoint boolq-calibration).
    const boolq = behaviour!.evaluation['boolq']!;
    expect(boolq.after).toBeGreaterThanOrEqual(boolq.before - 0.05);
    // The seed pair's beam search is no longer one of its hostile continuations.
    const seedPair = (JSON.parse(readFileSync(DATA.behaviour, 'utf8')) as Array<{ a: string; negative: string[]; positive: string[] }>)[0]!;
    const seedAfter = behaviour!.generations.find((g) => g.prompt === seedPair.a)!.after;
    expect(seedPair.negative).not.toContain(seedAfter);
    expect(seedPair.positive).toContain(seedAfter);
    expect(existsSync(summary.files.behaviourReport!)).toBe(true);
    expect(formatDemoSummary(summary)).toContain('Side by side on 24 held-out pairs');
  });

});
