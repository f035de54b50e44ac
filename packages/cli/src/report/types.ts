import type { PairProjection } from '@fairprune/core';

/**
 * Everything the HTML report can show. Every section is optional: a missing one renders a short note saying which
 * command produces it. The shapes follow the JSON files the pipeline writes (bias-report.json, pruning-plan.json,
 * eval results, generations), reduced to the fields the report reads.
 */
export interface ReportData {
  title: string;
  /** Free-form lines under the title (model folder, date, ...). */
  subtitle?: string[];
  /** Settings worth stating next to the numbers: importance method, bias weight, fraction, ... */
  settings?: ReadonlyArray<readonly [label: string, value: string]>;
  bias?: { before?: BiasReportView; after?: BiasReportView };
  neurons?: NeuronScatterData;
  pca?: PairProjection;
  generations?: GenerationComparison[];
  evaluation?: { before?: EvalResultsView; after?: EvalResultsView };
  /** Notes appended under the summary, e.g. the demo's honest reading of the behavioural change. */
  notes?: string[];
  /** The files the data came from, listed at the end. */
  sources?: string[];
}

/** One statistics block of the bias metric (optiPfair names). */
export interface MetricStatsView {
  mean_difference: number;
}

/** The part of a `bias-report.json` the report reads. */
export interface BiasReportView {
  pairs?: ReadonlyArray<{ a: string; b: string; tokensA?: number; tokensB?: number; skipped?: boolean; reason?: string | null }>;
  /** null when no pair had equal token counts. */
  metric?: BiasMetricView | null;
  behaviour?: ReadonlyArray<BehaviourView>;
  /** The same measurements on held-out pairs (`--eval-pairs`); the report prefers their behaviour. */
  eval?: { source?: string; metric?: BiasMetricView | null; behaviour?: ReadonlyArray<BehaviourView> };
}

export interface BiasMetricView {
  overall: MetricStatsView;
  /** Written by the analysis; computed from `layers` when absent. */
  overall_excluding_gate_up?: MetricStatsView;
  components?: Readonly<Record<string, MetricStatsView>>;
  /** Keyed `<component>_layer_<index>`, e.g. `gate_proj_layer_3`. */
  layers: Readonly<Record<string, MetricStatsView>>;
}

/**
 * Counterfactual behaviour of one pair: per side, log Σ p(negative continuations) − log Σ p(positive continuations),
 * in nats; gap = logOddsA − logOddsB.
 */
export interface BehaviourView {
  a: string;
  b: string;
  logOddsA: number;
  logOddsB: number;
  gap: number;
}

/** Per decoder layer: each neuron's bias score and importance, and which neurons the plan prunes. */
export interface NeuronScatterData {
  /** e.g. "positionwise, mean over 4 pairs". */
  biasLabel?: string;
  /** e.g. "maw: max|gate row| + max|up row|". */
  importanceLabel?: string;
  layers: ReadonlyArray<{ layer: number; bias: ArrayLike<number>; importance: ArrayLike<number>; pruned: readonly number[] }>;
}

export interface GenerationComparison {
  prompt: string;
  before?: string;
  after?: string;
}

/** lm-evaluation-harness-like results: `results[task][metric]`, with `<metric>_stderr` beside each metric. */
export interface EvalResultsView {
  results: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
}
