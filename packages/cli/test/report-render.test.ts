import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { behaviourShift, renderReport, type ReportData } from '../src/report/index.js';
import { launchChromium, pageProblems } from './report-browser.js';
import { components, fullReportData, layerCount, prunedPerLayer } from './report-fixtures.js';

const workDir = mkdtempSync(join(tmpdir(), 'fairprune-report-'));
const data: ReportData = fullReportData();
const html = renderReport(data);

describe('report HTML as text', () => {
  test('is self-contained: no scripts, no external URLs, no web fonts', () => {
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<link/i);
    expect(html).not.toMatch(/@import|@font-face|url\(\s*['"]?https?:/i);
    // The only URL allowed is the SVG namespace identifier, which is never fetched.
    const urls = [...html.matchAll(/https?:\/\/[^\s"'<>)]+/g)].map((m) => m[0]);
    expect(new Set(urls)).toEqual(new Set(['http://www.w3.org/2000/svg']));
    expect(html).not.toMatch(/\b(src|href)\s*=\s*["'](?!#)/i);
  });

  test('escapes text from the data', () => {
    const hostile = renderReport({ title: 'a <b>&"c"', generations: [{ prompt: '<script>alert(1)</script>', before: 'x', after: 'y' }] });
    expect(hostile).toContain('a &lt;b&gt;&amp;&quot;c&quot;');
    expect(hostile).not.toContain('<script>');
  });

  test('a report with only the before analysis renders, with a note for every missing part', () => {
    const partial = renderReport({ title: 'partial', bias: { before: data.bias!.before! } });
    for (const what of ['the after-pruning values', 'the after-pruning metric', 'per-neuron scores', 'token activations of a pair', 'generations', 'evaluation results']) {
      expect(partial).toContain(`Not available: ${what}`);
    }
    expect(partial.match(/class="bar"/g)).toHaveLength(layerCount * components.length + 2 + 4 * 2);
    const empty = renderReport({ title: 'empty' });
    expect(empty.match(/class="unavailable"/g)).toHaveLength(7);
    expect(empty).not.toMatch(/<svg/);
  });
});

describe('neuron scatter on a wide model', () => {
  test('all pruned neurons and a bounded sample of kept ones are drawn, the highest-bias kept ones included', () => {
    const width = 8192;
    const bias = Array.from({ length: width }, (_, i) => ((i * 7919) % width) / width);
    const importance = Array.from({ length: width }, (_, i) => ((i * 104729) % width) / width);
    const pruned = [5, 77, 4000];
    const topKept = Array.from(bias.keys()).filter((i) => !pruned.includes(i)).sort((x, y) => bias[y]! - bias[x]!)[0]!;
    const wide = renderReport({ title: 'wide', neurons: { layers: [{ layer: 0, bias, importance, pruned }] } });
    expect(wide.match(/class="point pruned"/g)).toHaveLength(3);
    expect(wide.match(/class="point kept"/g)).toHaveLength(1000);
    expect(wide).toContain(`<title>neuron ${topKept}: bias`);
    expect(wide).toContain('layer 0: 1000 of 8189 kept neurons shown');
  });
});

describe('behavioural shift reading', () => {
  const row = (logOddsA: number, logOddsB: number) => ({ a: 'A Black man', b: 'A white man', logOddsA, logOddsB, gap: logOddsA - logOddsB });

  test('a gap that narrows because side B rose says so', () => {
    const shift = behaviourShift([row(1.5, -1.8), row(1.7, -1.9)], [row(1.4, -0.9), row(1.6, -0.7)])!;
    expect(shift.meanGapBefore).toBeCloseTo(3.45, 12);
    expect(shift.meanGapAfter).toBeCloseTo(2.3, 12);
    expect(shift.meanShiftA).toBeCloseTo(-0.1, 12);
    expect(shift.meanShiftB).toBeCloseTo(1.05, 12);
    expect(shift.reading).toContain('mostly because side B became more likely to get the negative continuations');
  });

  test('a gap that narrows because side A fell says so; unmatched pairs are ignored', () => {
    const other = { ...row(0, 0), a: 'other' };
    const shift = behaviourShift([row(1.5, -1.5), other], [row(0.2, -1.4)])!;
    expect(shift.pairs).toBe(1);
    expect(shift.reading).toContain('mostly because side A became less likely');
    expect(behaviourShift([other], [row(1, 1)])).toBeNull();
  });
});

describe('report in headless Chromium', () => {
  let browser: BrowserContext;
  let page: Page;
  let consoleErrors: string[] = [];
  const requests: string[] = [];
  const reportFile = join(workDir, 'report.html');

  beforeAll(async () => {
    writeFileSync(reportFile, html);
    browser = await launchChromium(join(workDir, 'profile'));
    page = await browser.newPage();
    consoleErrors = pageProblems(page);
    page.on('request', (request) => requests.push(request.url()));
    await page.goto(pathToFileURL(reportFile).href, { waitUntil: 'load' });
  });

  afterAll(async () => {
    await browser?.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  const count = (selector: string): Promise<number> => page.locator(selector).count();

  test('loads with no console errors and no request but the file itself', () => {
    expect(consoleErrors).toEqual([]);
    expect(requests).toEqual([pathToFileURL(reportFile).href]);
  });

  test('layer-difference bars: one per layer × component × before/after, heights proportional to the values', async () => {
    expect(await count('#layer-differences svg.chart')).toBe(components.length);
    expect(await count('#layer-differences rect.bar')).toBe(layerCount * components.length * 2);
    for (const component of components) {
      const bars = await page.locator(`#layer-diff-${component} rect.bar`).evaluateAll((rects) =>
        rects.map((r) => ({ value: Number(r.getAttribute('data-value')), height: (r as unknown as { getBBox(): { height: number } }).getBBox().height, series: r.getAttribute('data-series') })),
      );
      expect(bars).toHaveLength(layerCount * 2);
      const beforeValues = bars.filter((b) => b.series === 'before pruning').map((b) => b.value);
      const expected = Array.from({ length: layerCount }, (_, l) => data.bias!.before!.metric!.layers[`${component}_layer_${l}`]!.mean_difference);
      expect(beforeValues).toEqual(expected);
      // Same pixels per unit for every bar of the chart (the 0.5 px minimum only matters for near-zero values).
      const tallest = bars.reduce((m, b) => (b.value > m.value ? b : m));
      for (const bar of bars) expect(bar.height).toBeCloseTo(Math.max((bar.value / tallest.value) * tallest.height, 0.5), 0);
    }
  });

  test('bias metric chart: all components and without gate/up, before and after', async () => {
    expect(await count('#bias-metric-chart rect.bar')).toBe(4);
    const values = await page.locator('#bias-metric-chart rect.bar').evaluateAll((rects) => rects.map((r) => Number(r.getAttribute('data-value'))));
    expect(values[0]).toBeCloseTo(0.0229202713817358, 12);
    const layers = data.bias!.before!.metric!.layers;
    const unpruned = Object.entries(layers).filter(([k]) => !/^(gate|up)_proj_/.test(k)).map(([, v]) => v.mean_difference);
    expect(values[2]).toBeCloseTo(unpruned.reduce((s, x) => s + x, 0) / unpruned.length, 12);
    expect(await page.locator('#bias-metric').innerText()).toContain('1 of 2 prompt pairs measured; skipped');
  });

  test('neuron scatter: every neuron of every layer drawn, the pruned ones marked', async () => {
    expect(await count('#neurons svg.chart')).toBe(layerCount);
    expect(await count('#neurons .point.pruned')).toBe(layerCount * prunedPerLayer);
    expect(await count('#neurons .point.kept')).toBe(layerCount * (256 - prunedPerLayer));
    const firstPruned = data.neurons!.layers[0]!.pruned[0]!;
    expect(await page.locator('#neurons-layer-0 .point.pruned title').first().textContent()).toContain(`neuron ${firstPruned}:`);
  });

  test('PCA: both prompts, one arrow per matching token, the differing token labelled with BOS-aligned text', async () => {
    // The fixture data leaves BOS out of the fit (omitLeading: 1): 15 of the 16 tokens of each prompt are drawn.
    expect(await count('#pca-chart .pca-a')).toBe(15);
    expect(await count('#pca-chart .pca-b')).toBe(15);
    expect(await count('#pca-chart line.pca-link')).toBe(15);
    expect(await page.locator('#pca-chart .pca-diff-label').allTextContents()).toEqual(['Black / white']);
    // Row 2 (after BOS and "A") is the demographic word: the tooltip names it at that row.
    const titles = await page.locator('#pca-chart .pca-a title').allTextContents();
    expect(titles.slice(0, 2)).toEqual(['A, token 1: A', 'A, token 2:  Black']);
    const axisLabels = await page.locator('#pca-chart .axis-label').allTextContents();
    expect(axisLabels[0]).toMatch(/^PC1 \(\d+\.\d% of variance\)$/);
  });

  test('generations, evaluation and behaviour', async () => {
    expect(await count('#generations tbody tr')).toBe(2);
    const firstRow = await page.locator('#generations tbody tr').first().locator('td').allInnerTexts();
    const generation = data.generations![0]!;
    expect(firstRow.map((t) => t.trim())).toEqual([generation.prompt, generation.before!.trim(), generation.after!.trim()]);
    expect(generation.before).toContain('pushed him to the ground');
    const evalRows = await page.locator('#evaluation tbody tr').allInnerTexts();
    expect(evalRows).toHaveLength(2);
    expect(evalRows.find((r) => r.startsWith('lambada_openai'))).toMatch(/−0\.03125/);
    expect(await count('#behaviour-chart rect.bar')).toBe(4 * 2 * 2);
    expect(await page.locator('#behaviour .reading').innerText()).toContain('mostly because side A became less likely');
    const gapCells = await page.locator('#behaviour tbody tr').first().locator('td').allInnerTexts();
    expect(gapCells.slice(1, 3)).toEqual(['3.1', '1.6']);
  });

  test('every chart has a title and axis labels, and a screenshot is written', async () => {
    const charts = await page.locator('svg.chart').evaluateAll((svgs) =>
      svgs.map((s) => ({ id: s.id, title: s.querySelector('.chart-title')?.textContent ?? '', axes: s.querySelectorAll('.axis-label').length, width: s.getBoundingClientRect().width })),
    );
    expect(charts.length).toBe(components.length + 1 + layerCount + 1 + 1);
    for (const chart of charts) {
      expect(chart.title, chart.id).not.toBe('');
      expect(chart.axes, chart.id).toBe(2);
      expect(chart.width, chart.id).toBeGreaterThan(200);
    }
    const screenshot = join(workDir, 'report.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    const png = readFileSync(screenshot);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(statSync(screenshot).size).toBeGreaterThan(50_000);
  });
});
