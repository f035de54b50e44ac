import { openModelFolder, requireOnnxPath, type ModelFolder } from '../model/folder.js';
import { chooseMeasurePath, defaultMemoryBudget, estimateWorkingSet, type MeasurePath, type WorkingSetEstimate, type Workload } from '../model/working-set.js';
import { analysisSettings, PAIRS_PER_BATCH, type AnalyzeOptions } from './analyze.js';
import { checkPairs, requireUsablePairs, SEED_PAIRS } from './pairs.js';

/** {@link planMeasure}'s answer: the path, and when it was chosen by size, the estimate and budget behind it. */
export interface MeasurePlan {
  /** The path the measure stage takes. */
  path: MeasurePath;
  /** Working-set estimate for the analysis' pairs (absent when `streamed` forced the path). */
  estimate?: WorkingSetEstimate;
  /** The budget compared against, bytes. */
  budget?: number;
}

/** The tokens an analysis pushes through the model: every prompt of both pair sets, and its largest whole-model batch. */
export function analysisWorkload(folder: ModelFolder, options: Pick<AnalyzeOptions, 'pairs' | 'evalPairs'> = {}): Workload {
  const pairs = [...(options.pairs ?? SEED_PAIRS), ...(options.evalPairs ?? [])];
  const lengths = pairs.flatMap((pair) => [
    folder.tokenizer.encode(pair.a).length,
    folder.tokenizer.encode(pair.b).length,
  ]);
  // Only behaviour pairs (with continuations) need logits.
  const logits = pairs.some((pair) => (pair.negative?.length ?? 0) + (pair.positive?.length ?? 0) > 0);
  return { tokens: lengths.reduce((a, b) => a + b, 0), batchTokens: 2 * PAIRS_PER_BATCH * Math.max(0, ...lengths), logits };
}

/**
 * Chooses how the measure stage runs for `modelDir`: streamed when `options.streamed` forces it, else the whole model
 * when its working set for these pairs fits `options.memoryBudget` (default {@link defaultMemoryBudget}), else
 * streamed. Reads the graph, not the weights; says its choice through `options.onProgress`.
 */
export function planMeasure(modelDir: string, options: AnalyzeOptions = {}): MeasurePlan {
  if (options.streamed) return { path: 'streamed' };
  const folder = openModelFolder(modelDir, options.onnxFile !== undefined ? { onnxFile: options.onnxFile } : {});
  // Unusable pairs are refused before the graph is read, as the analysis itself does.
  requireUsablePairs(checkPairs(options.pairs ?? SEED_PAIRS, folder.tokenizer, analysisSettings(options).estimator), options.pairsSource ?? 'builtin:seed');
  const estimate = estimateWorkingSet(requireOnnxPath(folder), folder.config, analysisWorkload(folder, options));
  const budget = options.memoryBudget ?? defaultMemoryBudget();
  const path = chooseMeasurePath(estimate, { memoryBudget: budget });
  options.onProgress?.(`working set: whole model ${formatGb(estimate.whole)}, streamed ${estimate.streamed === null ? 'n/a' : formatGb(estimate.streamed)}; budget ${formatGb(budget)} → ${path}`);
  return { path, estimate, budget };
}

/** Bytes as GB with one decimal (`4.9 GB`). */
export function formatGb(bytes: number): string {
  return `${(bytes / 1e9).toFixed(1)} GB`;
}
