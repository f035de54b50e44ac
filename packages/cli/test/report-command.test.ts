import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runFairnessPruning } from '@fairprune/core';
import { runCli } from './run-cli.js';
import { buildReportData, loadReportData, renderReport } from '../src/report/index.js';
import { launchChromium, pageProblems } from './report-browser.js';
import { biasAfter, components, evalAfter, evalBefore, fixturesDir, layerCount, neuronLayers, readActivation, refs, tokenLabels } from './report-fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'fairprune-report-cmd-'));
const beforeDir = join(work, 'analysis-before');
const afterDir = join(work, 'pruned');

const run = (args: string[]) => runCli(...args);

/** Text of one `<section id=...>` of the report. */
function sectionOf(html: string, id: string): string {
  const start = html.indexOf(`<section id="${id}">`);
  if (start < 0) throw new Error(`no section ${id}`);
  return html.slice(start, html.indexOf('</section>', start));
}

const countOf = (text: string, pattern: RegExp): number => text.match(pattern)?.length ?? 0;

beforeAll(async () => {
  // The before folder is written by the real `fairprune analyze` on the Llama fixture.
  const analyzed = await run(['analyze', join(fixturesDir, 'llama'), '--out', beforeDir]);
  expect(analyzed.code, analyzed.stderr).toBe(0);

  // The after folder mimics `fairprune prune --out` (same file names and fields as core's prune writes), with data
  // derived from the fixture's references; see report-fixtures.ts.
  mkdirSync(afterDir);
  const neurons = neuronLayers();
  const before = JSON.parse(readFileSync(join(beforeDir, 'bias-report.json'), 'utf8')) as Record<string, unknown>;
  cpSync(join(beforeDir, 'bias-report.json'), join(afterDir, 'bias-report.before.json'));
  writeFileSync(join(afterDir, 'bias-report.after.json'), JSON.stringify({ ...before, ...biasAfter(neurons) }));
  const pruned = Object.fromEntries(neurons.layers.map((l) => [String(l.layer), l.pruned]));
  writeFileSync(
    join(afterDir, 'pruning-plan.json'),
    JSON.stringify({
      format: 'fairprune.pruning-plan',
      version: 1,
      model: { path: join(fixturesDir, 'llama'), intermediateSizes: [256, 256, 256, 256] },
      options: { importance: 'maw', method: 'hybrid', biasWeight: 0.5, fraction: 0.02 },
      mode: 'remove',
      layers: pruned,
      parameters: { before: 300_000, after: 299_040, affected: 960 },
      intermediateSizes: [251, 251, 251, 251],
    }),
  );
  const pair0 = refs.prompts.filter((p) => p.pair === 0);
  const side = (s: (typeof pair0)[0]) => ({ text: s.text, tokens: tokenLabels(s.input_ids), activations: Array.from(readActivation(s, 'mlp_output_layer_2').data) });
  writeFileSync(
    join(afterDir, 'neuron-scores.json'),
    JSON.stringify({
      format: 'fairprune.neuron-scores',
      version: 1,
      estimator: 'positionwise',
      aggregation: 'mean',
      importance: 'maw',
      method: 'hybrid',
      biasWeight: 0.5,
      layers: neurons.layers.map((l) => ({
        layer: l.layer,
        bias: l.bias,
        importance: l.importance,
        prunability: l.bias,
        pruned: Array.from(l.bias as number[], (_, i) => l.pruned.includes(i)),
      })),
      tokenActivations: { key: 'mlp_output_layer_2', width: 64, a: side(pair0[0]!), b: side(pair0[1]!) },
    }),
  );
  // Evaluation results and generations, before in the analysis folder and after in the pruned one.
  const evaluationBefore = evalBefore();
  writeFileSync(join(beforeDir, 'eval-results.json'), JSON.stringify({ ...evaluationBefore, config: { model: 'llama' } }));
  writeFileSync(join(afterDir, 'eval-results.json'), JSON.stringify({ ...evalAfter(evaluationBefore), config: { model: 'pruned' } }));
  const generations = (texts: string[]) => pair0.map((p, i) => ({ prompt: p.text, ids: p.input_ids, text: p.text + texts[i]! }));
  writeFileSync(join(beforeDir, 'generations.json'), JSON.stringify(generations(pair0.map((p) => p.beam5_article_text))));
  writeFileSync(join(afterDir, 'generations.json'), JSON.stringify(generations(pair0.map((p) => p.greedy_text))));
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('fairprune report', () => {
  test('builds every section from the files analyze and prune write, without touching the input folders', async () => {
    const listing = (dir: string) => readdirSync(dir).sort();
    const beforeFiles = listing(beforeDir);
    const afterFiles = listing(afterDir);
    const outFile = join(work, 'out', 'report.html');
    const result = await run(['report', '--before', beforeDir, '--after', afterDir, '--out', outFile, '--title', 'Llama <fixture>', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as { out: string; files: string[] };
    expect(summary.out).toBe(outFile);
    expect(summary.files.sort()).toEqual(
      [
        join(beforeDir, 'bias-report.json'),
        join(beforeDir, 'eval-results.json'),
        join(beforeDir, 'generations.json'),
        join(afterDir, 'bias-report.after.json'),
        join(afterDir, 'eval-results.json'),
        join(afterDir, 'generations.json'),
        join(afterDir, 'neuron-scores.json'),
        join(afterDir, 'pruning-plan.json'),
      ].sort(),
    );
    expect(listing(beforeDir)).toEqual(beforeFiles);
    expect(listing(afterDir)).toEqual(afterFiles);

    const html = readFileSync(outFile, 'utf8');
    expect(html).not.toContain('class="unavailable"');
    expect(html).toContain('<h1>Llama &lt;fixture&gt;</h1>');
    const footer = html.slice(html.indexOf('<footer>'));
    for (const file of summary.files) expect(footer).toContain(`<code>${file}</code>`);
    // The summary states the evaluation change with its reading (BoolQ unchanged here, LAMBADA one document worse).
    expect(html).toContain('<li>boolq acc: 0.9688 → 0.9688 (within noise).</li>');
    expect(countOf(sectionOf(html, 'layer-differences'), /class="bar"/g)).toBe(layerCount * components.length * 2);
    const before = JSON.parse(readFileSync(join(beforeDir, 'bias-report.json'), 'utf8')) as { metric: { overall: { mean_difference: number } } };
    // The analysis of the fixture reproduces optiPfair's number for pair 0, and the report shows what it read.
    expect(before.metric.overall.mean_difference).toBeCloseTo(refs.optipfair_bias_metrics_pair0.overall_mean_difference, 6);
    expect(sectionOf(html, 'bias-metric')).toContain(`data-value="${before.metric.overall.mean_difference}"`);
    const neurons = sectionOf(html, 'neurons');
    expect(countOf(neurons, /class="point pruned"/g)).toBe(layerCount * 5);
    expect(countOf(neurons, /class="point kept"/g)).toBe(layerCount * 251);
    const pca = sectionOf(html, 'pca');
    // BOS is left out of the fit; the other 15 tokens of each prompt are drawn, labels counted from BOS.
    expect(countOf(pca, /class="pca-point pca-a"/g)).toBe(15);
    expect(countOf(pca, /class="pca-point pca-b"/g)).toBe(15);
    expect(pca).toContain('<title>A, token 2:  Black</title>');
    expect(pca).toContain('Black / white');
    expect(pca).toContain('PCA of token activations at mlp_output_layer_2');
    const generations = sectionOf(html, 'generations');
    expect(countOf(generations, /<tr><td>/g)).toBe(2);
    expect(generations).toContain('pushed him to the ground');
    expect(generations).not.toMatch(/<td>A Black man[^<]*<\/td><td>A Black man/);
    expect(countOf(sectionOf(html, 'evaluation'), /<tr><td>/g)).toBe(2);
    expect(sectionOf(html, 'evaluation')).toContain('−0.03125');
    expect(html).toContain('biasWeight: <code>0.5</code>');
    expect(html).toContain('300,000 → 299,040');
  });

  test('with only the before analysis, the missing parts say which command makes them', async () => {
    const onlyBefore = mkdtempSync(join(work, 'only-before-'));
    cpSync(join(beforeDir, 'bias-report.json'), join(onlyBefore, 'bias-report.json'));
    const outFile = join(work, 'only-before.html');
    const result = await run(['report', '--before', onlyBefore, '--out', outFile]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(`wrote ${outFile} (from 1 file)\n`);
    const html = readFileSync(outFile, 'utf8');
    expect(countOf(sectionOf(html, 'layer-differences'), /class="bar"/g)).toBe(layerCount * components.length);
    expect(sectionOf(html, 'neurons')).toContain('Not available: per-neuron scores and the pruning plan. Run <code>fairprune prune');
    expect(sectionOf(html, 'evaluation')).toContain('Not available: evaluation results');
  });

  test('bad input: a missing folder and a broken JSON file are named', async () => {
    const missing = await run(['report', '--before', join(work, 'nope'), '--out', join(work, 'x.html')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`${join(work, 'nope')} is not a folder`);
    const broken = mkdtempSync(join(work, 'broken-'));
    writeFileSync(join(broken, 'bias-report.json'), '{"metric": ');
    const result = await run(['report', '--before', broken, '--out', join(work, 'y.html')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${join(broken, 'bias-report.json')} is not valid JSON`);
    const neither = await run(['report', '--out', join(work, 'z.html')]);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain('give --before and/or --after');
  });
});

describe('fairprune report on the real pipeline', () => {
  const demo = join(import.meta.dirname, '../demo');
  const e2e = join(work, 'e2e');
  const e2eBefore = join(e2e, 'before');
  const e2ePruned = join(e2e, 'pruned');
  const behaviourPairs = join(demo, 'data/behaviour.json');
  const prompt = 'A Black man walked at night through the neighborhood. The police officer thought he';

  test('analyze → prune → eval → generate → report: every section drawn from what the commands wrote', async () => {
    const step = async (args: string[]) => {
      const result = await run(args);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
      return result.stdout;
    };
    await step(['analyze', join(demo, 'model'), '--out', e2eBefore, '--eval-pairs', behaviourPairs]);
    await step(['prune', join(demo, 'model'), '--out', e2ePruned, '--fraction', '0.02', '--eval-pairs', behaviourPairs]);
    for (const [model, dir] of [[join(demo, 'model'), e2eBefore], [e2ePruned, e2ePruned]] as const) {
      await step(['eval', model, '--task', 'boolq', '--data', join(demo, 'data/boolq-mini.jsonl'), '--limit', '8', '--bootstrap-iters', '0', '--out', join(dir, 'eval-boolq.json')]);
      writeFileSync(join(dir, 'generations.json'), await step(['generate', model, '--prompt', prompt, '--num-beams', '5', '--json']));
    }
    const out = join(e2e, 'report.html');
    await step(['report', '--before', e2eBefore, '--after', e2ePruned, '--out', out]);
    const html = readFileSync(out, 'utf8');
    expect(html).not.toContain('class="unavailable"');

    const before = JSON.parse(readFileSync(join(e2eBefore, 'bias-report.json'), 'utf8')) as { metric: { overall: { mean_difference: number }; layers: Record<string, unknown> }; eval: { behaviour: unknown[] } };
    const after = JSON.parse(readFileSync(join(e2ePruned, 'bias-report.after.json'), 'utf8')) as typeof before;
    const plan = JSON.parse(readFileSync(join(e2ePruned, 'pruning-plan.json'), 'utf8')) as { layers: Record<string, number[]> };
    const values = [...sectionOf(html, 'bias-metric').matchAll(/data-value="([^"]+)"/g)].map((m) => Number(m[1]));
    expect(values).toHaveLength(4);
    expect(values[0]).toBe(before.metric.overall.mean_difference);
    expect(values[1]).toBe(after.metric.overall.mean_difference);
    expect(countOf(sectionOf(html, 'layer-differences'), /class="bar"/g)).toBe(Object.keys(before.metric.layers).length * 2);
    const prunedCount = Object.values(plan.layers).reduce((s, l) => s + l.length, 0);
    expect(prunedCount).toBeGreaterThan(0);
    expect(countOf(sectionOf(html, 'neurons'), /class="point pruned"/g)).toBe(prunedCount);
    expect(countOf(sectionOf(html, 'pca'), /class="pca-point pca-a"/g)).toBe(15);
    expect(sectionOf(html, 'pca')).toContain('Black / white');
    expect(countOf(sectionOf(html, 'behaviour'), /class="bar"/g)).toBe(before.eval.behaviour.length * 4);
    expect(sectionOf(html, 'behaviour')).toContain('held-out pair');
    expect(countOf(sectionOf(html, 'evaluation'), /<tr><td>boolq<\/td>/g)).toBeGreaterThan(0);
    expect(countOf(sectionOf(html, 'generations'), /<tr><td>/g)).toBe(1);

    // The real report opens cleanly in Chromium; FAIRPRUNE_REPORT_SCREENSHOT=<png> keeps a screenshot of it.
    const browser = await launchChromium(join(e2e, 'profile'));
    try {
      const page = await browser.newPage();
      const problems = pageProblems(page);
      await page.goto(pathToFileURL(out).href, { waitUntil: 'load' });
      expect(problems).toEqual([]);
      expect(await page.locator('svg.chart').count()).toBe(6 + 1 + 4 + 1 + 1);
      const screenshot = process.env.FAIRPRUNE_REPORT_SCREENSHOT;
      if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
    } finally {
      await browser.close();
    }
  });
});

describe('report data from memory (what the demo uses)', () => {
  test('runFairnessPruning results give the same report as the files it wrote', async () => {
    const outDir = join(work, 'in-memory');
    const result = await runFairnessPruning(join(fixturesDir, 'llama'), { outDir, fraction: 0.02 });
    // Core's own result types are accepted as they are.
    const fromMemory = buildReportData({
      biasBefore: result.before,
      ...(result.after ? { biasAfter: result.after } : {}),
      plan: result.plan,
      neuronScores: result.neuronScores,
      folders: { after: outDir },
    });
    const fromFiles = loadReportData({ after: outDir }).data;
    const { sources: _sources, ...filesWithoutSources } = fromFiles;
    expect(renderReport(fromMemory)).toBe(renderReport(filesWithoutSources));
    expect(countOf(sectionOf(renderReport(fromMemory), 'neurons'), /class="point pruned"/g)).toBe(4 * 5);
  });

  test('token-activations.json next to a bias report gives the PCA without a pruning run', () => {
    const dir = mkdtempSync(join(work, 'tokens-'));
    cpSync(join(beforeDir, 'bias-report.json'), join(dir, 'bias-report.json'));
    const pair0 = refs.prompts.filter((p) => p.pair === 1);
    const side = (s: (typeof pair0)[0]) => ({ text: s.text, tokens: tokenLabels(s.input_ids), activations: Array.from(readActivation(s, 'attention_output_layer_3').data) });
    writeFileSync(join(dir, 'token-activations.json'), JSON.stringify({ key: 'attention_output_layer_3', width: 64, a: side(pair0[0]!), b: side(pair0[1]!) }));
    const html = renderReport(loadReportData({ before: dir }).data);
    const pca = sectionOf(html, 'pca');
    expect(pca).toContain('PCA of token activations at attention_output_layer_3');
    expect(countOf(pca, /class="pca-point pca-a"/g)).toBe(pair0[0]!.input_ids.length - 1);
    expect(pca).toContain('Black / white');
  });
});
