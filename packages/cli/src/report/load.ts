import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { projectPair } from '@fairprune/core';
import type { BiasReportView, EvalResultsView, GenerationComparison, NeuronScatterData, ReportData } from './types.js';

/**
 * Where the report's inputs are, as the pipeline writes them:
 * - `fairprune analyze --out DIR` → `DIR/bias-report.json`
 * - `fairprune prune --out DIR` (the pruned model folder) → `pruning-plan.json`, `neuron-scores.json` (with one pair's
 *   token activations), `bias-report.before.json`, `bias-report.after.json`
 * - evaluation results (`{ results: { task: {...} } }`) and generations (`[{ prompt, text }]`) in any other `.json`
 *   file of either folder, recognised by their shape.
 */
export interface ReportInputs {
  /** Folder with the analysis of the original model. */
  before?: string;
  /** Folder with the pruned model's analysis, or the pruned model folder itself. */
  after?: string;
}

export interface LoadedReport {
  data: ReportData;
  /** Every file the report was built from, absolute. */
  files: string[];
}

/** Files in a model folder that are never report inputs (and can be large). */
const modelFiles = /^(config|generation_config|tokenizer|tokenizer_config|special_tokens_map|preprocessor_config)\.json$|\.index\.json$/;
/** Files with a fixed meaning; everything else is recognised by content. */
const knownFiles = new Set(['bias-report.json', 'bias-report.before.json', 'bias-report.after.json', 'pruning-plan.json', 'neuron-scores.json', 'token-activations.json']);

interface NeuronScoresFile {
  estimator?: string;
  aggregation?: string;
  importance?: string;
  layers: Array<{ layer: number; bias: number[]; importance: number[]; pruned: boolean[] }>;
  tokenActivations?: TokenActivationsFile;
}

interface TokenActivationsFile {
  key: string;
  width: number;
  a: { text: string; tokens: string[]; activations: number[] };
  b: { text: string; tokens: string[]; activations: number[] };
}

interface PlanFile {
  model?: { path?: string; intermediateSizes?: number[] };
  options?: Record<string, unknown>;
  mode?: string;
  parameters?: { before: number; after: number; affected: number };
  intermediateSizes?: number[];
}

function parseJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`report: ${path} is not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
}

class Folder {
  constructor(
    readonly dir: string | undefined,
    private readonly used: string[],
  ) {
    if (dir !== undefined && !(existsSync(dir) && statSync(dir).isDirectory())) throw new Error(`report: ${dir} is not a folder`);
  }

  has(name: string): boolean {
    return this.dir !== undefined && existsSync(join(this.dir, name));
  }

  read<T>(name: string): T | undefined {
    if (!this.has(name)) return undefined;
    return this.readPath(join(this.dir!, name)) as T;
  }

  readPath(path: string): unknown {
    const absolute = resolve(path);
    const value = parseJson(absolute);
    this.used.push(absolute);
    return value;
  }

  /** Other JSON files of the folder, parsed, for recognition by shape. */
  others(): Array<{ path: string; value: unknown }> {
    if (this.dir === undefined) return [];
    return readdirSync(this.dir)
      .filter((name) => name.endsWith('.json') && !knownFiles.has(name) && !modelFiles.test(name))
      .sort()
      .map((name) => {
        const path = resolve(this.dir!, name);
        return { path, value: parseJson(path) };
      });
  }
}

/** Reads what the pipeline wrote in the two folders; any part may be missing (the report then says how to get it). */
export function loadReportData(inputs: ReportInputs, options: { title?: string } = {}): LoadedReport {
  if (inputs.before === undefined && inputs.after === undefined) throw new Error('report: give --before and/or --after');
  const used: string[] = [];
  const before = new Folder(inputs.before, used);
  const after = new Folder(inputs.after, used);

  const biasBefore = checkBiasReport(
    before.read<BiasReportView>('bias-report.json') ?? before.read<BiasReportView>('bias-report.before.json') ?? after.read<BiasReportView>('bias-report.before.json'),
  );
  const biasAfter = checkBiasReport(after.read<BiasReportView>('bias-report.after.json') ?? after.read<BiasReportView>('bias-report.json'));
  const plan = after.read<PlanFile>('pruning-plan.json') ?? before.read<PlanFile>('pruning-plan.json');
  const neuronScores = after.read<NeuronScoresFile>('neuron-scores.json') ?? before.read<NeuronScoresFile>('neuron-scores.json');
  const tokenActivations =
    neuronScores?.tokenActivations ?? before.read<TokenActivationsFile>('token-activations.json') ?? after.read<TokenActivationsFile>('token-activations.json');

  const recognisedBefore = recognise(before, used);
  const recognisedAfter = recognise(after, used);

  const data: ReportData = {
    title: options.title ?? 'Fairness pruning report',
    subtitle: subtitle(plan, biasBefore, inputs),
    ...(plan || neuronScores ? { settings: settings(plan, neuronScores) } : {}),
    bias: { ...(biasBefore ? { before: biasBefore } : {}), ...(biasAfter ? { after: biasAfter } : {}) },
    ...(neuronScores ? { neurons: neuronScatter(neuronScores) } : {}),
    ...(tokenActivations ? { pca: pairProjection(tokenActivations) } : {}),
    ...(recognisedBefore.generations || recognisedAfter.generations
      ? { generations: compareGenerations(recognisedBefore.generations ?? [], recognisedAfter.generations ?? []) }
      : {}),
    ...(recognisedBefore.evaluation || recognisedAfter.evaluation
      ? {
          evaluation: {
            ...(recognisedBefore.evaluation ? { before: recognisedBefore.evaluation } : {}),
            ...(recognisedAfter.evaluation ? { after: recognisedAfter.evaluation } : {}),
          },
        }
      : {}),
  };
  return { data: { ...data, sources: used }, files: used };
}

function checkBiasReport(report: BiasReportView | undefined): BiasReportView | undefined {
  if (!report) return undefined;
  const metric = report.metric;
  if (metric && (typeof metric.overall?.mean_difference !== 'number' || typeof metric.layers !== 'object')) {
    throw new Error('report: a bias report has no metric.overall.mean_difference or metric.layers (not written by fairprune analyze?)');
  }
  return report;
}

interface Recognised {
  evaluation?: EvalResultsView;
  generations?: Array<{ prompt: string; text: string }>;
}

/** Evaluation results and generations among a folder's other JSON files; several eval files are merged by task. */
function recognise(folder: Folder, used: string[]): Recognised {
  const found: Recognised = {};
  for (const { path, value } of folder.others()) {
    if (isEvalResults(value)) {
      found.evaluation = { results: { ...(found.evaluation?.results ?? {}), ...value.results } };
      used.push(path);
    } else if (isGenerations(value)) {
      found.generations = [...(found.generations ?? []), ...value];
      used.push(path);
    }
  }
  return found;
}

function isEvalResults(value: unknown): value is EvalResultsView {
  if (typeof value !== 'object' || value === null || !('results' in value)) return false;
  const results = (value as { results: unknown }).results;
  return typeof results === 'object' && results !== null && Object.values(results).every((task) => typeof task === 'object' && task !== null);
}

function isGenerations(value: unknown): value is Array<{ prompt: string; text: string }> {
  return (
    Array.isArray(value) &&
    value.length > 0 &&
    value.every((g) => typeof g === 'object' && g !== null && typeof (g as { prompt?: unknown }).prompt === 'string' && typeof (g as { text?: unknown }).text === 'string')
  );
}

/** Before and after generations paired by prompt; a text that repeats its prompt is shown without it. */
function compareGenerations(before: ReadonlyArray<{ prompt: string; text: string }>, after: ReadonlyArray<{ prompt: string; text: string }>): GenerationComparison[] {
  const continuation = (g: { prompt: string; text: string }): string => (g.text.startsWith(g.prompt) ? g.text.slice(g.prompt.length) : g.text);
  const byPrompt = new Map<string, GenerationComparison>();
  for (const g of before) byPrompt.set(g.prompt, { prompt: g.prompt, before: continuation(g) });
  for (const g of after) byPrompt.set(g.prompt, { ...(byPrompt.get(g.prompt) ?? { prompt: g.prompt }), after: continuation(g) });
  return [...byPrompt.values()];
}

function neuronScatter(file: NeuronScoresFile): NeuronScatterData {
  return {
    ...(file.estimator ? { biasLabel: `${file.estimator}${file.aggregation ? `, ${file.aggregation} over pairs` : ''}` } : {}),
    ...(file.importance ? { importanceLabel: file.importance } : {}),
    layers: file.layers.map((layer) => ({
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
function pairProjection(tokens: TokenActivationsFile): NonNullable<ReportData['pca']> {
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

function subtitle(plan: PlanFile | undefined, bias: (BiasReportView & { model?: { path?: string } }) | undefined, inputs: ReportInputs): string[] {
  const lines: string[] = [];
  const model = plan?.model?.path ?? bias?.model?.path;
  if (model) lines.push(`model: ${displayPath(model)}`);
  if (inputs.before) lines.push(`before: ${displayPath(inputs.before)}`);
  if (inputs.after) lines.push(`after: ${displayPath(inputs.after)}`);
  return lines;
}

function settings(plan: PlanFile | undefined, scores: NeuronScoresFile | undefined): Array<[string, string]> {
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
    const widths = (sizes: number[]) => [...new Set(sizes)].join(' / ');
    rows.push(['MLP width', `${widths(plan.model.intermediateSizes)} → ${widths(plan.intermediateSizes)}`]);
  }
  return rows;
}
