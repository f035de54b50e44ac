import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Device } from '@fairprune/native-cuda';
import type { ModelProto } from 'onnx-buf';
import { openForAnalysis, resolveAnalyzeOptions, type AnalyzeOptions, type BiasReport, type PairTokenActivations, type ResolvedAnalyzeOptions } from '../bias/analyze.js';
import { openModelFolder, requireOnnxPath, type ModelFolder } from '../model/folder.js';
import { readOnnxModel, tensorDims, tensorDtype } from '../model/onnx-codec.js';
import { SafetensorsFile } from '../model/safetensors.js';
import { ARTIFACTS } from '../io/artifacts.js';
import { jsonText, writeOutput } from '../io/output.js';
import * as stages from '../pipeline/prune-stages.js';
import type { PruneRun } from '../pipeline/prune-stages.js';
import { invalidOption, PRUNE_DEFAULTS, requireOneOf } from '../pipeline/options.js';
import { checkOutputOutsideInput } from './apply.js';
import { writeModelCard } from './model-card.js';
import { IMPORTANCE_METHODS, type ImportanceMethod } from './importance.js';
import { PRUNE_MODES, validatePlan, type PruneMode, type PruningPlan } from './plan.js';
import { formatGb, planMeasure } from '../bias/measure-path.js';
import { reuseAnalysis, type ModelAnalysis, type ReusedAnalysis } from './model-analysis.js';
import { SCORE_METHODS, validateSelectionOptions, type ScoreMethod, type SelectionOptions } from './select.js';
import { BEHAVIOUR_DEFAULTS, type Compensation } from './behaviour-select.js';
import { validateBehaviourOptions, type BehaviourPruneOptions } from './behaviour-run.js';

/** How neurons are chosen: the article's prunability score (`hybrid`, `bias`) or their measured effect on behaviour. */
export type PruneMethod = ScoreMethod | 'behaviour';
/** Every {@link PruneMethod}, for option validation and UIs. */
export const PRUNE_METHODS: readonly PruneMethod[] = [...SCORE_METHODS, 'behaviour'];

export interface PruneOptions extends AnalyzeOptions {
  /** The pruned model folder; written under a temporary name and renamed at the end. */
  outDir: string;
  /** Weight-importance method. Default `maw`. */
  importance?: ImportanceMethod;
  /** Prunability formula, or `behaviour` (neurons chosen by their measured effect on the pairs' continuations). Default `hybrid`. */
  method?: PruneMethod;
  /** Settings of `method: 'behaviour'`. */
  behaviour?: BehaviourPruneOptions;
  /** Replace removed neurons' mean contribution by an MLP-output bias (`mean`). Default `none`; `mean` with `method: 'behaviour'`. */
  compensate?: Compensation;
  /** Calibration texts: the ability guard of `behaviour` (next-token NLL) and the means of `compensate: 'mean'`. */
  calibrationTexts?: readonly string[];
  /** Where the calibration texts came from, for the plan. */
  calibrationSource?: string;
  /** w in P = w·bias_n + (1 − w)·(1 − imp_n). Default 0.5. */
  biasWeight?: number;
  /** Uniform fraction per layer. Default 0.002 unless another selection mode is given. With `behaviour`: the fraction of all neurons at most removed (default 0.1). */
  fraction?: number;
  /** Fraction per layer index; layers not listed are not pruned. Replaces `fraction`. */
  layerFractions?: Record<number, number>;
  /** Prune the K highest prunability scores across the (selected) layers. Replaces `fraction`. */
  globalTopK?: number;
  /** Only these layers are pruned (with `fraction` or `globalTopK`). */
  layers?: number[];
  /** Round each layer's kept width down to a multiple of this (e.g. 8 or 64 for kernel-friendly shapes). */
  divisor?: number;
  /** Default `remove`; `zero` with `method: 'behaviour'` (its per-layer counts differ, which safetensors cannot hold when removed). */
  mode?: PruneMode;
  /** Write pruned safetensors too (default: when the folder has them). Non-uniform removal needs false. */
  safetensors?: boolean;
  /** Re-apply this plan instead of selecting (its model hash must match unless `applyToOtherWeights`). */
  plan?: PruningPlan;
  /**
   * Apply `plan` although it was made on weights with another hash; the written plan then describes this model
   * (path, hash, parameter counts) and keeps the plan's model under `origin`.
   */
  applyToOtherWeights?: boolean;
  /** Replace an existing output folder that an earlier fairprune run wrote (anything else is refused). */
  force?: boolean;
  /** Measure the pruned model again (default true). */
  analyzeAfter?: boolean;
  /** Where the native kernels run (difference and weight scans). */
  kernelDevice?: Device;
  /** A {@link ModelAnalysis} of this model with this run's analysis settings: the original model is not measured or scanned again. */
  analysis?: ModelAnalysis;
}

/** Per-neuron data of one layer for charts: bias vs importance, and what was pruned. */
export interface LayerNeuronScores {
  /** Decoder layer index. */
  layer: number;
  /** Bias score per neuron (before pruning). */
  bias: number[];
  /** Importance per neuron. */
  importance: number[];
  /** Prunability P per neuron (higher = pruned first). */
  prunability: number[];
  /** Whether each neuron was pruned. */
  pruned: boolean[];
}

/** `neuron-scores.json`. */
export interface NeuronScoresFile {
  /** File format tag. */
  format: 'fairprune.neuron-scores';
  /** File format version. */
  version: 1;
  /** Bias estimator used. */
  estimator: string;
  /** Aggregation over pairs used. */
  aggregation: string;
  /** Importance method used. */
  importance: ImportanceMethod;
  /** Selection method used. With `behaviour`, `prunability` is minus each neuron's measured effect on L_A (0 when not measured). */
  method: PruneMethod;
  /** w of the hybrid formula. */
  biasWeight: number;
  /** One entry per decoder layer. */
  layers: LayerNeuronScores[];
  /** One pair's token activations at one tensor (before pruning), for a PCA chart. */
  tokenActivations?: PairTokenActivations;
}

/** Result of {@link runFairnessPruning}; everything in it was also written under `outDir`. */
export interface PruneResult {
  /** Absolute path of the pruned model folder. */
  outDir: string;
  /** The plan applied (`pruning-plan.json`). */
  plan: PruningPlan;
  /** Bias of the original model (`bias-report.before.json`). */
  before: BiasReport;
  /** Bias of the pruned model (`bias-report.after.json`); absent with `analyzeAfter: false`. */
  after?: BiasReport;
  /** Per-neuron scores and what was pruned (`neuron-scores.json`). */
  neuronScores: NeuronScoresFile;
  /** Wall time per stage, milliseconds. */
  timings: Record<string, number>;
  /** Files written inside `outDir` besides the model. */
  files: {
    /** `pruning-plan.json`. */
    plan: string;
    /** `bias-report.before.json`. */
    before: string;
    /** `bias-report.after.json`, when the pruned model was measured. */
    after?: string;
    /** `neuron-scores.json`. */
    neuronScores: string;
    /** `README.md`, the model card. */
    card: string;
  };
}

/** The prune mode with its default: `zero` for `behaviour`, else {@link PRUNE_DEFAULTS}.mode. */
export function pruneModeOf(options: Pick<PruneOptions, 'mode' | 'method'>): PruneMode {
  return options.mode ?? (options.method === 'behaviour' ? 'zero' : PRUNE_DEFAULTS.mode);
}

/** The compensation with its default: {@link BEHAVIOUR_DEFAULTS}.compensate for `behaviour`, else `none`. */
function compensationOf(options: Pick<PruneOptions, 'compensate' | 'method'>): Compensation {
  return options.compensate ?? (options.method === 'behaviour' ? BEHAVIOUR_DEFAULTS.compensate : 'none');
}

/** Selection options from prune options, with the project defaults ({@link PRUNE_DEFAULTS}; the article's methods, not `behaviour`). */
function selectionOptionsOf(options: PruneOptions & { method?: ScoreMethod }): SelectionOptions {
  const explicitMode = options.layerFractions !== undefined || options.globalTopK !== undefined;
  return {
    method: options.method ?? PRUNE_DEFAULTS.method,
    biasWeight: options.biasWeight ?? PRUNE_DEFAULTS.biasWeight,
    ...(options.fraction !== undefined || !explicitMode ? { fraction: options.fraction ?? PRUNE_DEFAULTS.fraction } : {}),
    ...(options.layerFractions !== undefined ? { layerFractions: options.layerFractions } : {}),
    ...(options.globalTopK !== undefined ? { globalTopK: options.globalTopK } : {}),
    ...(options.layers !== undefined ? { layers: options.layers } : {}),
    ...(options.divisor !== undefined ? { divisor: options.divisor } : {}),
  };
}

/** Prune options validated once, with every default filled in: what the pipeline's stages read. */
export type ResolvedPruneOptions = PruneOptions &
  ResolvedAnalyzeOptions & {
    /** Weight-importance method. */
    importance: ImportanceMethod;
    /** How neurons are chosen. */
    method: PruneMethod;
    /** Remove or zero. */
    mode: PruneMode;
    /** Mean compensation of the removed neurons, or none. */
    compensate: Compensation;
    /** The selection the prunability score makes; undefined for `behaviour`. */
    selection: SelectionOptions | undefined;
  };

/**
 * Every check that needs no model, once, and the defaults ({@link PRUNE_DEFAULTS}) filled in: run first so bad input
 * fails before minutes of work.
 * @throws {@link invalidOption} errors naming the option, and {@link validatePlan}'s for a given plan.
 */
export function resolvePruneOptions(options: PruneOptions): ResolvedPruneOptions {
  const analysis = resolveAnalyzeOptions(options);
  if (typeof options.outDir !== 'string' || options.outDir === '') throw invalidOption('outDir', 'the path of the output folder', options.outDir);
  const importance = options.importance ?? PRUNE_DEFAULTS.importance;
  requireOneOf('importance', IMPORTANCE_METHODS, importance);
  const method = options.method ?? PRUNE_DEFAULTS.method;
  requireOneOf('method', PRUNE_METHODS, method);
  const mode = pruneModeOf(options);
  requireOneOf('mode', PRUNE_MODES, mode);
  const compensate = compensationOf(options);
  const behaviour = method === 'behaviour';
  if (behaviour && (options.layerFractions !== undefined || options.globalTopK !== undefined || options.divisor !== undefined)) {
    throw new Error('--method behaviour chooses its own per-layer counts: use --fraction or --max-neurons, not --layer-fractions, --global-top-k or --divisor');
  }
  if (behaviour && options.fraction !== undefined && !(options.fraction > 0 && options.fraction < 1)) {
    throw invalidOption('fraction', 'a number strictly between 0 and 1', options.fraction);
  }
  if (behaviour && !(options.pairs ?? []).some((p) => p.negative && p.positive)) {
    throw new Error(`--method behaviour needs pairs with "negative" and "positive" continuations; ${options.pairsSource ?? 'the built-in seed pair'} has none`);
  }
  validateBehaviourOptions({
    ...(options.behaviour ? { behaviour: options.behaviour } : {}),
    compensate,
    ...(options.calibrationTexts ? { calibrationTexts: options.calibrationTexts } : {}),
    needsCalibration: behaviour || compensate === 'mean',
  });
  const selection = behaviour ? undefined : selectionOptionsOf({ ...options, method });
  if (selection) validateSelectionOptions(selection);
  if (options.plan) validatePlan(options.plan, 'given');
  return { ...options, ...analysis, importance, method, mode, compensate, selection };
}

/**
 * Parameters of a model folder: every tensor of its safetensors files, else the non-scalar float initializers of its
 * ONNX file (`model`, when the caller has decoded it already).
 */
export function countParameters(folder: Pick<ModelFolder, 'safetensorsFiles' | 'onnxPath'>, model?: ModelProto): number {
  let total = 0;
  if (folder.safetensorsFiles.length > 0) {
    for (const path of folder.safetensorsFiles) {
      const file = new SafetensorsFile(path);
      try {
        for (const entry of file.entries.values()) total += entry.shape.reduce((a, b) => a * b, 1);
      } finally {
        file.close();
      }
    }
    return total;
  }
  for (const tensor of (model ?? readOnnxModel(folder.onnxPath!)).graph!.initializer) {
    const dims = tensorDims(tensor);
    // Scalars are exporter constants (eps, scales), not parameters.
    if (tensorDtype(tensor) && dims.length > 0) total += dims.reduce((a, b) => a * b, 1);
  }
  return total;
}

/**
 * Safetensors folders carry one intermediate_size, so removing different counts per layer cannot be written there.
 * The writer refuses it; this says so before the analysis instead of after it.
 */
function checkRemovalFitsSafetensors(options: PruneOptions, folder: ModelFolder): void {
  if (pruneModeOf(options) !== 'remove' || options.safetensors === false || folder.safetensorsFiles.length === 0) return;
  const numLayers = folder.config.numHiddenLayers;
  const fractions = options.layerFractions === undefined ? undefined : Object.values(options.layerFractions);
  const reason =
    options.plan !== undefined && new Set(Object.values(options.plan.layers).map((l) => l.length)).size > 1
      ? 'the plan removes a different number of neurons per layer'
      : options.method === 'behaviour'
        ? 'a behaviour selection removes a different number of neurons per layer'
        : options.globalTopK !== undefined
        ? 'a global top-K selection removes a different number of neurons per layer'
        : options.layers !== undefined && new Set(options.layers).size < numLayers
          ? `pruning only layers ${options.layers.join(', ')} of ${numLayers} leaves the others wider`
          : fractions !== undefined && (fractions.length < numLayers || new Set(fractions).size > 1)
            ? 'per-layer fractions remove a different number of neurons per layer'
            : undefined;
  if (reason) {
    throw new Error(
      `${reason}, which cannot be written to ${folder.safetensorsFiles[0]} (config.json has one intermediate_size). ` +
        'Use --mode zero (same shapes, zeroed weights), or --no-safetensors to write only the pruned ONNX.',
    );
  }
}

/**
 * Fairness Pruning end to end: measure bias and per-neuron scores, score importance from the weights, select (or
 * re-apply `options.plan`), write the pruned model folder with `pruning-plan.json`, `bias-report.before.json`,
 * `neuron-scores.json`, and measure the pruned model again (`bias-report.after.json`). The input folder is only read.
 * @param modelDir  Hugging Face-style folder with an ONNX export.
 * Everything is written inside a temporary sibling of `outDir` that one rename makes visible at the end
 * ({@link writeOutput}): a reader never sees the folder without all its files.
 * @throws on invalid options, or an `outDir` that cannot be written (taken by another process, not empty, not
 *   fairprune's to replace), before any model work; when a given plan's weights hash differs from this model's
 *   (without `applyToOtherWeights`); and the errors of {@link analyzeBias} and {@link writePrunedFolder}.
 */
export async function runFairnessPruning(modelDir: string, options: PruneOptions): Promise<PruneResult> {
  const resolved = resolvePruneOptions(options);
  const timings: Record<string, number> = {};
  const time = async <T>(stage: string, work: () => Promise<T> | T): Promise<T> => {
    const start = performance.now();
    try {
      return await work();
    } finally {
      timings[stage] = (timings[stage] ?? 0) + performance.now() - start;
    }
  };
  const progress = options.onProgress ?? (() => {});
  const folder = openModelFolder(modelDir, options.onnxFile === undefined ? {} : { onnxFile: options.onnxFile });
  checkRemovalFitsSafetensors(options, folder);
  const outDir = resolve(options.outDir);
  checkOutputOutsideInput(modelDir, outDir);
  if (resolved.method === 'behaviour' || resolved.compensate === 'mean') requireWholeModelFits(modelDir, resolved);
  return writeOutput(outDir, { kind: 'dir', command: 'prune', force: options.force ?? false }, async (work) => {
    const reused = options.analysis ? await time('importance', () => reuseAnalysis(options.analysis!, folder, requireOnnxPath(folder), options)) : undefined;
    progress(`opening ${modelDir}`);
    // The whole model when it fits the memory budget, else one layer at a time (the analysis opens the model itself).
    const streamed = !reused && planMeasure(modelDir, resolved).path === 'streamed';
    const runOptions = streamed ? { ...resolved, streamed: true } : resolved;
    // With mask inputs (and the replacement ones for mean compensation), so verify measures the pruned model on it.
    const masks = options.analyzeAfter === false ? undefined : { replacement: resolved.compensate === 'mean' };
    const opened = streamed || reused ? undefined : await time('open', () => openForAnalysis(folder, runOptions, masks));
    const onnxPath = opened?.onnxPath ?? requireOnnxPath(folder);
    const calibrationMeans = stages.lazyCalibrationMeans(folder, onnxPath, runOptions);
    const run: PruneRun = { folder, onnxPath, opened, options: runOptions, given: options, progress, time, timings, calibrationMeans };
    try {
      return await stagesOf(run, reused, modelDir, work, outDir);
    } finally {
      await opened?.capture.release();
    }
  });
}

/** measure → score → select → write → verify, then the run's files beside the model in `work`. */
async function stagesOf(run: PruneRun, reused: ReusedAnalysis | undefined, modelDir: string, work: string, outDir: string): Promise<PruneResult> {
  const { folder, timings, progress, given: options } = run;
  const measured = await stages.measure(run, reused, modelDir);
  // Without a verify the session is done: it holds a copy of every weight.
  if (options.analyzeAfter === false) await run.opened?.capture.release();
  const scored = await stages.score(run, reused);
  const selected = await run.time('select', () => stages.select(run, measured, scored, modelDir));
  const { plan } = selected;
  progress(`writing the pruned model to ${outDir}`);
  const written = await stages.write(run, work, selected, modelDir);
  const neuronScores = stages.neuronScores(run, measured, scored, selected);
  const after = options.analyzeAfter === false ? undefined : await stages.verify(run, work, outDir, written);
  const { before } = measured;
  writeFileSync(join(work, ARTIFACTS.plan), jsonText(plan));
  writeFileSync(join(work, ARTIFACTS.biasBefore), jsonText(before));
  writeFileSync(join(work, ARTIFACTS.neuronScores), jsonText(neuronScores));
  if (after) writeFileSync(join(work, ARTIFACTS.biasAfter), jsonText(after));
  writeModelCard(work, outDir, folder.dir, { plan, before, ...(after ? { after } : {}) });
  return {
    outDir,
    plan,
    before,
    ...(after ? { after } : {}),
    neuronScores,
    timings,
    files: {
      plan: join(outDir, ARTIFACTS.plan),
      before: join(outDir, ARTIFACTS.biasBefore),
      neuronScores: join(outDir, ARTIFACTS.neuronScores),
      ...(after ? { after: join(outDir, ARTIFACTS.biasAfter) } : {}),
      card: join(outDir, ARTIFACTS.modelCard),
    },
  };
}

/**
 * `--method behaviour` (the masked probe) and `--compensate mean` (the calibration means) run whole-model sessions,
 * on either measure path: refused before any work when the whole model does not fit the memory budget, instead of
 * running out of memory after the streamed analysis.
 * @throws naming the flags, the estimate and the budget.
 */
function requireWholeModelFits(modelDir: string, options: ResolvedPruneOptions): void {
  // Asked by size even when `streamed` forces the analysis' path; quietly: the run's own choice is said later.
  const { onProgress: _said, ...quiet } = options;
  const { path, estimate, budget } = planMeasure(modelDir, { ...quiet, streamed: false });
  if (path === 'whole') return;
  const flag = options.method === 'behaviour' ? '--method behaviour' : '--compensate mean';
  throw new Error(
    `${flag} opens the whole model in one onnxruntime session: its working set is estimated at ` +
      `${formatGb(estimate!.whole)}, over the memory budget of ${formatGb(budget!)} (--memory-budget). Raise --memory-budget if this ` +
      'machine has the memory, or prune with --method hybrid or bias and without --compensate mean, which run one layer at a time.',
  );
}
