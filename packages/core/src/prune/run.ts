import { writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type { Device } from '@fairprune/native-cuda';
import {
  analyzeBias,
  analyzeOpenedModel,
  openForAnalysis,
  validateAnalyzeOptions,
  type AnalyzeOptions,
  type BiasReport,
  type PairTokenActivations,
} from '../bias/analyze.js';
import { openModelFolder, requireOnnxPath, type ModelFolder } from '../model/folder.js';
import { readOnnxModel, tensorDims, tensorDtype } from '../model/onnx-codec.js';
import { SafetensorsFile } from '../model/safetensors.js';
import { OnnxWeights } from '../model/weights.js';
import { ARTIFACTS } from '../io/artifacts.js';
import { jsonText, writeOutput } from '../io/output.js';
import { checkOutputOutsideInput, writePrunedModel } from './apply.js';
import { writeModelCard } from './model-card.js';
import { IMPORTANCE_METHODS, modelImportance, type ImportanceMethod } from './importance.js';
import { buildPlan, planLayerMap, PRUNE_MODES, requirePlanFitsModel, validatePlan, type PlanModelIdentity, type PruneMode, type PruningPlan } from './plan.js';
import { planMeasure } from '../bias/measure-path.js';
import { reuseAnalysis, type ModelAnalysis } from './model-analysis.js';
import { prunability, selectNeurons, validateSelectionOptions, type ScoreMethod, type SelectionOptions } from './select.js';
import { BEHAVIOUR_DEFAULTS, type Compensation } from './behaviour-select.js';
import {
  behaviourSettings,
  calibrationMeans,
  chooseByBehaviour,
  meanCompensation,
  validateBehaviourOptions,
  type BehaviourPlanRecord,
  type BehaviourPruneOptions,
} from './behaviour-run.js';

/** How neurons are chosen: the article's prunability score (`hybrid`, `bias`) or their measured effect on behaviour. */
export type PruneMethod = ScoreMethod | 'behaviour';

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

/** The prune mode with its default: `zero` for `behaviour`, else `remove`. */
export function pruneModeOf(options: Pick<PruneOptions, 'mode' | 'method'>): PruneMode {
  return options.mode ?? (options.method === 'behaviour' ? 'zero' : 'remove');
}

/** The compensation with its default: {@link BEHAVIOUR_DEFAULTS}.compensate for `behaviour`, else `none`. */
export function compensationOf(options: Pick<PruneOptions, 'compensate' | 'method'>): Compensation {
  return options.compensate ?? (options.method === 'behaviour' ? BEHAVIOUR_DEFAULTS.compensate : 'none');
}

/** Selection options from prune options, with the project defaults (the article's methods; not `behaviour`). */
export function selectionOptionsOf(options: PruneOptions & { method?: ScoreMethod }): SelectionOptions {
  const explicitMode = options.layerFractions !== undefined || options.globalTopK !== undefined;
  return {
    method: options.method ?? 'hybrid',
    biasWeight: options.biasWeight ?? 0.5,
    ...(options.fraction !== undefined || !explicitMode ? { fraction: options.fraction ?? 0.002 } : {}),
    ...(options.layerFractions !== undefined ? { layerFractions: options.layerFractions } : {}),
    ...(options.globalTopK !== undefined ? { globalTopK: options.globalTopK } : {}),
    ...(options.layers !== undefined ? { layers: options.layers } : {}),
    ...(options.divisor !== undefined ? { divisor: options.divisor } : {}),
  };
}

/** Every check that needs no model: run first so bad input fails before minutes of work. */
export function validatePruneOptions(options: PruneOptions): void {
  validateAnalyzeOptions(options);
  if (typeof options.outDir !== 'string' || options.outDir === '') throw new Error('An output folder (--out) is required');
  const importance = options.importance ?? 'maw';
  if (!IMPORTANCE_METHODS.includes(importance)) throw new Error(`Unknown importance method "${importance}" (use ${IMPORTANCE_METHODS.join(', ')})`);
  const mode = pruneModeOf(options);
  if (!PRUNE_MODES.includes(mode)) throw new Error(`Unknown mode "${mode}" (use remove or zero)`);
  const behaviour = options.method === 'behaviour';
  if (behaviour && (options.layerFractions !== undefined || options.globalTopK !== undefined || options.divisor !== undefined)) {
    throw new Error('--method behaviour chooses its own per-layer counts: use --fraction or --max-neurons, not --layer-fractions, --global-top-k or --divisor');
  }
  if (behaviour && options.fraction !== undefined && !(options.fraction > 0 && options.fraction < 1)) {
    throw new Error(`--fraction must lie strictly between 0 and 1, got ${String(options.fraction)}`);
  }
  if (behaviour && !(options.pairs ?? []).some((p) => p.negative && p.positive)) {
    throw new Error(`--method behaviour needs pairs with "negative" and "positive" continuations; ${options.pairsSource ?? 'the built-in seed pair'} has none`);
  }
  validateBehaviourOptions({
    ...(options.behaviour ? { behaviour: options.behaviour } : {}),
    compensate: compensationOf(options),
    ...(options.calibrationTexts ? { calibrationTexts: options.calibrationTexts } : {}),
    needsCalibration: behaviour || compensationOf(options) === 'mean',
  });
  if (!behaviour) validateSelectionOptions(selectionOptionsOf({ ...options, method: options.method as ScoreMethod | undefined }));
  if (options.plan) validatePlan(options.plan, 'given');
}

/** Parameters of a model folder: every tensor of its safetensors files, else the non-scalar float initializers of its ONNX file. */
export function countParameters(folder: Pick<ModelFolder, 'safetensorsFiles' | 'onnxPath'>): number {
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
  const model = readOnnxModel(folder.onnxPath!);
  for (const tensor of model.graph!.initializer) {
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
  validatePruneOptions(options);
  const progress = options.onProgress ?? (() => {});
  const importanceMethod = options.importance ?? 'maw';
  const mode = pruneModeOf(options);
  const method: PruneMethod = options.method ?? 'hybrid';
  const compensate = compensationOf(options);
  const selectionOptions = method === 'behaviour' ? undefined : selectionOptionsOf({ ...options, method });
  const timings: Record<string, number> = {};
  const time = async <T>(stage: string, work: () => Promise<T> | T): Promise<T> => {
    const start = performance.now();
    try {
      return await work();
    } finally {
      timings[stage] = (timings[stage] ?? 0) + performance.now() - start;
    }
  };

  const folder = openModelFolder(modelDir, options.onnxFile === undefined ? {} : { onnxFile: options.onnxFile });
  checkRemovalFitsSafetensors(options, folder);
  const outDir = resolve(options.outDir);
  checkOutputOutsideInput(modelDir, outDir);
  return writeOutput(outDir, { kind: 'dir', command: 'prune', force: options.force ?? false }, pruneInto);

  /** The whole run, writing into the output's temp folder `work`; the result names the final paths. */
  async function pruneInto(work: string): Promise<PruneResult> {
    const reused = options.analysis ? reuseAnalysis(options.analysis, folder, requireOnnxPath(folder), options) : undefined;
    progress(`opening ${modelDir}`);
    // Streamed: no whole-model session; the analysis runs one layer at a time and opens the model itself.
    const streamed = !reused && planMeasure(modelDir, options).path === 'streamed';
    const opened = streamed || reused ? undefined : await time('open', () => openForAnalysis(modelDir, options));
    const onnxPath = opened?.onnxPath ?? requireOnnxPath(folder);
    let before: BiasReport;
    let neuronBias: Float32Array[];
    let tokenActivations: PairTokenActivations | undefined;
    if (reused) ({ before, neuronBias, tokenActivations } = reused);
    else try {
      // A plan for other MLP widths is refused before the analysis (the streamed path checks it when the map is read).
      if (options.plan && opened) requirePlanFitsModel(options.plan, opened.capture.map.layers.map((l) => l.intermediateSize), 'given');
      const analysis = opened ? await analyzeOpenedModel(opened, options) : await analyzeBias(modelDir, { ...options, streamed: true });
      before = analysis.report;
      if (opened) before.timings = { open: timings['open']!, ...before.timings };
      for (const [stage, ms] of Object.entries(analysis.report.timings)) if (stage !== 'open' || !opened) timings[stage] = ms;
      neuronBias = analysis.neuronBias.layers;
      tokenActivations = analysis.tokenActivations;
    } finally {
      // The session holds a copy of every weight: free it before the weights are read again.
      await opened?.capture.release();
    }
    const [importance, map] = reused ? [reused.importance, reused.map] : await time('importance', async () => {
      const weights = new OnnxWeights(onnxPath);
      try {
        const importance = await modelImportance(weights, weights.map.layers.length, importanceMethod, {
          ...(options.kernelDevice ? { device: options.kernelDevice } : {}),
          onProgress: progress,
        });
        return [importance, weights.map] as const;
      } finally {
        weights.close();
      }
    });

    const calibrationInputs = {
      folder,
      onnxPath,
      calibrationTexts: options.calibrationTexts ?? [],
      ...(options.sessionDevice ? { device: options.sessionDevice } : {}),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
    };
    // Calibration means serve both mean replacement while selecting and compensation when writing: computed once.
    let meansOnce: Promise<Float32Array[]> | undefined;
    const means = () => (meansOnce ??= calibrationMeans(calibrationInputs));
    let behaviourEffects: { layer: number; neuron: number; deltaA: number }[] = [];

    const hidden = map.layers[0]!.hiddenSize;
    const identity: PlanModelIdentity = {
      path: folder.dir,
      weightsFile: relative(folder.dir, onnxPath),
      weightsHash: importance.weightsHash,
      numLayers: map.layers.length,
      hiddenSize: hidden,
      intermediateSizes: map.layers.map((l) => l.intermediateSize),
    };
    const planOf = (
      layers: readonly (readonly number[])[],
      planOptions: Record<string, unknown>,
      extra: { origin?: PruningPlan['origin']; behaviour?: BehaviourPlanRecord } = {},
    ) =>
      buildPlan({
        model: identity,
        options: planOptions,
        mode,
        layers,
        ...extra,
        parametersBefore: countParameters(folder),
        // gate row + up row + down column, plus the gate/up biases when the MLP has them.
        parametersPerNeuron: 3 * hidden + (folder.config.raw['mlp_bias'] === true ? 2 : 0),
        tool: '@fairprune/core',
      });
    const plan = await time('select', async () => {
      if (options.plan) {
        const given = validatePlan(options.plan, 'given');
        requirePlanFitsModel(given, identity.intermediateSizes, 'given');
        if (given.model.weightsHash === importance.weightsHash) return given;
        if (!options.applyToOtherWeights) {
          throw new Error(
            `The plan was made on weights with hash ${given.model.weightsHash.slice(0, 12)}… (${given.model.path}), this model's are ` +
              `${importance.weightsHash.slice(0, 12)}…; pass --plan-mismatch-ok to apply it to these weights anyway`,
          );
        }
        const extra = Object.keys(given.layers).filter((layer) => Number(layer) >= identity.numLayers);
        if (extra.length > 0) throw new Error(`Pruning plan given: layers ${extra.join(', ')} do not exist in ${modelDir} (${identity.numLayers} layers)`);
        progress(`applying a plan made on ${given.model.path} (weights ${given.model.weightsHash.slice(0, 12)}…) to these weights`);
        return planOf(
          identity.intermediateSizes.map((_, layer) => given.layers[String(layer)] ?? []),
          given.options,
          { origin: given.origin ?? { model: given.model, createdAt: given.createdAt } },
        );
      }
      progress('selecting neurons');
      let layers: number[][];
      let behaviourRecord: BehaviourPlanRecord | undefined;
      if (selectionOptions) {
        layers = selectNeurons(neuronBias, importance.layers, selectionOptions).map((s) => s.pruned);
      } else {
        const settings = behaviourSettings({ ...options, compensate }, map.layers.reduce((n, l) => n + l.intermediateSize, 0));
        const chosen = await chooseByBehaviour(
          {
            ...calibrationInputs,
            pairs: options.pairs ?? [],
            calibrationSource: options.calibrationSource ?? 'given texts',
            ...(settings.compensate === 'mean' ? { means: await means() } : {}),
          },
          settings,
          progress,
        );
        layers = chosen.selection.layers;
        behaviourRecord = chosen.record;
        behaviourEffects = chosen.selection.effects;
      }
      return planOf(
        layers,
        {
          pairs: options.pairsSource ?? 'builtin:seed',
          ...(options.evalPairsSource !== undefined ? { evalPairs: options.evalPairsSource } : {}),
          estimator: options.estimator ?? 'positionwise',
          aggregation: options.aggregation ?? 'mean',
          components: options.components ?? null,
          importance: importanceMethod,
          ...(selectionOptions ?? { method }),
          compensate,
          ...(options.calibrationSource !== undefined ? { calibration: options.calibrationSource } : {}),
          mode,
          // What the run proceeded past, so the plan says so wherever it travels.
          ...(options.allowMismatch ? { allowMismatch: true, mismatches: before.inputChecks.mismatches } : {}),
          ...(options.allowNonfinite ? { allowNonfinite: true } : {}),
        },
        behaviourRecord ? { behaviour: behaviourRecord } : {},
      );
    });

    progress(`writing the pruned model to ${outDir}`);
    const mlpBiases = compensate === 'mean' ? await time('compensate', async () => meanCompensation(onnxPath, await means(), planLayerMap(plan))) : undefined;
    await time('apply', () =>
      writePrunedModel(modelDir, work, {
        ...(mlpBiases ? { mlpBiases } : {}),
        selection: planLayerMap(plan),
        mode: plan.mode,
        ...(options.safetensors !== undefined ? { safetensors: options.safetensors } : {}),
        ...(options.onnxFile !== undefined ? { onnxFiles: [options.onnxFile] } : {}),
        onProgress: progress,
      }),
    );

    const prunedSets = map.layers.map((_, layer) => new Set(plan.layers[String(layer)] ?? []));
    const neuronScores: NeuronScoresFile = {
      format: 'fairprune.neuron-scores',
      version: 1,
      estimator: options.estimator ?? 'positionwise',
      aggregation: options.aggregation ?? 'mean',
      importance: importanceMethod,
      method,
      biasWeight: selectionOptions?.biasWeight ?? options.biasWeight ?? 0.5,
      layers: neuronBias.map((bias, layer) => ({
        layer,
        bias: Array.from(bias),
        importance: Array.from(importance.layers[layer]!),
        prunability: selectionOptions
          ? Array.from(prunability(bias, importance.layers[layer]!, selectionOptions.method, selectionOptions.biasWeight))
          : behaviourPrunability(behaviourEffects, layer, bias.length),
        pruned: Array.from(bias, (_, i) => prunedSets[layer]!.has(i)),
      })),
      ...(tokenActivations ? { tokenActivations } : {}),
    };
    writeFileSync(join(work, ARTIFACTS.plan), jsonText(plan));
    writeFileSync(join(work, ARTIFACTS.biasBefore), jsonText(before));
    writeFileSync(join(work, ARTIFACTS.neuronScores), jsonText(neuronScores));
    const files = {
      plan: join(outDir, ARTIFACTS.plan),
      before: join(outDir, ARTIFACTS.biasBefore),
      neuronScores: join(outDir, ARTIFACTS.neuronScores),
    };

    let after: BiasReport | undefined;
    let afterFile: string | undefined;
    if (options.analyzeAfter !== false) {
      progress('measuring the pruned model');
      const measured = (await time('analyzeAfter', () => analyzeBias(work, { ...options, tokenActivations: false }))).report;
      // Measured in the temp folder; the report names the folder the model will be read from.
      after = { ...measured, model: { ...measured.model, path: outDir, onnxFile: join(outDir, relative(work, measured.model.onnxFile)) } };
      writeFileSync(join(work, ARTIFACTS.biasAfter), jsonText(after));
      afterFile = join(outDir, ARTIFACTS.biasAfter);
    }
    writeModelCard(work, outDir, folder.dir, { plan, before, ...(after ? { after } : {}) });
    return {
      outDir,
      plan,
      before,
      ...(after ? { after } : {}),
      neuronScores,
      timings,
      files: { ...files, ...(afterFile ? { after: afterFile } : {}), card: join(outDir, ARTIFACTS.modelCard) },
    };
  }
}

/** Minus each neuron's measured effect on L_A (higher = removing it helps side A more); 0 where not measured. */
function behaviourPrunability(effects: readonly { layer: number; neuron: number; deltaA: number }[], layer: number, width: number): number[] {
  const out = new Array<number>(width).fill(0);
  for (const e of effects) if (e.layer === layer) out[e.neuron] = -e.deltaA;
  return out;
}
