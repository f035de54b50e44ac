import type { Device } from '@fairprune/native-cuda';
import type { ModelProto } from 'onnx-buf';
import { openModelFolder, requireOnnxPath, type ModelFolder } from '../model/folder.js';
import type { ActivationKey, GraphMap } from '../model/graph-map.js';
import { requireConsistentModel, validateModel, type InputChecks, type ModelValidation } from '../model/validate.js';
import { ActivationCapture, type ActivationCaptureOptions } from '../runtime/capture.js';
import type { SessionDevice } from '../runtime/session.js';
import { measureBehaviour, type BehaviourResult } from './behaviour.js';
import { comparePairs, type ActivationSet } from './compare.js';
import { activationKey, computeBiasMetrics, HOOK_TYPES, type BiasMetrics } from './metrics.js';
import { NeuronBiasAggregator, PAIR_AGGREGATIONS, type NeuronBiasScores, type PairAggregation } from './neuron-scores.js';
import { BIAS_ESTIMATORS, checkPairs, requireUsablePairs, SEED_PAIRS, type BiasEstimator, type CheckedPair, type PromptPair } from './pairs.js';
import { planMeasure } from './measure-path.js';
import { analyzeStreamed } from './streamed-measure.js';
import { invalidOption, PRUNE_DEFAULTS, requireOneOf } from '../pipeline/options.js';

/** Components the metric may be computed over: optiPfair's six hook types, plus the GLU product (down_proj input). */
export const METRIC_COMPONENTS: readonly string[] = [...HOOK_TYPES, 'glu_product'];

/** Options of {@link analyzeBias} (and the analysis part of {@link PruneOptions}). Every field is optional. */
export interface AnalyzeOptions {
  /** ONNX file relative to the model folder (default onnx/model.onnx, else model.onnx, else the only .onnx file). */
  onnxFile?: string;
  /** Pairs the neuron scores (and the main metric) are computed on. Default: the seed pair. */
  pairs?: readonly PromptPair[];
  /** Where the pairs came from (`builtin:seed`, a file), for the report. */
  pairsSource?: string;
  /** Held-out pairs measured separately (metric and behaviour), never used for scores. */
  evalPairs?: readonly PromptPair[];
  /** Where the eval pairs came from, for the report. */
  evalPairsSource?: string;
  /** Per-neuron bias estimator. Default `positionwise`. */
  estimator?: BiasEstimator;
  /** How per-pair neuron bias is combined. Default `mean`. */
  aggregation?: PairAggregation;
  /** Hook types the metric averages over (default the six optiPfair types). */
  components?: readonly string[];
  /** Where the native difference kernels run. */
  kernelDevice?: Device;
  /** Where ORT runs the model. */
  sessionDevice?: SessionDevice;
  /** onnxruntime intra-op threads; default: ORT's choice. */
  threads?: number;
  /** Keep one pair's token activations at one tensor for a PCA chart (default pair 0, mlp_output of the middle layer); false: none. */
  tokenActivations?:
    | {
        /** Index of the pair in `pairs` (a skipped pair yields none). */
        pair: number;
        /** Capture key, e.g. `mlp_output_layer_8`; must be one of the captured components. */
        key?: string;
      }
    | false;
  /** Proceed although config.json, the graph and the safetensors disagree (`--allow-mismatch`); the report records it. */
  allowMismatch?: boolean;
  /** Proceed past NaN/±Inf activations and logits (`--allow-nonfinite`); the report records it. */
  allowNonfinite?: boolean;
  /** One line per step, for a progress display. */
  onProgress?: (message: string) => void;
  /**
   * Measure layer by layer ({@link analyzeStreamed}): one decoder layer's onnxruntime session at a time, for models
   * larger than memory. Same numbers as the whole-model path. Default: chosen by size ({@link planMeasure}).
   */
  streamed?: boolean;
  /**
   * Bytes the measure stage may use: the whole-model path runs when its estimated working set fits, the streamed
   * path when not. Default {@link defaultMemoryBudget} (a fraction of the memory available).
   */
  memoryBudget?: number;
}

/** Measurements of one pair set. */
export interface PairSetMeasurement {
  /** Where the pairs came from (`builtin:seed`, a file path). */
  source: string;
  /** Every pair of the set, with its token counts and whether it was used. */
  pairs: PairReport[];
  /** null when no pair has equal token counts (the metric compares position t with t). */
  metric: BiasMetrics | null;
  /** Behavioural log-odds of the pairs with continuations; empty when none has them. */
  behaviour: BehaviourResult[];
}

/** One pair of a measured set, with the token-count check. */
export interface PairReport {
  /** Prompt a. */
  a: string;
  /** Prompt b. */
  b: string;
  /** The pair's category, if it had one. */
  category?: string;
  /** Tokens of prompt a, BOS included. */
  tokensA: number;
  /** Tokens of prompt b, BOS included. */
  tokensB: number;
  /** Left out of the neuron scores: token counts differ and the estimator compares position t with t. */
  skipped: boolean;
  /** Why the pair was skipped or left out of the metric; null when it was fully used. */
  reason: string | null;
  /** Counted in the bias metric (equal token counts). */
  inMetric: boolean;
  /** Carries negative/positive continuations, so it is in `behaviour`. */
  hasContinuations: boolean;
}

/** `bias-report.json`. `metric.overall.mean_difference` is the article's bias number. */
export interface BiasReport extends PairSetMeasurement {
  /** File format tag. */
  format: 'fairprune.bias-report';
  /** File format version. */
  version: 1;
  /** The model measured. */
  model: {
    /** Absolute path of the model folder. */
    path: string;
    /** Absolute path of the ONNX file run. */
    onnxFile: string;
    /** Decoder layers mapped in the graph. */
    numLayers: number;
    /** MLP width per layer, from the graph. */
    intermediateSizes: number[];
  };
  /** Estimator of the neuron scores. */
  estimator: BiasEstimator;
  /** Aggregation of the neuron scores over pairs. */
  aggregation: PairAggregation;
  /** Hook types the metric averaged over. */
  components: string[];
  /** Out-of-sample measurement on `--eval-pairs`. */
  eval?: PairSetMeasurement;
  /** The input checks the run proceeded past: `--allow-mismatch` with the disagreements found, `--allow-nonfinite`. */
  inputChecks: InputChecks & {
    /** `--allow-nonfinite` was given: NaN/±Inf activations and logits were not refused. */
    allowNonfinite: boolean;
  };
  /** Wall time per stage, milliseconds. */
  timings: Record<string, number>;
}

/** Token-level activations of one pair at one tensor, with token strings, for a PCA chart. */
export interface PairTokenActivations {
  /** Capture key, e.g. `mlp_output_layer_8`. */
  key: string;
  /** Values per token at that tensor. */
  width: number;
  /** Prompt a. */
  a: PromptTokenActivations;
  /** Prompt b. */
  b: PromptTokenActivations;
}

/** One prompt's tokens and their activations at one tensor. */
export interface PromptTokenActivations {
  /** The prompt. */
  text: string;
  /** Each token decoded on its own, BOS included. */
  tokens: string[];
  /** Row-major [tokens, width] values. */
  activations: number[];
}

/** Result of {@link analyzeBias}. */
export interface BiasAnalysis {
  /** The JSON-ready report (`bias-report.json`). */
  report: BiasReport;
  /** Per-layer neuron bias from the non-skipped pairs. */
  neuronBias: NeuronBiasScores;
  /** Present unless `tokenActivations: false` was given or the requested pair was skipped. */
  tokenActivations?: PairTokenActivations;
}

/** Checks options that need no model; throws {@link invalidOption} errors before any file is opened. */
export function validateAnalyzeOptions(options: AnalyzeOptions): void {
  const { estimator, aggregation, components } = analysisSettings(options);
  requireOneOf('estimator', BIAS_ESTIMATORS, estimator);
  requireOneOf('aggregation', PAIR_AGGREGATIONS, aggregation);
  if (options.pairs && options.pairs.length === 0) throw new Error(`No prompt pairs in ${options.pairsSource ?? 'the pair list'}`);
  if (options.evalPairs && options.evalPairs.length === 0) throw new Error(`No prompt pairs in ${options.evalPairsSource ?? 'the eval pair list'}`);
  if (components.length === 0) throw invalidOption('components', 'at least one component', 'an empty list');
  for (const c of components) requireOneOf('components', METRIC_COMPONENTS, c);
  if (options.memoryBudget !== undefined && !(options.memoryBudget > 0)) throw invalidOption('memoryBudget', 'a positive number of bytes', options.memoryBudget);
}

/** The estimator, aggregation and metric components the options ask for, defaults ({@link PRUNE_DEFAULTS}) filled in. */
export function analysisSettings(options: AnalyzeOptions): { estimator: BiasEstimator; aggregation: PairAggregation; components: string[] } {
  return {
    estimator: options.estimator ?? PRUNE_DEFAULTS.estimator,
    aggregation: options.aggregation ?? PRUNE_DEFAULTS.aggregation,
    components: [...(options.components ?? HOOK_TYPES)],
  };
}

/** Analysis options validated once, with every default filled in: what the analysis stages read. */
export type ResolvedAnalyzeOptions = AnalyzeOptions & {
  /** Per-neuron bias estimator. */
  estimator: BiasEstimator;
  /** How per-pair neuron bias is combined. */
  aggregation: PairAggregation;
  /** Hook types the metric averages over. */
  components: string[];
  /** The selection pairs (default the seed pair). */
  pairs: readonly PromptPair[];
};

/**
 * Validates analysis options (estimator, aggregation, pairs, components) and fills in the defaults, once per entry point.
 * @throws {@link invalidOption} errors naming the option.
 */
export function resolveAnalyzeOptions(options: AnalyzeOptions): ResolvedAnalyzeOptions {
  validateAnalyzeOptions(options);
  return { ...options, ...analysisSettings(options), pairs: options.pairs ?? SEED_PAIRS };
}

/** The tensors an analysis captures: the metric components, and what the estimator reads. */
export function captureKeys(options: AnalyzeOptions): ActivationKey[] {
  const { estimator, components } = analysisSettings(options);
  const keys = new Set<string>(components);
  if (estimator === 'glu') keys.add('glu_product');
  else keys.add('gate_proj').add('up_proj');
  return [...keys] as ActivationKey[];
}

/** Everything an analysis of one model needs open: the folder, and a capture session over its ONNX graph. */
export interface OpenedModel {
  /** The model folder (config, tokenizer). */
  folder: ModelFolder;
  /** The ONNX file run. */
  onnxPath: string;
  /** The ONNX model decoded once and checked, unmodified (capture runs on a copy): weight reads and counts reuse it. */
  model: ModelProto;
  /** The session capturing the tensors the analysis needs; release it when done. */
  capture: ActivationCapture;
  /** What the folder's validation found and allowed. */
  inputChecks: InputChecks;
}

/**
 * The checks made before any weight is loaded, for the whole-model and the streamed paths: the pairs' token counts,
 * the folder's validation ({@link validateModel}; disagreements refused unless `allowMismatch`), and no prompt (with
 * its continuations) longer than the model's context.
 */
export function checkBeforeLoading(folder: ModelFolder, onnxPath: string, options: AnalyzeOptions): { validation: ModelValidation; inputChecks: InputChecks } {
  const { estimator } = analysisSettings(options);
  // Token counts need only the tokenizer: refuse unusable pairs before the model is read.
  requireUsablePairs(checkPairs(options.pairs ?? SEED_PAIRS, folder.tokenizer, estimator), options.pairsSource ?? PRUNE_DEFAULTS.pairsSource);
  const validation = validateModel(folder, onnxPath);
  const inputChecks = requireConsistentModel(validation, options.allowMismatch ?? false);
  for (const [pairs, source] of [[options.pairs ?? SEED_PAIRS, options.pairsSource ?? PRUNE_DEFAULTS.pairsSource], [options.evalPairs ?? [], options.evalPairsSource ?? 'eval pairs']] as const) {
    requirePairsFitContext(pairs, folder.tokenizer, validation, source);
  }
  return { validation, inputChecks };
}

/**
 * Opens a model folder for analysis, capturing only the tensors the options need. Before the weights load, the folder
 * is validated ({@link validateModel}; disagreements refused unless `allowMismatch`) and the pairs are checked: token
 * counts, and no prompt (with its continuations) longer than the model's context. With `neuronMasks`, the session
 * can also measure pruned variants of the model ({@link ActivationCapture.simulatePruning}).
 */
export async function openForAnalysis(
  target: string | ModelFolder,
  options: AnalyzeOptions,
  neuronMasks?: ActivationCaptureOptions['neuronMasks'],
): Promise<OpenedModel> {
  const folder = typeof target === 'string' ? openModelFolder(target, options.onnxFile !== undefined ? { onnxFile: options.onnxFile } : {}) : target;
  const onnxPath = requireOnnxPath(folder);
  const { validation, inputChecks } = checkBeforeLoading(folder, onnxPath, options);
  const capture = await ActivationCapture.create(onnxPath, {
    model: validation.model,
    allowNonfinite: options.allowNonfinite ?? false,
    keys: captureKeys(options),
    // A handful of forwards per pair: opening fast matters more than forward speed.
    prepackWeights: false,
    ...(neuronMasks ? { neuronMasks } : {}),
    ...(options.sessionDevice ? { device: options.sessionDevice } : {}),
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
  });
  return { folder, onnxPath, model: validation.model, capture, inputChecks };
}

/**
 * Refuses prompts (and prompt + continuation, for behaviour pairs) longer than the model's context, naming the limit.
 * @throws naming the pair set, the pair index, its token count and where the limit comes from.
 */
function requirePairsFitContext(pairs: readonly PromptPair[], tokenizer: ModelFolder['tokenizer'], validation: ModelValidation, source: string): void {
  const limit = validation.contextLimit;
  if (limit === undefined) return;
  pairs.forEach((pair, index) => {
    for (const side of ['a', 'b'] as const) {
      const longestContinuation = Math.max(0, ...[...(pair.negative ?? []), ...(pair.positive ?? [])].map((c) => tokenizer.encode(c, { addSpecialTokens: false }).length));
      const tokens = tokenizer.encode(pair[side]).length + longestContinuation;
      if (tokens > limit) {
        throw new Error(
          `${source}, pair ${index}: prompt ${side} takes ${tokens} tokens${longestContinuation > 0 ? ' with its longest continuation' : ''}, ` +
            `more than the model's context of ${limit} (${validation.contextLimitSource})`,
        );
      }
    }
  });
}

/**
 * Measures a model's bias on prompt pairs: captures activations of both prompts of each pair, computes the optiPfair
 * metric, per-neuron bias scores and behavioural log-odds. Writes nothing.
 * @param target  Hugging Face-style folder with an ONNX export (opened, measured, released), or a model already
 *   opened with {@link openForAnalysis} (measured on its session, which the caller releases).
 * @throws on invalid options before any file is opened, when every pair would be skipped (before the weights load),
 *   and the errors of {@link openModelFolder} and {@link ActivationCapture.create}.
 */
export async function analyzeBias(target: string | OpenedModel, given: AnalyzeOptions = {}): Promise<BiasAnalysis> {
  const options = resolveAnalyzeOptions(given);
  if (typeof target !== 'string') return analyzeOpenedModel(target, options);
  const modelDir = target;
  if (planMeasure(modelDir, options).path === 'streamed') return analyzeStreamed(modelDir, options);
  const started = performance.now();
  const progress = options.onProgress ?? (() => {});
  progress(`opening ${modelDir}`);
  const opened = await openForAnalysis(modelDir, options);
  const openMs = performance.now() - started;
  try {
    const analysis = await analyzeOpenedModel(opened, options);
    analysis.report.timings = { open: openMs, ...analysis.report.timings };
    return analysis;
  } finally {
    await opened.capture.release();
  }
}

/** Pairs per whole-model forward (both sides in one batch). */
export const PAIRS_PER_BATCH = 8;

/** The analysis proper, on an already opened model. */
async function analyzeOpenedModel(opened: OpenedModel, options: ResolvedAnalyzeOptions): Promise<BiasAnalysis> {
  const { folder, capture } = opened;
  const { estimator, aggregation, components, pairs } = options;
  const progress = options.onProgress ?? (() => {});
  const numLayers = capture.map.layers.length;
  const metricKeys = Array.from({ length: numLayers }, (_, l) => components.map((c) => activationKey(c, l))).flat();
  const source = options.pairsSource ?? (options.pairs ? 'pairs' : 'builtin:seed');
  const checked = checkPairs(pairs, folder.tokenizer, estimator);
  requireUsablePairs(checked, source);
  const evalChecked = options.evalPairs ? checkPairs(options.evalPairs, folder.tokenizer, estimator) : undefined;

  const timings: Record<string, number> = { capture: 0, scores: 0, behaviour: 0 };
  const aggregator = new NeuronBiasAggregator(estimator, aggregation);
  let tokenActivations: PairTokenActivations | undefined;
  const tokenRequest = options.tokenActivations === false ? undefined : (options.tokenActivations ?? { pair: 0 });
  const tokenKey = tokenRequest?.key ?? activationKey('mlp_output', Math.floor(numLayers / 2));

  /** Captures and compares the non-skipped pairs of one set; scores only from the selection set. */
  const measureSet = async (set: CheckedPair[], setSource: string, scoring: boolean): Promise<PairSetMeasurement> => {
    const differences: Record<string, number>[] = [];
    const used = set.map((p, index) => ({ p, index })).filter(({ p }) => !p.skipped);
    for (let start = 0; start < used.length; start += PAIRS_PER_BATCH) {
      const chunk = used.slice(start, start + PAIRS_PER_BATCH);
      progress(`${scoring ? 'scoring' : 'measuring'} ${setSource}: pairs ${start + 1}-${start + chunk.length} of ${used.length}`);
      const t0 = performance.now();
      const ids = chunk.flatMap(({ p }) => [folder.tokenizer.encode(p.a), folder.tokenizer.encode(p.b)]);
      const captured: ActivationSet[] = await capture.captureBatch(ids);
      const t1 = performance.now();
      timings['capture']! += t1 - t0;
      const compared = await comparePairs(
        chunk.map(({ p }, k) => ({ a: captured[2 * k]!, b: captured[2 * k + 1]!, metricKeys: p.inMetric ? metricKeys : [] })),
        { numLayers, estimator, ...(options.kernelDevice ? { device: options.kernelDevice } : {}) },
        // Held-out pairs only feed the metric: no neuron vectors needed.
        scoring ? aggregator : undefined,
      );
      chunk.forEach(({ p, index }, k) => {
        if (compared[k] && p.inMetric) differences.push(compared[k]);
        if (scoring && tokenRequest && index === tokenRequest.pair && !tokenActivations) {
          tokenActivations = tokenActivationsOf(p, ids[2 * k]!, ids[2 * k + 1]!, captured[2 * k]!, captured[2 * k + 1]!, tokenKey, folder);
        }
      });
      timings['scores']! += performance.now() - t1;
    }
    const t2 = performance.now();
    const withContinuations = set.filter((p) => p.negative && p.positive);
    if (withContinuations.length > 0) progress(`behaviour: ${withContinuations.length} pairs of ${setSource}`);
    // The capture's forward: a simulated pruning's masks apply to the behaviour as well.
    const behaviour = await measureBehaviour(capture, folder.tokenizer, withContinuations);
    timings['behaviour']! += performance.now() - t2;
    return pairSetMeasurement(set, setSource, differences, behaviour);
  };

  const main = await measureSet(checked, source, true);
  const evalMeasurement = evalChecked ? await measureSet(evalChecked, options.evalPairsSource ?? 'eval pairs', false) : undefined;
  const report = biasReport(opened, { layers: capture.widths.map((intermediateSize) => ({ intermediateSize })) }, options, main, evalMeasurement, timings);
  return { report, neuronBias: aggregator.result(), ...(tokenActivations ? { tokenActivations } : {}) };
}

/** One pair set's measurement: every pair with its token-count check, the metric over the pairs' differences, the behaviour. */
export function pairSetMeasurement(
  set: readonly CheckedPair[],
  source: string,
  differences: readonly Record<string, number>[],
  behaviour: BehaviourResult[],
): PairSetMeasurement {
  return {
    source,
    pairs: set.map((p) => ({
      a: p.a,
      b: p.b,
      ...(p.category !== undefined ? { category: p.category } : {}),
      tokensA: p.tokensA,
      tokensB: p.tokensB,
      skipped: p.skipped,
      reason: p.reason,
      inMetric: p.inMetric,
      hasContinuations: Boolean(p.negative && p.positive),
    })),
    metric: differences.length > 0 ? computeBiasMetrics(differences) : null,
    behaviour,
  };
}

/** `bias-report.json` of a model's measured pair sets. */
export function biasReport(
  model: Pick<OpenedModel, 'folder' | 'onnxPath' | 'inputChecks'>,
  map: { readonly layers: readonly { readonly intermediateSize: number }[] },
  options: AnalyzeOptions,
  main: PairSetMeasurement,
  evalMeasurement: PairSetMeasurement | undefined,
  timings: Record<string, number>,
): BiasReport {
  return {
    format: 'fairprune.bias-report',
    version: 1,
    model: {
      path: model.folder.dir,
      onnxFile: model.onnxPath,
      numLayers: map.layers.length,
      intermediateSizes: map.layers.map((l) => l.intermediateSize),
    },
    inputChecks: { ...model.inputChecks, allowNonfinite: options.allowNonfinite ?? false },
    ...analysisSettings(options),
    ...main,
    ...(evalMeasurement ? { eval: evalMeasurement } : {}),
    timings,
  };
}

/** One pair's token activations at `key`, with each token decoded, for the PCA chart. */
export function tokenActivationsOf(
  pair: CheckedPair,
  idsA: number[],
  idsB: number[],
  a: ActivationSet,
  b: ActivationSet,
  key: string,
  folder: ModelFolder,
): PairTokenActivations {
  const tensorA = a.get(key);
  const tensorB = b.get(key);
  if (!tensorA || !tensorB) throw new Error(`Token activations: ${key} was not captured (captured: ${[...a.keys()].join(', ')})`);
  const tokens = (ids: number[]) => ids.map((id) => folder.tokenizer.decode([id]));
  return {
    key,
    width: tensorA.shape.at(-1)!,
    a: { text: pair.a, tokens: tokens(idsA), activations: Array.from(tensorA.data) },
    b: { text: pair.b, tokens: tokens(idsB), activations: Array.from(tensorB.data) },
  };
}
