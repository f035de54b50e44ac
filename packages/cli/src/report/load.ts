import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { ARTIFACTS, readJsonFile } from '@fairprune/core';
import { BIAS_REPORT, checkShape, NEURON_SCORES, PLAN, TOKEN_ACTIVATIONS, type Shape } from './check-inputs.js';
import { buildReportData, type GenerationView, type NeuronScoresView, type PlanView, type TokenActivationsView } from './build.js';
import { UsageError } from '../exit-codes.js';
import type { BiasReportView, EvalResultsView, ReportData } from './types.js';

/**
 * Where the report's inputs are, as the pipeline writes them:
 * - `fairprune analyze --out DIR` → `DIR/bias-report.json`
 * - `fairprune prune --out DIR` (the pruned model folder) → `pruning-plan.json`, `neuron-scores.json` (with one pair's
 *   token activations), `bias-report.before.json`, `bias-report.after.json`
 * - evaluation results (`{ results: { task: {...} } }`, lm-evaluation-harness's schema or fairprune's older one) and
 *   generations (`[{ prompt, text }]`) in any other `.json` file of either folder, recognised by their shape, and
 *   lm-eval result files (`results_*.json`) in its sub-folders (what `fairprune eval --output-path` writes)
 */
export interface ReportInputs {
  /** Folder with the analysis of the original model. */
  before?: string;
  /** Folder with the pruned model's analysis, or the pruned model folder itself. */
  after?: string;
}

export interface LoadReportOptions {
  /** Title at the top of the report. */
  title?: string;
  /** The folders are inside an output's temp folder `from` that becomes `to`: the report cites the final paths. */
  renamed?: { from: string; to: string };
}

export interface LoadedReport {
  data: ReportData;
  /** Every file the report was built from, absolute. */
  files: string[];
}

/** Files in a model folder that are never report inputs (and can be large). */
const modelFiles = /^(config|generation_config|tokenizer|tokenizer_config|special_tokens_map|preprocessor_config)\.json$|\.index\.json$/;
/** lm-evaluation-harness's aggregated results file name (`results_<ISO time with - for :>.json`). */
const lmEvalResultsFile = /^results_.*\.json$/;
/** Files with a fixed meaning; everything else is recognised by content. */
const knownFiles = new Set<string>([
  ARTIFACTS.biasReport,
  ARTIFACTS.biasBefore,
  ARTIFACTS.biasAfter,
  ARTIFACTS.plan,
  ARTIFACTS.neuronScores,
  ARTIFACTS.tokenActivations,
  ARTIFACTS.marker,
]);

function parseJson(path: string): unknown {
  try {
    return readJsonFile(path);
  } catch (error) {
    throw new Error(`report: ${(error as Error).message}`);
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

  /** A known input file, checked against the shape the report reads; undefined when the folder lacks it. */
  read<T>(name: string, shape: Shape): T | undefined {
    if (!this.has(name)) return undefined;
    const path = join(this.dir!, name);
    const value = this.readPath(path);
    checkShape(value, shape, resolve(path));
    return value as T;
  }

  readPath(path: string): unknown {
    const absolute = resolve(path);
    const value = parseJson(absolute);
    this.used.push(absolute);
    return value;
  }

  /**
   * Other JSON files of the folder, parsed, for recognition by shape; then the lm-eval result files one folder down
   * (`fairprune eval --output-path DIR` writes `DIR/<model>/results_<time>.json`), oldest first so the latest wins.
   */
  others(): Array<{ path: string; value: unknown }> {
    if (this.dir === undefined) return [];
    const dir = this.dir;
    const own = readdirSync(dir).filter((name) => name.endsWith('.json') && !knownFiles.has(name) && !modelFiles.test(name));
    const lmEval = readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .flatMap((entry) => readdirSync(join(dir, entry.name)).filter((name) => lmEvalResultsFile.test(name)).map((name) => join(entry.name, name)))
      .sort((a, b) => (basename(a) < basename(b) ? -1 : basename(a) > basename(b) ? 1 : 0));
    return [...own.sort(), ...lmEval].map((name) => {
      const path = resolve(dir, name);
      return { path, value: parseJson(path) };
    });
  }
}

/** Reads what the pipeline wrote in the two folders; any part may be missing (the report then says how to get it). */
export function loadReportData(inputs: ReportInputs, options: LoadReportOptions = {}): LoadedReport {
  if (inputs.before === undefined && inputs.after === undefined) throw new UsageError('report: give --before and/or --after');
  const renamed = options.renamed;
  const shown = (path: string) => (renamed ? join(renamed.to, relative(renamed.from, resolve(path))) : path);
  const used: string[] = [];
  const before = new Folder(inputs.before, used);
  const after = new Folder(inputs.after, used);

  const biasBefore =
    before.read<BiasReportView>(ARTIFACTS.biasReport, BIAS_REPORT) ??
    before.read<BiasReportView>(ARTIFACTS.biasBefore, BIAS_REPORT) ??
    after.read<BiasReportView>(ARTIFACTS.biasBefore, BIAS_REPORT);
  const biasAfter = after.read<BiasReportView>(ARTIFACTS.biasAfter, BIAS_REPORT) ?? after.read<BiasReportView>(ARTIFACTS.biasReport, BIAS_REPORT);
  const plan = after.read<PlanView>(ARTIFACTS.plan, PLAN) ?? before.read<PlanView>(ARTIFACTS.plan, PLAN);
  const neuronScores = after.read<NeuronScoresView>(ARTIFACTS.neuronScores, NEURON_SCORES) ?? before.read<NeuronScoresView>(ARTIFACTS.neuronScores, NEURON_SCORES);
  const tokenActivations =
    neuronScores?.tokenActivations ??
    before.read<TokenActivationsView>(ARTIFACTS.tokenActivations, TOKEN_ACTIVATIONS) ??
    after.read<TokenActivationsView>(ARTIFACTS.tokenActivations, TOKEN_ACTIVATIONS);
  const recognisedBefore = recognise(before, used);
  const recognisedAfter = recognise(after, used);

  const data = buildReportData({
    ...(options.title !== undefined ? { title: options.title } : {}),
    folders: {
      ...(inputs.before !== undefined ? { before: shown(inputs.before) } : {}),
      ...(inputs.after !== undefined ? { after: shown(inputs.after) } : {}),
    },
    ...(biasBefore ? { biasBefore } : {}),
    ...(biasAfter ? { biasAfter } : {}),
    ...(plan ? { plan } : {}),
    ...(neuronScores ? { neuronScores } : {}),
    ...(tokenActivations ? { tokenActivations } : {}),
    ...(recognisedBefore.evaluation ? { evaluationBefore: recognisedBefore.evaluation } : {}),
    ...(recognisedAfter.evaluation ? { evaluationAfter: recognisedAfter.evaluation } : {}),
    ...(recognisedBefore.generations ? { generationsBefore: recognisedBefore.generations } : {}),
    ...(recognisedAfter.generations ? { generationsAfter: recognisedAfter.generations } : {}),
    sources: used.map(shown),
  });
  return { data, files: used };
}

interface Recognised {
  evaluation?: EvalResultsView;
  generations?: GenerationView[];
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

function isGenerations(value: unknown): value is GenerationView[] {
  return (
    Array.isArray(value) &&
    value.length > 0 &&
    value.every((g) => typeof g === 'object' && g !== null && typeof (g as { prompt?: unknown }).prompt === 'string' && typeof (g as { text?: unknown }).text === 'string')
  );
}

