import { isAbsolute, relative, resolve } from 'node:path';
import { projectPair } from '@fairprune/core';
import type { BiasReportView, EvalResultsView, GenerationComparison, NeuronScatterData, ReportData } from './types.js';

/** The part of `neuron-scores.json` (core's `NeuronScoresFile`) the report reads. */
export interface NeuronScoresView {
  estimator?: string;
  aggregation?: string;
  importance?: string;
  layers: ReadonlyArray<{ layer: number; bias: readonly number[]; importance: readonly number[]; pruned: readonly boolean[] }>;
  tokenActivations?: TokenActivationsView;
}

/** One pair's token activations at one tensor (core's `PairTokenActivations`); tokens include BOS when the model saw it. */
export interface TokenActivationsView {
  key: string;
  width: number;
  a: { text: string; tokens: string[]; activations: readonly number[] };
  b: { text: string; tokens: string[]; activations: readonly number[] };
}

/** The part of `pruning-plan.json` (core's `PruningPlan`) the report reads. */
export interface PlanView {
  model?: { path?: string; intermediateSizes?: readonly number[] };
  options?: Readonly<Record<string, unknown>>;
  mode?: string;
  parameters?: { before: number; after: number };
  intermediateSizes?: readonly number[];
}

/** A generation as `fairprune generate --json` prints it: `text` is the continuation (a text repeating the prompt is accepted). */
export interface GenerationView {
  prompt: string;
  text: string;
}

/**
 * The pipeline's results, in memory or read from its files: everything optional. The demo passes what
 * `runFairnessPruning`, `evaluate` and `generate` returned; `fairprune report` passes what it read from disk.
 */
export interface ReportParts {
  title?: string;
  /** Extra lines under the title, after the model and folders. */
  subtitle?: string[];
  /** Folders the results came from, shown under the title. */
  folders?: { before?: string; after?: string };
  biasBefore?: BiasReportView & { model?: { path?: string } };
  biasAfter?: BiasReportView;
  plan?: PlanView;
  neuronScores?: NeuronScoresView;
  /** One pair's token activations for the PCA; default: the ones in `neuronScores`. */
  tokenActivations?: TokenActivationsView;
  evaluationBefore?: EvalResultsView;
  evaluationAfter?: EvalResultsView;
  generationsBefore?: readonly GenerationView[];
  generationsAfter?: readonly GenerationView[];
  notes?: string[];
  sources?: string[];
}

/** Turns pipeline results into the report's data (neuron scatter, PCA of the pair, settings, paired generations). */
export function buildReportData(parts: ReportParts): ReportData {
  const tokenActivations = parts.tokenActivations ?? parts.neuronScores?.tokenActivations;
  const { biasBefore, biasAfter, evaluationBefore, evaluationAfter } = parts;
  return {
    title: parts.title ?? 'Fairness pruning report',
    subtitle: [...subtitle(parts), ...(parts.subtitle ?? [])],
    ...(parts.plan || parts.neuronScores ? { settings: settings(parts.plan, parts.neuronScores) } : {}),
    bias: { ...(biasBefore ? { before: biasBefore } : {}), ...(biasAfter ? { after: biasAfter } : {}) },
    ...(parts.neuronScores ? { neurons: neuronScatter(parts.neuronScores) } : {}),
    ...(tokenActivations ? { pca: pairProjection(tokenActivations) } : {}),
    ...(parts.generationsBefore || parts.generationsAfter
      ? { generations: compareGenerations(parts.generationsBefore ?? [], parts.generationsAfter ?? []) }
      : {}),
    ...(evaluationBefore || evaluationAfter
      ? { evaluation: { ...(evaluationBefore ? { before: evaluationBefore } : {}), ...(evaluationAfter ? { after: evaluationAfter } : {}) } }
      : {}),
    ...(parts.notes ? { notes: parts.notes } : {}),
    ...(parts.sources ? { sources: parts.sources } : {}),
  };
}

/** Before and after generations paired by prompt; a text that repeats its prompt is shown without it. */
function compareGenerations(before: readonly GenerationView[], after: readonly GenerationView[]): GenerationComparison[] {
  const continuation = (g: GenerationView): string => (g.text.startsWith(g.prompt) ? g.text.slice(g.prompt.length) : g.text);
  const byPrompt = new Map<string, GenerationComparison>();
  for (const g of before) if (!byPrompt.has(g.prompt)) byPrompt.set(g.prompt, { prompt: g.prompt, before: continuation(g) });
  for (const g of after) {
    const existing = byPrompt.get(g.prompt) ?? { prompt: g.prompt };
    if (existing.after === undefined) byPrompt.set(g.prompt, { ...existing, after: continuation(g) });
  }
  return [...byPrompt.values()];
}

function neuronScatter(scores: NeuronScoresView): NeuronScatterData {
  return {
    ...(scores.estimator ? { biasLabel: `${scores.estimator}${scores.aggregation ? `, ${scores.aggregation} over pairs` : ''}` } : {}),
    ...(scores.importance ? { importanceLabel: scores.importance } : {}),
    layers: scores.layers.map((layer) => ({
      layer: layer.layer,
      bias: layer.bias,
      importance: layer.importance,
      pruned: layer.pruned.flatMap((isPruned, i) => (isPruned ? [i] : [])),
    })),
  };
}

/**
 * The pair's PCA. A shared leading special token (BOS) is left out of the fit: its activations are usually far larger
 * than the rest and would squeeze every other token into one dot. The token labels stay aligned with the rows.
 */
function pairProjection(tokens: TokenActivationsView): NonNullable<ReportData['pca']> {
  const first = tokens.a.tokens[0];
  const leadingSpecial = first !== undefined && first === tokens.b.tokens[0] && /^<[^<>]+>$/.test(first);
  return projectPair(
    tokens.key,
    { text: tokens.a.text, tokens: tokens.a.tokens, activations: Float32Array.from(tokens.a.activations) },
    { text: tokens.b.text, tokens: tokens.b.tokens, activations: Float32Array.from(tokens.b.activations) },
    tokens.width,
    { omitLeading: leadingSpecial ? 1 : 0 },
  );
}

/** A path as the reader ran things: relative to the working folder when inside it, else absolute. */
function displayPath(path: string): string {
  const fromHere = relative(process.cwd(), resolve(path));
  return fromHere !== '' && !fromHere.startsWith('..') && !isAbsolute(fromHere) ? fromHere : resolve(path);
}

function subtitle(parts: ReportParts): string[] {
  const lines: string[] = [];
  const model = parts.plan?.model?.path ?? parts.biasBefore?.model?.path;
  if (model) lines.push(`model: ${displayPath(model)}`);
  if (parts.folders?.before) lines.push(`before: ${displayPath(parts.folders.before)}`);
  if (parts.folders?.after) lines.push(`after: ${displayPath(parts.folders.after)}`);
  return lines;
}

function settings(plan: PlanView | undefined, scores: NeuronScoresView | undefined): Array<[string, string]> {
  const rows: Array<[string, string]> = [];
  const options = plan?.options ?? {};
  const show = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));
  for (const [key, value] of Object.entries(options)) {
    if (value !== undefined && value !== null) rows.push([key, show(value)]);
  }
  if (scores?.importance && !('importance' in options)) rows.push(['importance', scores.importance]);
  if (plan?.mode && !('mode' in options)) rows.push(['mode', plan.mode]);
  if (plan?.parameters) rows.push(['parameters', `${plan.parameters.before.toLocaleString('en-US')} → ${plan.parameters.after.toLocaleString('en-US')}`]);
  if (plan?.model?.intermediateSizes && plan.intermediateSizes) {
    const widths = (sizes: readonly number[]) => [...new Set(sizes)].join(' / ');
    rows.push(['MLP width', `${widths(plan.model.intermediateSizes)} → ${widths(plan.intermediateSizes)}`]);
  }
  return rows;
}
