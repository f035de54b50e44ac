import { relative } from 'node:path';
import type { Device } from '@fairprune/native-cuda';
import { analysisSettings, analyzeBias, type AnalyzeOptions, type BiasReport, type PairTokenActivations } from '../bias/analyze.js';
import type { BiasEstimator } from '../bias/pairs.js';
import type { PairAggregation } from '../bias/neuron-scores.js';
import { openModelFolder, requireOnnxPath } from '../model/folder.js';
import { OnnxWeights } from '../model/weights.js';
import { IMPORTANCE_METHODS, scanModelImportance, type ImportanceMethod, type ModelWeightScan } from './importance.js';
import type { PlanModelIdentity } from './plan.js';
import { PRUNE_DEFAULTS, requireOneOf } from '../pipeline/options.js';
import { countParameters } from './run.js';

/**
 * One model's measurement and weight scores, computed once and reused by any number of pruning configurations
 * (`PruneOptions.analysis`). JSON-serialisable: a batch stores it as a content-addressed artifact.
 */
export interface ModelAnalysis {
  /** File format tag. */
  format: 'fairprune.model-analysis';
  /** File format version. */
  version: 1;
  /** The model analysed, as a plan names it. */
  model: PlanModelIdentity;
  /** Parameters of the model folder before pruning. */
  parametersBefore: number;
  /** The analysis settings it was measured with (a configuration must use the same ones to reuse it). */
  analyzeOptions: {
    /** Source of the selection pairs (`builtin:seed`, a file). */
    pairs: string;
    /** Source of the held-out pairs, when measured. */
    evalPairs?: string;
    /** Per-neuron bias estimator. */
    estimator: BiasEstimator;
    /** Aggregation of neuron bias over pairs. */
    aggregation: PairAggregation;
    /** Metric components, null for the default six. */
    components: string[] | null;
  };
  /** What `bias-report.before.json` holds. */
  before: BiasReport;
  /** Bias per layer, per neuron. */
  neuronBias: number[][];
  /** Importance per method, per layer, per neuron. */
  importance: Partial<Record<ImportanceMethod, number[][]>>;
  /** One pair's token activations for the PCA chart, unless turned off. */
  tokenActivations?: PairTokenActivations;
}

/** The analysis settings of prune/analyze options, as {@link ModelAnalysis.analyzeOptions} records them. */
export function analysisSettingsOf(options: AnalyzeOptions): ModelAnalysis['analyzeOptions'] {
  const { estimator, aggregation } = analysisSettings(options);
  return {
    pairs: options.pairsSource ?? PRUNE_DEFAULTS.pairsSource,
    ...(options.evalPairsSource !== undefined ? { evalPairs: options.evalPairsSource } : {}),
    estimator,
    aggregation,
    components: options.components ? [...options.components] : null,
  };
}

/**
 * Measures the model (bias report, neuron bias) and scans its weights for every importance method given.
 * @throws on an unknown importance method, and the errors of {@link analyzeBias}.
 */
export async function analyzeModel(modelDir: string, options: AnalyzeOptions & { importance: readonly ImportanceMethod[] }): Promise<ModelAnalysis> {
  for (const method of options.importance) {
    requireOneOf('importance', IMPORTANCE_METHODS, method);
  }
  const folder = openModelFolder(modelDir, options.onnxFile === undefined ? {} : { onnxFile: options.onnxFile });
  const onnxPath = requireOnnxPath(folder);
  const analysis = await analyzeBias(modelDir, options);
  const weights = new OnnxWeights(onnxPath);
  let scan: ModelWeightScan;
  try {
    scan = await scanModelImportance(weights, weights.map.layers.length, [...new Set(options.importance)], {
      ...(options.kernelDevice ? { device: options.kernelDevice } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
  } finally {
    weights.close();
  }
  const layers = weights.map.layers;
  return {
    format: 'fairprune.model-analysis',
    version: 1,
    model: {
      path: folder.dir,
      weightsFile: relative(folder.dir, onnxPath),
      weightsHash: scan.weightsHash,
      numLayers: layers.length,
      hiddenSize: layers[0]!.hiddenSize,
      intermediateSizes: layers.map((l) => l.intermediateSize),
    },
    parametersBefore: countParameters(folder),
    analyzeOptions: analysisSettingsOf(options),
    before: analysis.report,
    neuronBias: analysis.neuronBias.layers.map((layer) => Array.from(layer)),
    importance: Object.fromEntries([...scan.importance].map(([method, layers]) => [method, layers.map((layer) => Array.from(layer))])),
    ...(analysis.tokenActivations ? { tokenActivations: analysis.tokenActivations } : {}),
  };
}

/** What a reused {@link ModelAnalysis} gives a run in place of measuring and scanning. */
export type ReusedAnalysis = Awaited<ReturnType<typeof reuseAnalysis>>;

/**
 * Checks that `analysis` was made on these weights (its hash against one scan of this model's gate/up weights, which
 * costs a read of them but no forward) with the run's analysis settings and holds its importance method, and returns
 * what the run would otherwise measure and scan.
 * @throws naming the field that differs and both values.
 */
export async function reuseAnalysis(
  analysis: ModelAnalysis,
  folder: { dir: string },
  onnxPath: string,
  options: AnalyzeOptions & { importance?: ImportanceMethod; kernelDevice?: Device },
) {
  const method = options.importance ?? PRUNE_DEFAULTS.importance;
  const expected = { path: folder.dir, weightsFile: relative(folder.dir, onnxPath), ...analysisSettingsOf(options) };
  const given = { path: analysis.model.path, weightsFile: analysis.model.weightsFile, ...analysis.analyzeOptions };
  for (const key of Object.keys({ ...expected, ...given }) as (keyof typeof expected)[]) {
    if (JSON.stringify(expected[key]) !== JSON.stringify(given[key])) {
      throw new Error(`The model analysis given was made with ${key} ${JSON.stringify(given[key])}, this run has ${JSON.stringify(expected[key])}; analyse again with the run's settings`);
    }
  }
  const scores = analysis.importance[method];
  if (!scores) throw new Error(`The model analysis given has no "${method}" importance (it has ${Object.keys(analysis.importance).join(', ') || 'none'})`);
  const weights = new OnnxWeights(onnxPath);
  let weightsHash: string;
  try {
    ({ weightsHash } = await scanModelImportance(weights, weights.map.layers.length, [], options.kernelDevice ? { device: options.kernelDevice } : {}));
  } finally {
    weights.close();
  }
  if (weightsHash !== analysis.model.weightsHash) {
    throw new Error(
      `The model analysis given was made on weights with hash ${analysis.model.weightsHash.slice(0, 12)}…, ${onnxPath} has ` +
        `${weightsHash.slice(0, 12)}… (the weights changed since); analyse again`,
    );
  }
  return {
    before: analysis.before,
    neuronBias: analysis.neuronBias.map((layer) => Float32Array.from(layer)),
    tokenActivations: analysis.tokenActivations,
    importance: { method, layers: scores.map((layer) => Float32Array.from(layer)), weightsHash },
    map: { layers: analysis.model.intermediateSizes.map((intermediateSize) => ({ intermediateSize, hiddenSize: analysis.model.hiddenSize })) },
  };
}
