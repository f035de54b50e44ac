import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  analysisSettingsOf,
  modelImportance,
  openModelFolder,
  OnnxWeights,
  readOnnxModel,
  requireOnnxPath,
  tensorByteLength,
  tensorDtype,
  resolveModelSource,
  type ImportanceMethod,
  type ModelAnalysis,
} from '@fairprune/core';
import { readJob, type BatchConfig, type BatchJob, type JobEval, type JobModel } from './job.js';

/** A model of the plan: where it lies and the hash of its weights (what its analyses are addressed by). */
export interface PlannedModel extends JobModel {
  /** The local folder (a hub id resolved in the Hugging Face cache). */
  dir: string;
  /** {@link ModelAnalysis}'s `model.weightsHash`: sha256 over the gate/up weights' scan statistics. */
  weightsHash: string;
  /** Memory a task on it needs (the job's `memoryGiB`, else {@link estimateTaskMemory}), bytes. */
  memoryBytes: number;
}

/** One shared analysis: a model measured with one set of analysis settings, every importance method its runs use, and the base model's eval. */
export interface AnalysisTask {
  /** Content address: sha256 of the weights hash, the folder, the ONNX file, the settings, the methods and the eval settings (16 hex digits). */
  id: string;
  /** {@link PlannedModel.name}. */
  model: string;
  /** The analysis settings. */
  settings: ModelAnalysis['analyzeOptions'];
  /** Importance methods scanned. */
  importance: ImportanceMethod[];
  /** Output folder, relative to the batch folder. */
  output: string;
}

/** One configuration on one model: select → write → measure → eval, from its analysis. */
export interface RunTask {
  /** `<model>/<configuration id>`; also its output folder under `runs/`. */
  id: string;
  /** {@link PlannedModel.name}. */
  model: string;
  /** The configuration's options. */
  config: BatchConfig;
  /** {@link AnalysisTask.id} it reuses. */
  analysis: string;
  /** Output folder, relative to the batch folder. */
  output: string;
}

/** The expanded sweep: what {@link runBatch} runs and `fairprune batch plan` prints. */
export interface BatchPlan {
  /** File format tag. */
  format: 'fairprune.batch-plan';
  /** File format version. */
  version: 1;
  /** The job file, when read from one. */
  jobFile?: string;
  /** The models. */
  models: PlannedModel[];
  /** One per model and analysis settings. */
  analyses: AnalysisTask[];
  /** One per model and configuration. */
  runs: RunTask[];
  /** Evaluation of every model, if any. */
  eval?: JobEval;
  /** Failed tasks are retried this many times. */
  retries: number;
  /** Delay before the first retry; doubles with each failure. */
  retryDelayMs: number;
  /** A claim held from another host whose worker has not sent a heartbeat for this long is taken over. */
  claimTimeoutMs: number;
}

/** Options of {@link planBatch}. */
export interface PlanBatchOptions {
  /** Never download a hub model. */
  offline?: boolean;
  /** One line per step. */
  onProgress?: (message: string) => void;
}

/** JSON with sorted keys, so equal values hash equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

const shortHash = (value: unknown, length = 16) => createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, length);

/** The analysis settings a configuration asks for (defaults filled in, as `fairprune prune` records them). */
export function configAnalysisSettings(config: BatchConfig): ModelAnalysis['analyzeOptions'] {
  return analysisSettingsOf({
    pairsSource: config.pairs ?? 'builtin:seed',
    ...(config.evalPairs !== undefined ? { evalPairsSource: config.evalPairs } : {}),
    ...(config.estimator !== undefined ? { estimator: config.estimator } : {}),
    ...(config.aggregation !== undefined ? { aggregation: config.aggregation } : {}),
    ...(config.components !== undefined ? { components: config.components } : {}),
  });
}

/** A readable, unique folder name for a configuration: its selection options, then a hash of all of them. */
export function configId(config: BatchConfig): string {
  const shown = Object.entries(config)
    .filter(([key]) => key !== 'pairs' && key !== 'evalPairs')
    .map(([key, value]) => `${key}-${Array.isArray(value) ? value.join('.') : typeof value === 'object' ? shortHash(value, 6) : String(value)}`)
    .join('_')
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .slice(0, 80);
  return `${shown === '' ? 'defaults' : shown}-${shortHash(config, 8)}`;
}

/**
 * Memory a task on a model needs, from its weight bytes: the onnxruntime session holds the weights once and may add
 * converted copies (fp16 graphs on the CPU get fp32 ones), so twice the weights, plus 256 MiB for node and
 * onnxruntime. An estimate: a job file's `memoryGiB` replaces it.
 */
export function estimateTaskMemory(weightBytes: number): number {
  return 2 * weightBytes + 256 * 2 ** 20;
}

/** The weights hash of a model folder's ONNX graph (one scan of its gate/up weights, no session) and its weight bytes. */
export async function modelWeightsHash(dir: string, onnxFile?: string): Promise<{ weightsHash: string; weightBytes: number }> {
  const folder = openModelFolder(dir, onnxFile === undefined ? {} : { onnxFile });
  const onnxPath = requireOnnxPath(folder);
  const weights = new OnnxWeights(onnxPath);
  try {
    const weightBytes = (readOnnxModel(onnxPath).graph?.initializer ?? []).reduce((sum, tensor) => sum + (tensorDtype(tensor) ? tensorByteLength(tensor) : 0), 0);
    return { weightsHash: (await modelImportance(weights, weights.map.layers.length, 'maw')).weightsHash, weightBytes };
  } finally {
    weights.close();
  }
}

/**
 * Expands a job into tasks: per model, one analysis per distinct analysis settings (addressed by the model's weights
 * hash, folder and settings, so the same model under two names or in two jobs shares it), and one run per configuration.
 * Reads each model's weights once for its hash; runs nothing else.
 */
export async function planBatch(job: BatchJob | string, options: PlanBatchOptions = {}): Promise<BatchPlan> {
  const spec = typeof job === 'string' ? readJob(job) : job;
  const progress = options.onProgress ?? (() => {});
  const models: PlannedModel[] = [];
  for (const model of spec.models) {
    const dir = model.hub
      ? await resolveModelSource(model.source, { ...(options.offline ? { offline: true } : {}), ...(model.onnxFile ? { onnxFile: model.onnxFile } : {}), onProgress: progress })
      : model.source;
    progress(`hashing the weights of ${model.name}`);
    const { weightsHash, weightBytes } = await modelWeightsHash(dir, model.onnxFile);
    models.push({ ...model, dir, weightsHash, memoryBytes: model.memoryGiB !== undefined ? model.memoryGiB * 2 ** 30 : estimateTaskMemory(weightBytes) });
  }
  const analyses = new Map<string, AnalysisTask>();
  const runs: RunTask[] = [];
  for (const model of models) {
    const bySettings = new Map<string, { settings: ModelAnalysis['analyzeOptions']; importance: Set<ImportanceMethod>; configs: BatchConfig[] }>();
    for (const config of spec.configurations) {
      const settings = configAnalysisSettings(config);
      const key = canonicalJson(settings);
      const group = bySettings.get(key) ?? { settings, importance: new Set(), configs: [] };
      group.importance.add(config.importance ?? 'maw');
      group.configs.push(config);
      bySettings.set(key, group);
    }
    for (const { settings, importance, configs } of bySettings.values()) {
      const methods = [...importance].sort();
      // The folder is part of the address: the analysis's reports name it, as a separate run's would.
      const id = shortHash({ weightsHash: model.weightsHash, dir: model.dir, onnxFile: model.onnxFile ?? null, settings, importance: methods, eval: spec.eval ?? null });
      analyses.set(id, { id, model: model.name, settings, importance: methods, output: join('analysis', id) });
      for (const config of configs) {
        const runId = `${model.name}/${configId(config)}`;
        if (runs.some((r) => r.id === runId)) continue;
        runs.push({ id: runId, model: model.name, config, analysis: id, output: join('runs', runId) });
      }
    }
  }
  return {
    format: 'fairprune.batch-plan',
    version: 1,
    ...(spec.file !== undefined ? { jobFile: spec.file } : {}),
    models,
    analyses: [...analyses.values()],
    runs,
    ...(spec.eval ? { eval: spec.eval } : {}),
    retries: spec.retries,
    retryDelayMs: spec.retryDelayMs,
    claimTimeoutMs: spec.claimTimeoutMs,
  };
}
