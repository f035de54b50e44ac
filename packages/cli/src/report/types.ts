import type { BehaviourResult, BiasMetrics, BiasReport, DifferenceStats, LayerNeuronScores, PairProjection, PairReport } from '@fairprune/core';
import type { EvalResults } from '@fairprune/eval';

/**
 * Field `K` of core's type `T`, read as `V` (what the report needs of it). A field renamed in core is no longer a key
 * of `T`, and one retyped so that `V` cannot read it makes the view `never`: either way the report fails to compile
 * instead of silently rendering an empty section.
 */
type Field<T, K extends keyof T, V> = [T[K]] extends [V] ? { readonly [P in K]: V } : never;

/** Key `K` of core's type `T`, for views whose values are looser than core's (files other tools also write). */
type Key<T, K extends keyof T> = K;

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
export type MetricStatsView = Field<DifferenceStats, 'mean_difference', number>;

/** One pair of a measured set, as the report reads it. */
export type PairView = Field<PairReport, 'a', string> &
  Field<PairReport, 'b', string> &
  Partial<Field<PairReport, 'tokensA', number> & Field<PairReport, 'tokensB', number> & Field<PairReport, 'skipped', boolean> & Field<PairReport, 'reason', string | null>>;

/** What the report reads of one measured pair set (the main one, or the held-out `eval`). */
type PairSetView = Partial<
  /** null when no pair had equal token counts. */
  Field<BiasReport, 'metric', BiasMetricView | null> & Field<BiasReport, 'behaviour', ReadonlyArray<BehaviourView>>
>;

/** The part of a `bias-report.json` the report reads. */
export type BiasReportView = PairSetView &
  Partial<
    Field<BiasReport, 'pairs', ReadonlyArray<PairView>> &
      /** The same measurements on held-out pairs (`--eval-pairs`); the report prefers their behaviour. */
      Field<BiasReport, 'eval', (PairSetView & Partial<Field<NonNullable<BiasReport['eval']>, 'source', string>>) | undefined>
  >;

/** The bias metric blocks the report reads; keyed `<component>_layer_<index>` per layer, e.g. `gate_proj_layer_3`. */
export type BiasMetricView = Field<BiasMetrics, 'overall', MetricStatsView> &
  Field<BiasMetrics, 'layers', Readonly<Record<string, MetricStatsView>>> &
  /** `overall_excluding_gate_up` is computed from `layers` when absent. */
  Partial<Field<BiasMetrics, 'overall_excluding_gate_up', MetricStatsView> & Field<BiasMetrics, 'components', Readonly<Record<string, MetricStatsView>>>>;

/**
 * Counterfactual behaviour of one pair: per side, log Σ p(negative continuations) − log Σ p(positive continuations),
 * in nats; gap = logOddsA − logOddsB.
 */
export type BehaviourView = Pick<BehaviourResult, 'a' | 'b' | 'logOddsA' | 'logOddsB' | 'gap'>;

/** Per decoder layer: each neuron's bias score and importance, and which neurons the plan prunes. */
export interface NeuronScatterData {
  /** e.g. "positionwise, mean over 4 pairs". */
  biasLabel?: string;
  /** e.g. "maw: max|gate row| + max|up row|". */
  importanceLabel?: string;
  /** `pruned` lists the pruned neurons' indices (the plan's form), not `neuron-scores.json`'s flags. */
  layers: ReadonlyArray<
    Field<LayerNeuronScores, 'layer', number> & Field<LayerNeuronScores, 'bias', ArrayLike<number>> & Field<LayerNeuronScores, 'importance', ArrayLike<number>> & { pruned: readonly number[] }
  >;
}

export interface GenerationComparison {
  prompt: string;
  before?: string;
  after?: string;
}

/** lm-evaluation-harness-like results: `results[task][metric]`, with `<metric>_stderr` beside each metric (lm-eval's own files too). */
export type EvalResultsView = { readonly [P in Key<EvalResults, 'results'>]: Readonly<Record<string, Readonly<Record<string, unknown>>>> };
