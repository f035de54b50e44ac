/**
 * The stages of one Fairness Pruning run, in the order {@link runFairnessPruning} calls them:
 * measure → score → select → write → verify. Each reads a {@link PruneRun} (the folder opened once, the options
 * resolved once) and what the stages before it returned.
 */
import { join, relative } from 'node:path';
import { analyzeBias, checkBeforeLoading, openForAnalysis, type BiasReport, type OpenedModel, type PairTokenActivations } from '../bias/analyze.js';
import type { WeightDType } from '../model/dtype.js';
import { openModelFolder, requireOnnxPath, type ModelFolder } from '../model/folder.js';
import type { NeuronSelection } from '../model/neurons.js';
import { measurePrunedStreamed } from '../bias/streamed-measure.js';
import { OnnxWeights } from '../model/weights.js';
import { writePrunedModel } from '../prune/apply.js';
import { modelImportance, type ModelImportance } from '../prune/importance.js';
import type { ModelAnalysis, ReusedAnalysis } from '../prune/model-analysis.js';
import { buildPlan, planSelection, requirePlanFitsModel, validatePlan, type PlanModelIdentity, type PruningPlan } from '../prune/plan.js';
import { countParameters, type NeuronScoresFile, type PruneOptions, type ResolvedPruneOptions } from '../prune/run.js';
import { prunability, selectNeurons } from '../prune/select.js';
import { behaviourSettings, calibrationMeans, chooseByBehaviour, meanCompensation, type BehaviourPlanRecord } from '../prune/behaviour-run.js';
import type { SimulatedPruning } from '../runtime/capture.js';
import { ModelSession } from '../runtime/session.js';
import { PRUNE_DEFAULTS } from './options.js';

/** What every stage of one run reads: the input folder, opened once, and the options, resolved once. */
export interface PruneRun {
  /** The model folder (config, tokenizer, files). */
  folder: ModelFolder;
  /** The ONNX file run and pruned. */
  onnxPath: string;
  /**
   * The decoded model and its capture session (with neuron mask inputs, so verify measures the pruned model on it);
   * absent on the streamed path and when an analysis is reused. The run releases it at its end.
   */
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

/** The selection, its plan, and with `behaviour` each measured neuron's effect on side A's log-odds. */
export interface Selected {
  /** The neurons to prune: what write and verify read. */
  selection: NeuronSelection;
  /** The plan to write (`pruning-plan.json`), the same selection as a file holds it. */
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
 * Measure: the bias report and per-neuron bias of the original model, on the open session (kept open: verify measures
 * the pruned model on it), by the streamed path when asked, or taken from a reused {@link ModelAnalysis}.
 */
export async function measure(run: PruneRun, reused: ReusedAnalysis | undefined, modelDir: string): Promise<Measured> {
  if (reused) return { before: reused.before, neuronBias: reused.neuronBias, tokenActivations: reused.tokenActivations };
  const { opened, options, timings } = run;
  // A plan for other MLP widths is refused before the analysis (the streamed path checks it when the map is read).
  if (options.plan && opened) requirePlanFitsModel(options.plan, opened.capture.map.layers.map((l) => l.intermediateSize), 'given');
  const analysis = await analyzeBias(opened ?? modelDir, options);
  const before = analysis.report;
  if (opened) before.timings = { open: timings['open']!, ...before.timings };
  for (const [stage, ms] of Object.entries(analysis.report.timings)) if (stage !== 'open' || !opened) timings[stage] = ms;
  return { before, neuronBias: analysis.neuronBias.layers, tokenActivations: analysis.tokenActivations };
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
    selection: NeuronSelection,
    planOptions: Record<string, unknown>,
    extra: { origin?: PruningPlan['origin']; behaviour?: BehaviourPlanRecord } = {},
  ) =>
    buildPlan({
      model: identity,
      options: planOptions,
      mode: options.mode,
      selection,
      ...extra,
      parametersBefore: scored.parametersBefore,
      // gate row + up row + down column, plus the gate/up biases when the MLP has them.
      parametersPerNeuron: 3 * identity.hiddenSize + (folder.config.raw['mlp_bias'] === true ? 2 : 0),
      tool: '@fairprune/core',
    });
  if (options.plan) {
    const given = validatePlan(options.plan, 'given');
    requirePlanFitsModel(given, identity.intermediateSizes, 'given');
    const selection = planSelection(given);
    if (given.model.weightsHash === importance.weightsHash) return { selection, plan: given, effects: [] };
    if (!options.applyToOtherWeights) {
      throw new Error(
        `The plan was made on weights with hash ${given.model.weightsHash.slice(0, 12)}… (${given.model.path}), this model's are ` +
          `${importance.weightsHash.slice(0, 12)}…; pass --plan-mismatch-ok to apply it to these weights anyway`,
      );
    }
    const extra = Object.keys(given.layers).filter((layer) => Number(layer) >= identity.numLayers);
    if (extra.length > 0) throw new Error(`Pruning plan given: layers ${extra.join(', ')} do not exist in ${modelDir} (${identity.numLayers} layers)`);
    run.progress(`applying a plan made on ${given.model.path} (weights ${given.model.weightsHash.slice(0, 12)}…) to these weights`);
    const plan = planOf(selection, given.options, { origin: given.origin ?? { model: given.model, createdAt: given.createdAt } });
    return { selection, plan, effects: [] };
  }
  run.progress('selecting neurons');
  let layers: readonly (readonly number[])[];
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
  const selection: NeuronSelection = new Map(layers.flatMap((neurons, layer) => (neurons.length > 0 ? [[layer, neurons] as const] : [])));
  const plan = planOf(
    selection,
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
  return { selection, plan, effects: behaviour?.effects ?? [] };
}

/** Write: the pruned model files into `work` (the output's temporary folder), with the mean compensation when asked. */
export async function write(run: PruneRun, work: string, { selection, plan }: Selected, modelDir: string): Promise<SimulatedPruning> {
  const { options } = run;
  const means = options.compensate === 'mean' ? await run.calibrationMeans() : undefined;
  const mlpBiases = means ? await run.time('compensate', () => meanCompensation(run.onnxPath, means, selection)) : undefined;
  await run.time('apply', () =>
    writePrunedModel(modelDir, work, {
      ...(mlpBiases ? { mlpBiases } : {}),
      selection,
      mode: plan.mode,
      ...(options.safetensors !== undefined ? { safetensors: options.safetensors } : {}),
      ...(options.onnxFile !== undefined ? { onnxFiles: [options.onnxFile] } : {}),
      onProgress: run.progress,
    }),
  );
  // What the written model computes, for verify: the compensation replaces each removed neuron by its mean.
  return { selection, mode: plan.mode, ...(means ? { means } : {}) };
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
 * Verify: the pruned model in `work` measured (`bias-report.after.json`), naming `outDir`, the folder it will be read
 * from. On the whole-model path the run's open session simulates the written pruning (masks, mean replacements,
 * pruned columns dropped) — the report a fresh analysis of the written folder gives, without a second load — and one
 * short forward of the written files checks they compute the same ({@link checkWrittenModel}). The streamed path
 * measures the pruned model on the original's segments, masked the same way, and checks the written layers; a reused analysis has no open session, so the written folder is
 * analysed afresh (one session over it, which also checks the written files).
 */
export async function verify(run: PruneRun, work: string, outDir: string, written: SimulatedPruning): Promise<BiasReport> {
  run.progress('measuring the pruned model');
  const options = { ...run.given, tokenActivations: false } as const;
  // The pruned folder's tokenizer files are copies of the input's: the tokenizer already loaded serves both.
  const folder = () => openModelFolder(work, { ...(options.onnxFile !== undefined ? { onnxFile: options.onnxFile } : {}), tokenizer: run.folder.tokenizer });
  const measured = await run.time('analyzeAfter', async () => {
    // The pruned model goes the way the original went: streamed when it did not fit the budget.
    if (run.options.streamed) return (await measurePrunedStreamed(work, { sourceOnnx: run.onnxPath, ...written }, options)).report;
    if (run.opened) return verifyOnSession(run, run.opened, folder(), written);
    const opened = await openForAnalysis(folder(), options);
    try {
      return (await analyzeBias(opened, options)).report;
    } finally {
      await opened.capture.release();
    }
  });
  return { ...measured, model: { ...measured.model, path: outDir, onnxFile: join(outDir, relative(work, measured.model.onnxFile)) } };
}

/**
 * The masked verify: the written folder's report measured on the run's open session, then the short check of the
 * written files. The session is released before the check opens the written model: two sessions would hold every
 * weight twice.
 */
async function verifyOnSession(run: PruneRun, opened: OpenedModel, folder: ModelFolder, written: SimulatedPruning): Promise<BiasReport> {
  const options = { ...run.given, tokenActivations: false } as const;
  const onnxPath = requireOnnxPath(folder);
  // The written folder's own checks (what a fresh analysis would record), without loading its weights.
  const { validation, inputChecks } = checkBeforeLoading(folder, onnxPath, options);
  const { capture } = opened;
  const prompt = folder.tokenizer.encode(run.options.pairs[0]!.a).slice(0, CHECK_TOKENS);
  capture.simulatePruning(written);
  const report = (await analyzeBias({ folder, onnxPath, model: validation.model, capture, inputChecks }, options)).report;
  const expected = (await capture.forward([prompt])).logits;
  await capture.release();
  await run.time('checkWritten', () => checkWrittenModel(expected, onnxPath, prompt, capture.map.activationDtype, run.options));
  return report;
}

/** Tokens of the written-model check's forward: enough to pass every layer's attention over a few positions, cheap. */
const CHECK_TOKENS = 4;

/**
 * How far the written model's logits may be from the masked session's, relative to the largest logit (at least 1).
 * Both compute the same sums, but the written model's down projection sums fewer columns (remove) and its
 * compensation is a stored bias, so the order of additions differs. fp32 rounds each at ~6e-8: 1e-4 leaves room for
 * many layers of it. fp16 (11-bit mantissa, ~5e-4 per rounding) and bf16 (8-bit, ~4e-3) round every intermediate
 * in their own precision, so the same reordering moves the logits by a few units of that: 1e-2 and 5e-2.
 */
export const WRITTEN_LOGITS_TOLERANCE: Readonly<Record<WeightDType, number>> = { f32: 1e-4, f16: 1e-2, bf16: 5e-2 };

/**
 * The end-to-end check of the written files: opens the written ONNX model, runs one short forward of `prompt`, and
 * compares its logits with `expected` (the masked session's for the same prompt, simulating the same pruning).
 * @throws naming the written file, the largest difference and the tolerance, when they disagree (a wrong write).
 */
export async function checkWrittenModel(
  expected: Float32Array,
  onnxPath: string,
  prompt: readonly number[],
  dtype: WeightDType,
  sessionOptions: Pick<ResolvedPruneOptions, 'sessionDevice' | 'threads' | 'allowNonfinite'>,
): Promise<void> {
  const session = await ModelSession.create(onnxPath, {
    // One forward: opening fast matters more than forward speed.
    prepackWeights: false,
    ...(sessionOptions.sessionDevice ? { device: sessionOptions.sessionDevice } : {}),
    ...(sessionOptions.threads !== undefined ? { threads: sessionOptions.threads } : {}),
    ...(sessionOptions.allowNonfinite ? { allowNonfinite: true } : {}),
  });
  let got: Float32Array;
  try {
    got = (await session.forward([prompt])).logits;
  } finally {
    await session.release();
  }
  if (got.length !== expected.length) throw new Error(`${onnxPath}: the written model gives ${got.length} logits for ${prompt.length} tokens, the pruned model simulated on the open session ${expected.length}`);
  let maxDiff = 0;
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(got[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  const tolerance = WRITTEN_LOGITS_TOLERANCE[dtype] * scale;
  // NaN differences fail too: `!(a <= b)`.
  if (!(maxDiff <= tolerance)) {
    throw new Error(
      `${onnxPath}: the written model's logits differ from the pruned model simulated on the open session by up to ${maxDiff} ` +
        `(tolerance ${tolerance.toExponential(2)} for ${dtype}, over ${prompt.length} tokens): the pruned weights were not written as selected`,
    );
  }
}

/** Minus each neuron's measured effect on L_A (higher = removing it helps side A more); 0 where not measured. */
function behaviourPrunability(effects: Selected['effects'], layer: number, width: number): number[] {
  const out = new Array<number>(width).fill(0);
  for (const e of effects) if (e.layer === layer) out[e.neuron] = -e.deltaA;
  return out;
}
