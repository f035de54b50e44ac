import { escapeHtml, relativeChange, section, table, unavailable } from '../html.js';
import { colours, formatNumber, groupedBars, type BarSeries } from '../svg.js';
import type { BiasMetricView, BiasReportView, ReportData } from '../types.js';
import { howToGet } from './commands.js';
import { layerTable } from './layer-differences.js';

/** Components whose pruned neurons vanish from the measurement after pruning. */
const prunedComponents = new Set(['gate_proj', 'up_proj']);

export interface BiasMetricPair {
  all: number;
  withoutGateUp: number | null;
}

/** The bias metric, and the same mean without gate_proj/up_proj (taken from the report or computed from its layers). */
export function biasMetric(report: BiasReportView | undefined): BiasMetricPair | null {
  return metricPair(report?.metric);
}

function metricPair(metric: BiasMetricView | null | undefined): BiasMetricPair | null {
  if (!metric) return null;
  let withoutGateUp = metric.overall_excluding_gate_up?.mean_difference ?? null;
  if (withoutGateUp === null) {
    const values = [...layerTable({ metric }).entries()].filter(([c]) => !prunedComponents.has(c)).flatMap(([, layers]) => [...layers.values()]);
    withoutGateUp = values.length > 0 ? values.reduce((s, v) => s + v, 0) / values.length : null;
  }
  return { all: metric.overall.mean_difference, withoutGateUp };
}

export function biasMetricSection(bias: ReportData['bias']): string {
  const title = 'Bias metric';
  const explanation =
    'The single bias number of the article: optiPfair’s <code>overall_metrics.mean_difference</code>, the unweighted ' +
    'mean of the per-layer differences over every component and layer. Pruning removes neurons from gate_proj and ' +
    'up_proj, so part of their drop is mechanical (the removed neurons are no longer measured); the mean over the ' +
    'other components shows the change the pruning caused downstream.';
  const before = biasMetric(bias?.before);
  const after = biasMetric(bias?.after);
  if (!before && !after) return section('bias-metric', title, explanation, unavailable('the bias metric', howToGet.bias));
  const categories = ['all components', 'without gate_proj / up_proj'];
  const series: BarSeries[] = [];
  if (before) series.push({ name: 'before pruning', colour: colours.before, values: [before.all, before.withoutGateUp] });
  if (after) series.push({ name: 'after pruning', colour: colours.after, values: [after.all, after.withoutGateUp] });
  const chart = groupedBars({
    id: 'bias-metric-chart',
    title: 'Bias metric before and after pruning',
    categories,
    series,
    xLabel: 'components averaged',
    yLabel: 'mean |A − B| (activation units)',
    width: 440,
    height: 260,
  });
  const cell = (v: number | null | undefined): string => (v === null || v === undefined ? '—' : formatNumber(v));
  const change = (b: number | null | undefined, a: number | null | undefined): string =>
    b !== null && b !== undefined && a !== null && a !== undefined ? relativeChange(b, a) : '—';
  const rowsOf = (label: string, b: BiasMetricPair | null, a: BiasMetricPair | null) => [
    [`${label}${categories[0]!}`, cell(b?.all), cell(a?.all), change(b?.all, a?.all)],
    [`${label}${categories[1]!}`, cell(b?.withoutGateUp), cell(a?.withoutGateUp), change(b?.withoutGateUp, a?.withoutGateUp)],
  ];
  const heldOutBefore = metricPair(bias?.before?.eval?.metric);
  const heldOutAfter = metricPair(bias?.after?.eval?.metric);
  const rows = [
    ...rowsOf('', before, after),
    ...(heldOutBefore || heldOutAfter ? rowsOf('held-out pairs: ', heldOutBefore, heldOutAfter) : []),
  ].map((row) => row.map(escapeHtml));
  const missing = !after ? unavailable('the after-pruning metric', howToGet.biasAfter) : !before ? unavailable('the before-pruning metric', howToGet.bias) : '';
  return section(
    'bias-metric',
    title,
    explanation,
    `${missing}<div class="row">${chart}${table(['averaged over', 'before', 'after', 'change'], rows, 'numbers')}</div>${pairsNote(bias)}`,
  );
}

/** Pairs that were measured and skipped, so nobody mistakes a silently dropped pair for a measured one. */
function pairsNote(bias: ReportData['bias']): string {
  const pairs = bias?.before?.pairs ?? bias?.after?.pairs;
  if (!pairs || pairs.length === 0) return '';
  const skipped = pairs.filter((p) => p.skipped);
  const measured = pairs.length - skipped.length;
  if (skipped.length === 0) return `<p class="note">${measured} of ${pairs.length} prompt pairs measured.</p>`;
  const list = skipped.map((p) => `<li>“${escapeHtml(p.a)}” / “${escapeHtml(p.b)}”: ${escapeHtml(p.reason ?? 'skipped')}</li>`).join('');
  return `<p class="note">${measured} of ${pairs.length} prompt pairs measured; skipped:</p><ul class="note">${list}</ul>`;
}
