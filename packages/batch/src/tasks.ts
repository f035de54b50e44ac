import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  analyzeModel,
  jsonText,
  loadPairSets,
  readJsonFile,
  runFairnessPruning,
  writeOutput,
  type BiasReport,
  type ModelAnalysis,
  type PruneOptions,
  type PruningPlan,
} from '@fairprune/core';
import { evaluate, type TaskName } from '@fairprune/eval';
import type { BatchConfig, JobEval } from './job.js';
import type { AnalysisTask, BatchPlan, PlannedModel, RunTask } from './plan.js';

/** Files inside a batch folder. */
export const BATCH_FILES = {
  /** The expanded plan the workers run. */
  plan: 'batch.json',
  /** Inside an analysis folder: the {@link ModelAnalysis}. */
  analysis: 'analysis.json',
  /** Inside an analysis folder: the base model's evaluation. */
  baseEval: 'eval.json',
  /** Inside a run folder: the outcome; its presence means the run is done. */
  result: 'result.json',
  /** Inside a run folder: the pruned model (a `fairprune prune` output). */
  model: 'model',
  /** One row per configuration. */
  summaryJson: 'summary.json',
  /** The same rows as CSV. */
  summaryCsv: 'summary.csv',
  /** The sweep page. */
  index: 'index.html',
} as const;

/** Where a worker runs its tasks. */
export interface WorkerPlacement {
  /** `cpu` or `cuda:N` (the process sees only that GPU, as device 0). */
  device: string;
  /** onnxruntime intra-op threads. */
  threads?: number;
  /** One line per step. */
  onProgress?: (message: string) => void;
}

/** One task's metrics of one eval task: what lm-eval reports. */
export interface EvalMetrics {
  /** Accuracy. */
  acc: number;
  /** Its standard error. */
  acc_stderr: number | 'N/A';
  /** Perplexity (LAMBADA). */
  perplexity?: number;
  /** Its standard error. */
  perplexity_stderr?: number | 'N/A';
  /** Documents evaluated. */
  documents: number;
}

/** What `result.json` of a run holds. */
export interface RunResult {
  /** File format tag. */
  format: 'fairprune.batch-run';
  /** File format version. */
  version: 1;
  /** {@link RunTask.id}. */
  task: string;
  /** The model's name. */
  model: string;
  /** The configuration. */
  config: BatchConfig;
  /** The plan applied (also in `model/pruning-plan.json`). */
  plan: PruningPlan;
  /** Bias of the original model. */
  before: BiasReport;
  /** Bias of the pruned model. */
  after: BiasReport;
  /** Base model's evaluation (from the analysis). */
  evalBefore?: Partial<Record<TaskName, EvalMetrics>>;
  /** Pruned model's evaluation. */
  evalAfter?: Partial<Record<TaskName, EvalMetrics>>;
  /** Wall time per stage, milliseconds (prune stages, then `eval`, and `total`). */
  timings: Record<string, number>;
  /** Where it ran. */
  device: string;
  /** ISO time it finished. */
  finished: string;
}

const sessionDevice = (device: string) => (device.startsWith('cuda') ? ('cuda' as const) : ('cpu' as const));
const kernelDevice = (device: string) => (device.startsWith('cuda') ? ('auto' as const) : ('cpu' as const));

/** Analysis options of a task's settings: pair files read, devices set. */
async function analyzeOptionsOf(settings: ModelAnalysis['analyzeOptions'], model: PlannedModel, placement: WorkerPlacement) {
  return {
    ...(await loadPairSets(settings.pairs, settings.evalPairs)),
    estimator: settings.estimator,
    aggregation: settings.aggregation,
    ...(settings.components ? { components: settings.components } : {}),
    ...(model.onnxFile !== undefined ? { onnxFile: model.onnxFile } : {}),
    sessionDevice: sessionDevice(placement.device),
    kernelDevice: kernelDevice(placement.device),
    ...(placement.threads !== undefined ? { threads: placement.threads } : {}),
    ...(placement.onProgress ? { onProgress: placement.onProgress } : {}),
  };
}

/** Evaluates one model folder on every task of the job (lm-eval protocol). */
async function evaluateModel(dir: string, job: JobEval, model: PlannedModel, placement: WorkerPlacement): Promise<Partial<Record<TaskName, EvalMetrics>>> {
  const results: Partial<Record<TaskName, EvalMetrics>> = {};
  for (const task of job.tasks) {
    const spec = job.data[task] ?? 'hub';
    const result = await evaluate({
      model: dir,
      task,
      data: spec === 'hub' ? { hub: true } : { file: spec },
      ...(job.limit !== undefined ? { limit: job.limit } : {}),
      ...(job.bos !== undefined ? { bos: job.bos } : {}),
      ...(job.batchSize !== undefined ? { batchSize: job.batchSize } : {}),
      ...(job.bootstrapIters !== undefined ? { bootstrapIters: job.bootstrapIters } : {}),
      ...(model.onnxFile !== undefined ? { onnxFile: model.onnxFile } : {}),
      device: sessionDevice(placement.device),
      ...(placement.threads !== undefined ? { threads: placement.threads } : {}),
    });
    const { alias: _alias, ...metrics } = result.results[task]!;
    results[task] = { ...metrics, documents: result['n-samples'][task]!.effective };
  }
  return results;
}

const modelOf = (plan: BatchPlan, name: string): PlannedModel => {
  const model = plan.models.find((m) => m.name === name);
  if (!model) throw new Error(`The batch plan names model "${name}" but has no such model`);
  return model;
};

/** Called by a task under its claim: when claimed, and when it failed (before the claim is released). */
export interface TaskHooks {
  /** The task's lock is held. */
  onClaimed?: () => void;
  /** The task failed; awaited before its lock is released, so a failure is recorded before anyone retries. */
  onFailed?: (error: unknown) => Promise<void>;
}

/** Runs `work` as a claimed task: hooks called, a failure reported before it propagates. */
async function claimed<T>(hooks: TaskHooks, work: () => Promise<T>): Promise<T> {
  hooks.onClaimed?.();
  try {
    return await work();
  } catch (error) {
    await hooks.onFailed?.(error);
    throw error;
  }
}

/**
 * Runs one analysis task into `dir/<task.output>` on the output protocol: the folder appears complete
 * (`analysis.json`, `eval.json`) or not at all.
 * @throws {@link OutputError} when another live process holds the task, and the analysis's errors.
 */
export async function runAnalysisTask(plan: BatchPlan, task: AnalysisTask, dir: string, placement: WorkerPlacement, hooks: TaskHooks = {}): Promise<void> {
  const model = modelOf(plan, task.model);
  await writeOutput(join(dir, task.output), { kind: 'dir', command: 'batch analysis' }, (work) => claimed(hooks, async () => {
    const analysis = await analyzeModel(model.dir, { ...(await analyzeOptionsOf(task.settings, model, placement)), importance: task.importance });
    if (analysis.model.weightsHash !== model.weightsHash) {
      throw new Error(`${model.dir}: the weights changed since the batch was planned (hash ${analysis.model.weightsHash.slice(0, 12)}…, planned ${model.weightsHash.slice(0, 12)}…); plan again`);
    }
    writeFileSync(join(work, BATCH_FILES.analysis), jsonText(analysis));
    if (plan.eval) writeFileSync(join(work, BATCH_FILES.baseEval), jsonText(await evaluateModel(model.dir, plan.eval, model, placement)));
  }));
}

/** The prune options of a configuration (without pairs, devices and output). */
function pruneOptionsOf(config: BatchConfig): Partial<PruneOptions> {
  const { pairs: _pairs, evalPairs: _evalPairs, estimator: _e, aggregation: _a, components: _c, layerFractions, ...rest } = config;
  return {
    ...(rest as Partial<PruneOptions>),
    ...(layerFractions ? { layerFractions: Object.fromEntries(Object.entries(layerFractions).map(([layer, f]) => [Number(layer), f])) } : {}),
  };
}

/**
 * Runs one configuration from its model's analysis: select → write `model/` → measure → eval, then `result.json`, whose
 * lock is the task's claim for the whole run and whose presence marks it done.
 * @throws {@link OutputError} when another live process holds the task; the prune and eval errors.
 */
export async function runConfigurationTask(plan: BatchPlan, task: RunTask, dir: string, placement: WorkerPlacement, hooks: TaskHooks = {}): Promise<RunResult> {
  const model = modelOf(plan, task.model);
  const analysisTask = plan.analyses.find((a) => a.id === task.analysis);
  if (!analysisTask) throw new Error(`The batch plan's run ${task.id} names analysis ${task.analysis}, which it does not have`);
  const started = performance.now();
  return writeOutput(join(dir, task.output, BATCH_FILES.result), { kind: 'file', command: 'batch run' }, (temp) => claimed(hooks, async () => {
    const analysisDir = join(dir, analysisTask.output);
    const analysis = readJsonFile(join(analysisDir, BATCH_FILES.analysis)) as ModelAnalysis;
    const evalBefore = plan.eval ? (readJsonFile(join(analysisDir, BATCH_FILES.baseEval)) as RunResult['evalBefore']) : undefined;
    const pruned = await runFairnessPruning(model.dir, {
      ...(await analyzeOptionsOf(analysisTask.settings, model, placement)),
      ...pruneOptionsOf(task.config),
      analysis,
      outDir: join(dir, task.output, BATCH_FILES.model),
      // Under the task's claim, a model folder already there is a killed attempt's.
      force: true,
    });
    const evalStart = performance.now();
    const evalAfter = plan.eval ? await evaluateModel(pruned.outDir, plan.eval, model, placement) : undefined;
    const result: RunResult = {
      format: 'fairprune.batch-run',
      version: 1,
      task: task.id,
      model: task.model,
      config: task.config,
      plan: pruned.plan,
      before: pruned.before,
      after: pruned.after!,
      ...(evalBefore ? { evalBefore } : {}),
      ...(evalAfter ? { evalAfter } : {}),
      timings: { ...pruned.timings, ...(evalAfter ? { eval: performance.now() - evalStart } : {}), total: performance.now() - started },
      device: placement.device,
      finished: new Date().toISOString(),
    };
    writeFileSync(temp, jsonText(result), { flag: 'wx' });
    return result;
  }));
}
