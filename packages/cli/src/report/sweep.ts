import { dirname, join } from 'node:path';
import { BATCH_FILES, type BatchSummary, type SummaryRow } from '@fairprune/batch';
import { escapeHtml, table } from './html.js';
import { loadReportData } from './load.js';
import { renderReport, styles } from './render.js';
import { writeReport } from './write.js';
import { axes, colours, escapeXml, formatNumber, legend, linearScale, marker, svgDocument, type Frame } from './svg.js';

/** One configuration as the sweep chart places it. */
export interface SweepPoint {
  /** Ability loss: mean accuracy drop over the eval tasks (before − after), or parameters removed (%) without eval. */
  x: number;
  /** Bias reduction, % of the base model's bias metric. */
  y: number;
  /** The summary row. */
  row: SummaryRow;
}

/**
 * Indices of the points no other point beats: none has at least as much bias reduction with at most as much ability
 * loss, and strictly better on one of them.
 */
export function paretoFront(points: readonly { x: number; y: number }[]): Set<number> {
  const front = new Set<number>();
  points.forEach((p, i) => {
    const dominated = points.some((q, j) => j !== i && q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y));
    if (!dominated) front.add(i);
  });
  return front;
}

/** Whether the rows carry eval results (then ability loss is the accuracy drop). */
const hasEval = (rows: readonly SummaryRow[]) => rows.some((r) => Object.keys(r.eval).length > 0);

/** The chart's point of a row, or undefined when the row has no bias metric. */
export function sweepPoint(row: SummaryRow, byEval: boolean): SweepPoint | undefined {
  if (row.biasReduction === null) return undefined;
  const deltas = Object.values(row.eval).map((e) => e!.before - e!.after);
  const x = byEval ? (deltas.length > 0 ? deltas.reduce((a, b) => a + b, 0) / deltas.length : Number.NaN) : (row.parametersRemoved / row.parametersBefore) * 100;
  return Number.isFinite(x) ? { x, y: row.biasReduction * 100, row } : undefined;
}

/** The report of a row's run, relative to the batch folder (beside its `model/` folder). */
export const runReportPath = (row: SummaryRow): string => `${dirname(row.output)}/report.html`;

function modelChart(model: string, points: readonly SweepPoint[], xLabel: string): string {
  const frame: Frame = { width: 560, height: 380, left: 64, right: 16, top: 44, bottom: 42 };
  const x = linearScale(points.map((p) => p.x), [frame.left, frame.width - frame.right], { pad: 0.08 });
  const y = linearScale(points.map((p) => p.y), [frame.height - frame.bottom, frame.top], { pad: 0.08 });
  const front = paretoFront(points);
  const frontLine = [...front]
    .map((i) => points[i]!)
    .sort((a, b) => a.x - b.x)
    .map((p) => `${Math.round(x(p.x) * 10) / 10},${Math.round(y(p.y) * 10) / 10}`)
    .join(' ');
  const marks = points.map((p, i) => {
    const onFront = front.has(i);
    const tooltip = `${p.row.task}: bias −${formatNumber(p.y, 3)}%, ${xLabel} ${formatNumber(p.x, 3)}${onFront ? ' (Pareto front)' : ''}`;
    return (
      `<a href="${escapeXml(runReportPath(p.row))}" class="run-link">` +
      marker(onFront ? 'circle' : 'cross', x(p.x), y(p.y), 5, onFront ? colours.pruned : colours.before, ` class="point${onFront ? ' pareto' : ''}" data-task="${escapeXml(p.row.task)}"`, tooltip) +
      '</a>'
    );
  });
  const body =
    axes(frame, x, y, { x: xLabel, y: 'bias reduction (% of the base metric)' }) +
    (front.size > 1 ? `<polyline points="${frontLine}" fill="none" stroke="${colours.pruned}" stroke-dasharray="4 3" class="pareto-line"/>` : '') +
    `<g class="points">${marks.join('')}</g>` +
    legend([{ label: 'Pareto front', colour: colours.pruned, shape: 'circle' }, { label: 'dominated', colour: colours.before, shape: 'cross' }], frame.left, 36);
  return svgDocument(frame, `sweep-${model}`, `${model}: bias reduction against ability loss`, body);
}

const cell = (value: number | null | undefined, digits = 4) => (value === null || value === undefined ? '—' : formatNumber(value, digits));

/**
 * The sweep page (`index.html`): per model, bias reduction against ability loss with the Pareto front marked, each
 * point linked to its run's report, and a table of every configuration. Self-contained: no script, no network.
 */
export function renderSweepPage(summary: BatchSummary, title = 'Fairness pruning sweep'): string {
  const byEval = hasEval(summary.rows);
  const xLabel = byEval ? 'ability loss (mean accuracy drop)' : 'parameters removed (%)';
  const models = [...new Set(summary.rows.map((r) => r.model))];
  const tasks = [...new Set(summary.rows.flatMap((r) => Object.keys(r.eval)))];
  const sections = models.map((model) => {
    const rows = summary.rows.filter((r) => r.model === model);
    // Options every configuration shares are shown once; the table shows what varies.
    const keys = [...new Set(rows.flatMap((r) => Object.keys(r.config)))] as (keyof SummaryRow['config'])[];
    const varies = (key: (typeof keys)[number]) => new Set(rows.map((r) => JSON.stringify(r.config[key]))).size > 1;
    const shared = keys.filter((k) => !varies(k)).map((k) => `${k}: ${JSON.stringify(rows[0]!.config[k])}`);
    const shown = (r: SummaryRow) => keys.filter(varies).map((k) => `${k} ${JSON.stringify(r.config[k])}`).join(', ');
    const points = rows.map((r) => sweepPoint(r, byEval)).filter((p): p is SweepPoint => p !== undefined);
    const chart = points.length > 0 ? modelChart(model, points, xLabel) : '<p class="unavailable">No configuration of this model has a bias metric (no pair with equal token counts).</p>';
    const headers = ['configuration', 'neurons removed', 'parameters removed', 'bias before', 'bias after', 'reduction', 'held-out gap before → after', ...tasks.map((t) => `${t} Δacc ± se`), 'time (s)', 'device'];
    const body = rows.map((r) => [
      `<a href="${escapeHtml(runReportPath(r))}">${escapeHtml(shown(r) || r.task)}</a>`,
      String(r.neuronsRemoved),
      `${r.parametersRemoved.toLocaleString('en-US')} (${formatNumber((r.parametersRemoved / r.parametersBefore) * 100, 3)}%)`,
      cell(r.biasBefore),
      cell(r.biasAfter),
      r.biasReduction === null ? '—' : `${formatNumber(r.biasReduction * 100, 3)}%`,
      r.heldOutBefore && r.heldOutAfter ? `${cell(r.heldOutBefore.gap)} → ${cell(r.heldOutAfter.gap)}` : '—',
      ...tasks.map((t) => {
        const e = r.eval[t as keyof typeof r.eval];
        return e ? `${formatNumber(e.delta, 3)} ± ${cell(e.deltaStderr, 3)}` : '—';
      }),
      formatNumber(r.timeMs / 1000, 3),
      escapeHtml(r.device),
    ]);
    const settings = shared.length > 0 ? `<p class="settings"><strong>Every configuration:</strong> <code>${escapeHtml(shared.join(', '))}</code></p>` : '';
    return `<section id="model-${escapeHtml(model)}"><h2>${escapeHtml(model)}</h2><div class="row">${chart}</div>${settings}${table(headers, body, 'numbers sweep')}</section>`;
  });
  const missing = summary.missing.length > 0 ? `<p class="unavailable">Not finished: ${summary.missing.map(escapeHtml).join(', ')}</p>` : '';
  return (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${escapeHtml(title)}</title><style>${styles}</style></head>` +
    `<body><header><h1>${escapeHtml(title)}</h1><p class="subtitle">${summary.rows.length} configuration(s) on ${models.length} model(s). ` +
    `Up and to the left is better: more bias removed for less ability lost. Points on the Pareto front are circles; each point opens its run's report.</p></header>\n` +
    `${missing}${sections.join('\n')}\n</body></html>\n`
  );
}

/**
 * Writes each finished run's report (`runs/<model>/<configuration>/report.html`, as `fairprune report --after` would)
 * and the sweep page `index.html`, each atomically.
 * @returns the sweep page's path.
 */
export async function writeSweepPages(dir: string, summary: BatchSummary): Promise<string> {
  for (const row of summary.rows) {
    const { data } = loadReportData({ after: join(dir, row.output) }, { title: `Fairness pruning: ${row.task}` });
    await writeReport(join(dir, runReportPath(row)), renderReport(data));
  }
  return writeReport(join(dir, BATCH_FILES.index), renderSweepPage(summary));
}
