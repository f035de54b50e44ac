import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonFile, writeJsonOutput, writeTextOutput, type BiasReport } from '@fairprune/core';
import type { TaskName } from '@fairprune/eval';
import type { BatchConfig } from './job.js';
import type { BatchPlan } from './plan.js';
import { BATCH_FILES, type RunResult } from './tasks.js';

/** A held-out pair set's behaviour, averaged over its pairs with continuations. */
export interface HeldOutBehaviour {
  /** Mean log-odds after prompt a. */
  a: number;
  /** Mean log-odds after prompt b. */
  b: number;
  /** Mean gap (a − b). */
  gap: number;
}

/** One eval task's accuracy before and after, with standard errors. */
export interface EvalDelta {
  /** Base model's accuracy. */
  before: number;
  /** Its standard error. */
  beforeStderr: number | null;
  /** Pruned model's accuracy. */
  after: number;
  /** Its standard error. */
  afterStderr: number | null;
  /** after − before. */
  delta: number;
  /** Standard error of the delta, treating the two as independent (an upper bound for paired documents). */
  deltaStderr: number | null;
}

/** One row of `summary.json` / `summary.csv`: one configuration on one model. */
export interface SummaryRow {
  /** Model name. */
  model: string;
  /** Run task id (`<model>/<configuration>`). */
  task: string;
  /** The configuration. */
  config: BatchConfig;
  /** Neurons removed (or zeroed). */
  neuronsRemoved: number;
  /** Parameters before. */
  parametersBefore: number;
  /** Parameters after. */
  parametersAfter: number;
  /** Parameters removed (or zeroed). */
  parametersRemoved: number;
  /** Bias metric (optiPfair mean_difference) of the base model, null without a pair of equal token counts. */
  biasBefore: number | null;
  /** Bias metric of the pruned model. */
  biasAfter: number | null;
  /** (before − after) / before. */
  biasReduction: number | null;
  /** Held-out pairs' behaviour of the base model (when they have continuations). */
  heldOutBefore: HeldOutBehaviour | null;
  /** Held-out pairs' behaviour of the pruned model. */
  heldOutAfter: HeldOutBehaviour | null;
  /** Per eval task. */
  eval: Partial<Record<TaskName, EvalDelta>>;
  /** Wall time of the run task (not its share of the analysis), milliseconds. */
  timeMs: number;
  /** Where it ran. */
  device: string;
  /** The pruned model folder, relative to the batch folder. */
  output: string;
}

/** `summary.json`. */
export interface BatchSummary {
  /** File format tag. */
  format: 'fairprune.batch-summary';
  /** File format version. */
  version: 1;
  /** One row per configuration and model, in plan order; runs not done are left out. */
  rows: SummaryRow[];
  /** Run tasks without a result. */
  missing: string[];
}

function heldOut(report: BiasReport): HeldOutBehaviour | null {
  const behaviour = report.eval?.behaviour ?? [];
  if (behaviour.length === 0) return null;
  const mean = (pick: (b: (typeof behaviour)[number]) => number) => behaviour.reduce((sum, b) => sum + pick(b), 0) / behaviour.length;
  return { a: mean((b) => b.logOddsA), b: mean((b) => b.logOddsB), gap: mean((b) => b.gap) };
}

const stderrOf = (value: number | 'N/A' | undefined) => (typeof value === 'number' ? value : null);

/** The summary row of a run's result. */
export function summaryRow(result: RunResult, output: string): SummaryRow {
  const biasBefore = result.before.metric?.overall.mean_difference ?? null;
  const biasAfter = result.after.metric?.overall.mean_difference ?? null;
  const evalDeltas: Partial<Record<TaskName, EvalDelta>> = {};
  for (const [task, after] of Object.entries(result.evalAfter ?? {}) as [TaskName, NonNullable<RunResult['evalAfter']>[TaskName]][]) {
    const before = result.evalBefore?.[task];
    if (!before || !after) continue;
    const beforeStderr = stderrOf(before.acc_stderr);
    const afterStderr = stderrOf(after.acc_stderr);
    evalDeltas[task] = {
      before: before.acc,
      beforeStderr,
      after: after.acc,
      afterStderr,
      delta: after.acc - before.acc,
      deltaStderr: beforeStderr === null || afterStderr === null ? null : Math.hypot(beforeStderr, afterStderr),
    };
  }
  return {
    model: result.model,
    task: result.task,
    config: result.config,
    neuronsRemoved: Object.values(result.plan.layers).reduce((n, layer) => n + layer.length, 0),
    parametersBefore: result.plan.parameters.before,
    parametersAfter: result.plan.parameters.after,
    parametersRemoved: result.plan.parameters.affected,
    biasBefore,
    biasAfter,
    biasReduction: biasBefore === null || biasAfter === null || biasBefore === 0 ? null : (biasBefore - biasAfter) / biasBefore,
    heldOutBefore: heldOut(result.before),
    heldOutAfter: heldOut(result.after),
    eval: evalDeltas,
    timeMs: result.timings['total'] ?? 0,
    device: result.device,
    output: join(output, BATCH_FILES.model),
  };
}

/** The summary of a batch folder: one row per finished run. */
export function buildSummary(dir: string, plan: BatchPlan): BatchSummary {
  const rows: SummaryRow[] = [];
  const missing: string[] = [];
  for (const run of plan.runs) {
    const path = join(dir, run.output, BATCH_FILES.result);
    if (!existsSync(path)) {
      missing.push(run.id);
      continue;
    }
    rows.push(summaryRow(readJsonFile(path) as RunResult, run.output));
  }
  return { format: 'fairprune.batch-summary', version: 1, rows, missing };
}

const csvCell = (value: unknown): string => {
  const text = value === null || value === undefined ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
};

/** The summary as CSV: scalar columns, the configuration as JSON, one column group per eval task. */
export function summaryCsv(summary: BatchSummary, tasks: readonly TaskName[]): string {
  const side = (h: HeldOutBehaviour | null) => [h?.gap, h?.a, h?.b];
  const header = [
    'model', 'task', 'config', 'neurons_removed', 'parameters_before', 'parameters_after', 'parameters_removed',
    'bias_before', 'bias_after', 'bias_reduction',
    'heldout_gap_before', 'heldout_a_before', 'heldout_b_before', 'heldout_gap_after', 'heldout_a_after', 'heldout_b_after',
    ...tasks.flatMap((t) => [`${t}_acc_before`, `${t}_acc_before_stderr`, `${t}_acc_after`, `${t}_acc_after_stderr`, `${t}_acc_delta`, `${t}_acc_delta_stderr`]),
    'time_ms', 'device', 'output',
  ];
  const lines = summary.rows.map((row) =>
    [
      row.model, row.task, row.config, row.neuronsRemoved, row.parametersBefore, row.parametersAfter, row.parametersRemoved,
      row.biasBefore, row.biasAfter, row.biasReduction,
      ...side(row.heldOutBefore), ...side(row.heldOutAfter),
      ...tasks.flatMap((t) => {
        const e = row.eval[t];
        return [e?.before, e?.beforeStderr, e?.after, e?.afterStderr, e?.delta, e?.deltaStderr];
      }),
      Math.round(row.timeMs), row.device, row.output,
    ].map(csvCell).join(','),
  );
  return `${[header.join(','), ...lines].join('\n')}\n`;
}

/** Writes `summary.json` and `summary.csv` into the batch folder (atomically) and returns the summary. */
export async function writeSummary(dir: string, plan: BatchPlan): Promise<BatchSummary> {
  const summary = buildSummary(dir, plan);
  await writeJsonOutput(join(dir, BATCH_FILES.summaryJson), summary, 'batch');
  await writeTextOutput(join(dir, BATCH_FILES.summaryCsv), summaryCsv(summary, plan.eval?.tasks ?? []), 'batch');
  return summary;
}
