import { escapeHtml, relativeChange } from './html.js';
import { behaviourRows, behaviourSection, behaviourShift } from './sections/behaviour.js';
import { biasMetric, biasMetricSection } from './sections/bias-metric.js';
import { evalReading, evalRows, evaluationSection } from './sections/evaluation.js';
import { generationsSection } from './sections/generations.js';
import { layerDifferencesSection } from './sections/layer-differences.js';
import { neuronsSection } from './sections/neurons.js';
import { pcaSection } from './sections/pca.js';
import { formatNumber } from './svg.js';
import type { ReportData } from './types.js';

/** System fonts only and no external resources: the file must open offline, from disk, anywhere (the sweep page uses them too). */
export const styles = `
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0 auto; max-width: 1320px; padding: 24px 32px 64px; color: #1d1d1f; background: #fff; line-height: 1.45; }
h1 { font-size: 1.7rem; margin: 0 0 4px; }
h2 { font-size: 1.25rem; margin: 36px 0 6px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.subtitle { color: #555; margin: 0; }
.explain { color: #444; max-width: 900px; margin: 4px 0 12px; }
.summary { background: #f5f7fa; border-left: 4px solid #0072b2; padding: 10px 16px; margin: 16px 0; }
.summary li { margin: 2px 0; }
.grid { display: flex; flex-wrap: wrap; gap: 12px 18px; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
svg.chart { background: #fff; border: 1px solid #eee; border-radius: 4px; }
svg .chart-title { font-size: 14px; font-weight: 600; }
svg .tick { font-size: 11px; fill: #444; }
svg .axis-label { font-size: 12px; fill: #222; }
svg .legend-label { font-size: 12px; fill: #222; }
svg .pca-diff-label { font-size: 13px; font-weight: 700; fill: #c0392b; }
svg .pca-token-label { font-size: 11px; fill: #555; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92rem; }
th, td { border: 1px solid #ddd; padding: 5px 10px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
table.numbers td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
table.generations td { max-width: 420px; }
table.eval td:nth-child(2) { text-align: left; }
.unavailable { color: #8a5a00; background: #fff8e6; border: 1px solid #f0d9a0; padding: 6px 10px; display: inline-block; }
.note { color: #555; font-size: 0.9rem; }
.reading { font-weight: 600; max-width: 900px; }
.settings { max-width: 1100px; color: #333; }
.setting { white-space: nowrap; }
.same, .missing { color: #777; font-style: italic; }
.prompts { list-style: none; padding: 0; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; border-radius: 2px; }
code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }
`;

/** The whole report as one self-contained HTML document (inline CSS and SVG, no scripts, no network). */
export function renderReport(data: ReportData): string {
  const subtitle = (data.subtitle ?? []).map((line) => `<p class="subtitle">${escapeHtml(line)}</p>`).join('');
  const settings =
    data.settings && data.settings.length > 0
      ? `<p class="settings"><strong>Settings:</strong> ${data.settings
          .map(([label, value]) => `<span class="setting">${escapeHtml(label)}: <code>${escapeHtml(value)}</code></span>`)
          .join(' · ')}</p>`
      : '';
  const body = [
    summary(data),
    settings,
    layerDifferencesSection(data.bias),
    biasMetricSection(data.bias),
    neuronsSection(data.neurons),
    pcaSection(data.pca),
    generationsSection(data.generations),
    evaluationSection(data.evaluation),
    behaviourSection(data.bias),
    sources(data.sources),
  ].join('\n');
  return (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${escapeHtml(data.title)}</title><style>${styles}</style></head>` +
    `<body><header><h1>${escapeHtml(data.title)}</h1>${subtitle}</header>\n${body}\n</body></html>\n`
  );
}

function sources(files: readonly string[] | undefined): string {
  if (!files || files.length === 0) return '';
  return `<footer><h2>Sources</h2><ul class="note">${files.map((f) => `<li><code>${escapeHtml(f)}</code></li>`).join('')}</ul></footer>`;
}

/** The headline numbers in words, so the page can be read without the charts. */
function summary(data: ReportData): string {
  const items: string[] = [];
  const before = biasMetric(data.bias?.before);
  const after = biasMetric(data.bias?.after);
  if (before && after) {
    items.push(`Bias metric (all components): ${formatNumber(before.all)} → ${formatNumber(after.all)} (${relativeChange(before.all, after.all)}).`);
    if (before.withoutGateUp !== null && after.withoutGateUp !== null) {
      items.push(
        `Without gate_proj / up_proj (not shrunk by the pruning): ${formatNumber(before.withoutGateUp)} → ${formatNumber(after.withoutGateUp)} ` +
          `(${relativeChange(before.withoutGateUp, after.withoutGateUp)}).`,
      );
    }
  } else if (before) {
    items.push(`Bias metric (all components): ${formatNumber(before.all)}.`);
  }
  const behaviourBefore = behaviourRows(data.bias?.before);
  const shift = behaviourShift(behaviourBefore.rows, behaviourRows(data.bias?.after).rows);
  if (shift) {
    const pairs = behaviourBefore.heldOut ? 'held-out pairs' : 'pairs';
    items.push(`Behaviour on ${shift.pairs} ${pairs}: ${escapeHtml(shift.reading)}`);
  }
  for (const row of evalRows(data.evaluation)) {
    if (row.before === undefined || row.after === undefined) continue;
    items.push(escapeHtml(`${row.task} ${row.metric}: ${formatNumber(row.before)} → ${formatNumber(row.after)} (${evalReading(row)}).`));
  }
  if (data.neurons) {
    const pruned = data.neurons.layers.reduce((s, l) => s + l.pruned.length, 0);
    const total = data.neurons.layers.reduce((s, l) => s + l.bias.length, 0);
    items.push(`Neurons pruned: ${pruned} of ${total} across ${data.neurons.layers.length} layers.`);
  }
  for (const note of data.notes ?? []) items.push(escapeHtml(note));
  return items.length > 0 ? `<div class="summary"><ul>${items.map((i) => `<li>${i}</li>`).join('')}</ul></div>` : '';
}
