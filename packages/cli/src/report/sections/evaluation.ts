import { escapeHtml, section, signed, table, unavailable } from '../html.js';
import { formatNumber } from '../svg.js';
import type { EvalResultsView, ReportData } from '../types.js';
import { howToGet } from './commands.js';

/** Metrics where a lower value is better; every other metric is read as higher-is-better. */
const lowerIsBetter = /perplexity|ppl|loss|word_perplexity|bits_per_byte/;

export interface EvalRow {
  task: string;
  metric: string;
  before?: number;
  beforeStderr?: number;
  after?: number;
  afterStderr?: number;
}

/** Reads `{task: {metric, metric_stderr}}`, accepting lm-evaluation-harness 0.4's `metric,none` keys too. */
function metricsOf(results: EvalResultsView | undefined, task: string): Map<string, { value: number; stderr?: number }> {
  const metrics = new Map<string, { value: number; stderr?: number }>();
  const entries = Object.entries(results?.results[task] ?? {}).map(([k, v]) => [k.replace(/,none$/, ''), v] as const);
  const byKey = new Map(entries);
  for (const [key, value] of entries) {
    if (key.endsWith('_stderr') || typeof value !== 'number') continue;
    const stderr = byKey.get(`${key}_stderr`);
    metrics.set(key, typeof stderr === 'number' ? { value, stderr } : { value });
  }
  return metrics;
}

export function evalRows(evaluation: ReportData['evaluation']): EvalRow[] {
  const tasks = [...new Set([...Object.keys(evaluation?.before?.results ?? {}), ...Object.keys(evaluation?.after?.results ?? {})])].sort();
  return tasks.flatMap((task) => {
    const before = metricsOf(evaluation?.before, task);
    const after = metricsOf(evaluation?.after, task);
    return [...new Set([...before.keys(), ...after.keys()])].map((metric) => {
      const b = before.get(metric);
      const a = after.get(metric);
      return {
        task,
        metric,
        ...(b ? { before: b.value, ...(b.stderr === undefined ? {} : { beforeStderr: b.stderr }) } : {}),
        ...(a ? { after: a.value, ...(a.stderr === undefined ? {} : { afterStderr: a.stderr }) } : {}),
      };
    });
  });
}

/** "within noise" when |Δ| ≤ 2·√(se_before² + se_after²), else better / worse / unchanged; empty without both values. */
export function evalReading(row: EvalRow): string {
  if (row.before === undefined || row.after === undefined) return '';
  const change = row.after - row.before;
  const noise = 2 * Math.hypot(row.beforeStderr ?? 0, row.afterStderr ?? 0);
  if (noise > 0 && Math.abs(change) <= noise) return 'within noise';
  if (change === 0) return 'unchanged';
  return (lowerIsBetter.test(row.metric) ? change < 0 : change > 0) ? 'better' : 'worse';
}

export function evaluationSection(evaluation: ReportData['evaluation']): string {
  const title = 'Evaluation before and after';
  const explanation =
    'Task scores with the lm-evaluation-harness protocol (± standard error). Δ is after − before; “within noise” ' +
    'means |Δ| is at most twice the combined standard error.';
  const rows = evalRows(evaluation);
  if (rows.length === 0) return section('evaluation', title, explanation, unavailable('evaluation results', howToGet.evaluation));
  const withError = (value: number | undefined, stderr: number | undefined): string =>
    value === undefined ? '—' : `${formatNumber(value)}${stderr === undefined ? '' : ` ± ${formatNumber(stderr, 2)}`}`;
  const body = rows.map((row) => {
    const delta = row.before !== undefined && row.after !== undefined ? signed(row.after - row.before) : '—';
    return [row.task, row.metric, withError(row.before, row.beforeStderr), withError(row.after, row.afterStderr), delta, evalReading(row)].map(escapeHtml);
  });
  const missing = !evaluation?.after ? unavailable('after-pruning results', howToGet.evaluation) : !evaluation.before ? unavailable('before-pruning results', howToGet.evaluation) : '';
  return section('evaluation', title, explanation, missing + table(['task', 'metric', 'before', 'after', 'Δ', 'reading'], body, 'numbers eval'));
}
