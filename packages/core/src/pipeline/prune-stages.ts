/**
 * The stages of one Fairness Pruning run, in the order {@link runFairnessPruning} calls them:
 * measure → score → select → write → verify. Each reads a {@link PruneRun} (the folder opened once, the options
 * resolved once) and what the stages before it returned.
 */
import { join, relative } from 'node:path';
import { analyzeBias, openForAnalysis, type BiasReport, type OpenedModel, type PairTokenActivations } from '../bias/analyze.js';
import { measurePrunedStreamed } from '../bias/streamed-measure.js';
import { openModelFolder, type ModelFolder } from '../model/folder.js';
import { OnnxWeights } from '../model/weights.js';
import { writePrunedModel } from '../prune/apply.js';
import { modelImportance, type ModelImportance } from '../prune/importance.js';
import type { ModelAnalysis, ReusedAnalysis } from '../prune/model-analysis.js';
import { buildPlan, planLayerMap, requirePlanFitsModel, validatePlan, type PlanModelIdentity, type PruningPlan } from '../prune/plan.js';
import { countParameters, type NeuronScoresFile, type PruneOptions, type ResolvedPruneOptions } from '../prune/run.js';
import { prunability, selectNeurons } from '../prune/select.js';
import { behaviourSettings, calibrationMeans, chooseByBehaviour, meanCompensation, type BehaviourPlanRecord } from '../prune/behaviour-run.js';
import { PRUNE_DEFAULTS } from './options.js';

/** What every stage of one run reads: the input folder, opened once, and the options, resolved once. */
export interface PruneRun {
  /** The model folder (config, tokenizer, files). */
  folder: ModelFolder;
  /** The ONNX file run and pruned. */
  onnxPath: string;
  /** The decoded model and its capture session; absent on the streamed path and when an analysis is reused. */
  opened: OpenedModel | undefined;
  /** Validated options, defaults filled in. */
  options: ResolvedPruneOptions;
  /** The options as given: the plan records which were left to their defaults (`components: null`). */
  given: PruneOptions;
  /** Progress lines. */
  progress: (message: string) => void;
  /** Runs one stage, adding its wall time to the run's timings under `stage`. */
  time: <T>(stage: string, work: () => Promise<T> | T) => Promise<T>;
  /** Wall time per stage, milliseconds. */
  timings: Record<string, number>;
  /** Mean GLU activations over the calibration texts, computed on first use: behaviour selection and mean compensation share them. */
  calibrationMeans: () => Promise<Float32Array[]>;
}

/** What {@link PruneRun.calibrationMeans} computes, once per run. */
export function lazyCalibrationMeans(folder: ModelFolder, onnxPath: string, options: ResolvedPruneOptions): () => Promise<Float32Array[]> {
  let once: Promise<Float32Array[]> | undefined;
  return () => (once ??= calibrationMeans(calibrationInputs(folder, onnxPath, options)));
}

function calibrationInputs(folder: ModelFolder, onnxPath: string, options: ResolvedPruneOptions) {
  return {
    folder,
    onnxPath,
    calibrationTexts: options.calibrationTexts ?? [],
    ...(options.sessionDevice ? { device: options.sessionDevice } : {}),
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
  };
}

/** The plan, and with `behaviour` each measured neuron's effect on side A's log-odds. */
export interface Selected {
  /** The plan to write. */
  plan: PruningPlan;
  /** Measured effects (behaviour selection only). */
  effects: readonly { layer: number; neuron: number; deltaA: number }[];
}

/** The original model's measurement: what `bias-report.before.json` holds and the per-neuron bias. */
export interface Measured {
  /** `bias-report.before.json`. */
  before: BiasReport;
  /** Bias per layer, per neuron. */
  neuronBias: Float32Array[];
  /** One pair's token activations for the PCA chart. */
  tokenActivations: PairTokenActivations | undefined;
}

/** The weights' importance and the model's identity as a plan names it. */
export interface Scored {
  /** Importance per layer, per neuron, and the weights hash. */
  importance: ModelImportance;
  /** The model scored. */
  identity: PlanModelIdentity;
  /** Parameters before pruning. */
  parametersBefore: number;
}

/**
 * Measure: the bias report and per-neuron bias of the original model, on the open session (released afterwards: it
 * holds a copy of every weight), by the streamed path when asked, or taken from a reused {@link ModelAnalysis}.
 */
export async function measure(run: PruneRun, reused: ReusedAnalysis | undefined, modelDir: string): Promise<Measured> {
  if (reused) return { before: reused.before, neuronBias: reused.neuronBias, tokenActivations: reused.tokenActivations };
  const { opened, options, timings } = run;
  try {
    // A plan for other MLP widths is refused before the analysis (the streamed path checks it when the map is read).
    if (options.plan && opened) requirePlanFitsModel(options.plan, opened.capture.map.layers.map((l) => l.intermediateSize), 'given');
    const analysis = await analyzeBias(opened ?? modelDir, options);
    const before = analysis.report;
    if (opened) before.timings = { open: timings['open']!, ...before.timings };
    for (const [stage, ms] of Object.entries(analysis.report.timings)) if (stage !== 'open' || !opened) timings[stage] = ms;
    return { before, neuronBias: analysis.neuronBias.layers, tokenActivations: analysis.tokenActivations };
  } finally {
    await opened?.capture.release();
  }
}

/** Score: importance of every neuron from the weights (one scan, reusing the opened decode), or a reused analysis's. */
export async function score(run: PruneRun, reused: ReusedAnalysis | undefined): Promise<Scored> {
  const { folder, onnxPath, opened, options } = run;
  const [importance, map] = reused
    ? [reused.importance, reused.map]
    : await run.time('importance', async () => {
        const weights = new OnnxWeights(onnxPath, opened?.model);
        try {
          const importance = await modelImportance(weights, weights.map.layers.length, options.importance, {
            ...(options.kernelDevice ? { device: options.kernelDevice } : {}),
            onProgress: run.progress,
          });
          return [importance, weights.map] as const;
        } finally {
          weights.close();
        }
      });
  return {
    importance,
    identity: {
      path: folder.dir,
      weightsFile: relative(folder.dir, onnxPath),
      weightsHash: importance.weightsHash,
      numLayers: map.layers.length,
      hiddenSize: map.layers[0]!.hiddenSize,
      intermediateSizes: map.layers.map((l) => l.intermediateSize),
    },
    parametersBefore: countParameters(folder, opened?.model),
  };
}

/**
 * Select: the neurons with the highest prunability, or by their measured effect on behaviour (`behaviour`), or the
 * given plan (checked against these weights; applied to other weights only with `applyToOtherWeights`, recording its
 * origin).
 * @throws when a given plan was made on other weights or names layers this model lacks.
 */
export async function select(run: PruneRun, measured: Measured, scored: Scored, modelDir: string): Promise<Selected> {
  const { folder, options } = run;
  const { identity, importance } = scored;
  const planOf = (
    layers: readonly (readonly number[])[],
    planOptions: Record<string, unknown>,
    extra: { origin?: PruningPlan['origin']; behaviour?: BehaviourPlanRecord } = {},
  ) =>
    buildPlan({
      model: identity,
      options: planOptions,
      mode: options.mode,
      layers,
      ...extra,
      parametersBefore: scored.parametersBefore,
      // gate row + up row + down column, plus the gate/up biases when the MLP has them.
      parametersPerNeuron: 3 * identity.hiddenSize + (folder.config.raw['mlp_bias'] === true ? 2 : 0),
      tool: '@fairprune/core',
    });
  if (options.plan) {
    const given = validatePlan(options.plan, 'given');
    requirePlanFitsModel(given, identity.intermediateSizes, 'given');
    if (given.model.weightsHash === importance.weightsHash) return { plan: given, effects: [] };
    if (!options.applyToOtherWeights) {
      throw new Error(
        `The plan was made on weights with hash ${given.model.weightsHash.slice(0, 12)}… (${given.model.path}), this model's are ` +
          `${importance.weightsHash.slice(0, 12)}…; pass --plan-mismatch-ok to apply it to these weights anyway`,
      );
    }
    const extra = Object.keys(given.layers).filter((layer) => Number(layer) >= identity.numLayers);
    if (extra.length > 0) throw new Error(`Pruning plan given: layers ${extra.join(', ')} do not exist in ${modelDir} (${identity.numLayers} layers)`);
    run.progress(`applying a plan made on ${given.model.path} (weights ${given.model.weightsHash.slice(0, 12)}…) to these weights`);
    const plan = planOf(identity.intermediateSizes.map((_, layer) => given.layers[String(layer)] ?? []), given.options, {
      origin: given.origin ?? { model: given.model, createdAt: given.createdAt },
    });
    return { plan, effects: [] };
  }
  run.progress('selecting neurons');
  let layers: number[][];
  let behaviour: { record: BehaviourPlanRecord; effects: Selected['effects'] } | undefined;
  if (options.selection) {
    layers = selectNeurons(measured.neuronBias, importance.layers, options.selection).map((s) => s.pruned);
  } else {
    const settings = behaviourSettings(options, identity.intermediateSizes.reduce((n, width) => n + width, 0));
    const chosen = await chooseByBehaviour(
      {
        ...calibrationInputs(folder, run.onnxPath, options),
        pairs: options.pairs,
        calibrationSource: options.calibrationSource ?? 'given texts',
        ...(settings.compensate === 'mean' ? { means: await run.calibrationMeans() } : {}),
      },
      settings,
      run.progress,
    );
    layers = chosen.selection.layers;
    behaviour = { record: chosen.record, effects: chosen.selection.effects };
  }
  const plan = planOf(
    layers,
    {
      pairs: options.pairsSource ?? PRUNE_DEFAULTS.pairsSource,
      ...(options.evalPairsSource !== undefined ? { evalPairs: options.evalPairsSource } : {}),
      estimator: options.estimator,
      aggregation: options.aggregation,
      components: run.given.components ?? null,
      importance: options.importance,
      ...(options.selection ?? { method: options.method }),
      compensate: options.compensate,
      ...(options.calibrationSource !== undefined ? { calibration: options.calibrationSource } : {}),
      mode: options.mode,
      // What the run proceeded past, so the plan says so wherever it travels.
      ...(options.allowMismatch ? { allowMismatch: true, mismatches: measured.before.inputChecks.mismatches } : {}),
      ...(options.allowNonfinite ? { allowNonfinite: true } : {}),
    },
    behaviour ? { behaviour: behaviour.record } : {},
  );
  return { plan, effects: behaviour?.effects ?? [] };
}

/** Write: the pruned model files into `work` (the output's temporary folder), with the mean compensation when asked. */
export async function write(run: PruneRun, work: string, plan: PruningPlan, modelDir: string): Promise<void> {
  const { options } = run;
  const mlpBiases =
    options.compensate === 'mean' ? await run.time('compensate', async () => meanCompensation(run.onnxPath, await run.calibrationMeans(), planLayerMap(plan))) : undefined;
  await run.time('apply', () =>
    writePrunedModel(modelDir, work, {
      ...(mlpBiases ? { mlpBiases } : {}),
      selection: planLayerMap(plan),
      mode: plan.mode,
      ...(options.safetensors !== undefined ? { safetensors: options.safetensors } : {}),
      ...(options.onnxFile !== undefined ? { onnxFiles: [options.onnxFile] } : {}),
      onProgress: run.progress,
    }),
  );
}

/** `neuron-scores.json`: per layer, each neuron's bias, importance, prunability and whether the plan prunes it. */
export function neuronScores(run: PruneRun, measured: Measured, scored: Scored, { plan, effects }: Selected): NeuronScoresFile {
  const { options } = run;
  const selection = options.selection;
  const importance = scored.importance.layers;
  return {
    format: 'fairprune.neuron-scores',
    version: 1,
    estimator: options.estimator,
    aggregation: options.aggregation,
    importance: options.importance,
    method: options.method,
    biasWeight: selection?.biasWeight ?? options.biasWeight ?? PRUNE_DEFAULTS.biasWeight,
    layers: measured.neuronBias.map((bias, layer) => {
      const pruned = new Set(plan.layers[String(layer)] ?? []);
      return {
        layer,
        bias: Array.from(bias),
        importance: Array.from(importance[layer]!),
        prunability: selection
          ? Array.from(prunability(bias, importance[layer]!, selection.method, selection.biasWeight))
          : behaviourPrunability(effects, layer, bias.length),
        pruned: Array.from(bias, (_, i) => pruned.has(i)),
      };
    }),
    ...(measured.tokenActivations ? { tokenActivations: measured.tokenActivations } : {}),
  };
}

/**
 * Verify: the pruned model in `work` measured again (`bias-report.after.json`), naming `outDir`, the folder it will be
 * read from; `plan` says what was pruned (the streamed path measures it on the masked original).
 */
export async function verify(run: PruneRun, work: string, outDir: string, plan: PruningPlan): Promise<BiasReport> {
  run.progress('measuring the pruned model');
  const options = { ...run.given, tokenActivations: false } as const;
  const measured = (
    await run.time('analyzeAfter', async () => {
      // Streamed when the model did not fit the budget: the original's segments, masked as the plan prunes them.
      if (run.options.streamed) {
        const means = run.options.compensate === 'mean' ? { means: await run.calibrationMeans() } : {};
        return measurePrunedStreamed(work, { sourceOnnx: run.onnxPath, selection: planLayerMap(plan), mode: plan.mode, ...means }, options);
      }
      // The pruned folder's tokenizer files are copies of the input's: the tokenizer already loaded serves both.
      const folder = openModelFolder(work, { ...(options.onnxFile !== undefined ? { onnxFile: options.onnxFile } : {}), tokenizer: run.folder.tokenizer });
      const opened = await openForAnalysis(folder, options);
      try {
        return await analyzeBias(opened, options);
      } finally {
        await opened.capture.release();
      }
    })
  ).report;
  return { ...measured, model: { ...measured.model, path: outDir, onnxFile: join(outDir, relative(work, measured.model.onnxFile)) } };
}

/** Minus each neuron's measured effect on L_A (higher = removing it helps side A more); 0 where not measured. */
function behaviourPrunability(effects: Selected['effects'], layer: number, width: number): number[] {
  const out = new Array<number>(width).fill(0);
  for (const e of effects) if (e.layer === layer) out[e.neuron] = -e.deltaA;
  return out;
}
