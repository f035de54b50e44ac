import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { BIAS_ESTIMATORS, IMPORTANCE_METHODS, METRIC_COMPONENTS, PAIR_AGGREGATIONS, PRUNE_MODES, SCORE_METHODS } from '@fairprune/core';
import { taskNames, type TaskName } from '@fairprune/eval';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';

/** A job file that cannot be used: names the file, the line and the field. */
export class JobFileError extends Error {
  /** Always `'JobFileError'`. */
  override name = 'JobFileError';
}

const fraction = z.number().gt(0).lt(1);
const layerList = z.array(z.number().int().min(0));
/** Every prune option a configuration may set, with the type of one value (a grid gives a list of them). */
const CONFIG_FIELDS = {
  fraction,
  importance: z.enum(IMPORTANCE_METHODS as [string, ...string[]]),
  method: z.enum(SCORE_METHODS as [string, ...string[]]),
  biasWeight: z.number().min(0).max(1),
  layers: layerList,
  layerFractions: z.record(z.string().regex(/^\d+$/, 'a layer index'), fraction),
  globalTopK: z.number().int().min(1),
  divisor: z.number().int().min(1),
  mode: z.enum(PRUNE_MODES as [string, ...string[]]),
  safetensors: z.boolean(),
  pairs: z.string().min(1),
  evalPairs: z.string().min(1),
  estimator: z.enum(BIAS_ESTIMATORS as [string, ...string[]]),
  aggregation: z.enum(PAIR_AGGREGATIONS as [string, ...string[]]),
  components: z.array(z.enum(METRIC_COMPONENTS as [string, ...string[]])).min(1),
} as const;
type ConfigField = keyof typeof CONFIG_FIELDS;
/** Fields whose one value is itself a list: in a grid, a list of lists. */
const LIST_VALUED: readonly ConfigField[] = ['layers', 'components'];

/** One pruning configuration: prune options by their camelCase names (the `fairprune prune` flags). */
export type BatchConfig = Partial<{
  fraction: number;
  importance: (typeof IMPORTANCE_METHODS)[number];
  method: (typeof SCORE_METHODS)[number];
  biasWeight: number;
  layers: number[];
  layerFractions: Record<string, number>;
  globalTopK: number;
  divisor: number;
  mode: (typeof PRUNE_MODES)[number];
  safetensors: boolean;
  pairs: string;
  evalPairs: string;
  estimator: (typeof BIAS_ESTIMATORS)[number];
  aggregation: (typeof PAIR_AGGREGATIONS)[number];
  components: string[];
}>;

const configSchema = z.strictObject(CONFIG_FIELDS).partial();
const gridSchema = z.strictObject(
  Object.fromEntries(
    // A list of values, or one value (for list-valued fields a list of lists, or one list).
    Object.entries(CONFIG_FIELDS).map(([key, value]) => [key, z.union([z.array(value).min(1), value])]),
  ) as { [K in ConfigField]: z.ZodUnion<[z.ZodArray<(typeof CONFIG_FIELDS)[K]>, (typeof CONFIG_FIELDS)[K]]> },
).partial();

const jobSchema = z
  .strictObject({
    models: z
      .array(
        z
          .strictObject({
            path: z.string().min(1).optional(),
            id: z.string().min(1).optional(),
            name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" or "-"').optional(),
            onnxFile: z.string().min(1).optional(),
            memoryGiB: z.number().positive().optional(),
          })
          .refine((m) => (m.path === undefined) !== (m.id === undefined), { message: 'give exactly one of path or id' }),
      )
      .min(1),
    ...Object.fromEntries((['pairs', 'evalPairs', 'estimator', 'aggregation', 'components'] as const).map((k) => [k, CONFIG_FIELDS[k].optional()])),
    grid: gridSchema.optional(),
    configurations: z.array(configSchema).min(1).optional(),
    eval: z
      .strictObject({
        tasks: z.array(z.enum(taskNames as unknown as [string, ...string[]])).min(1),
        data: z.record(z.string(), z.string().min(1)).optional(),
        limit: z.number().int().min(1).optional(),
        bos: z.boolean().optional(),
        batchSize: z.number().int().min(1).optional(),
        bootstrapIters: z.number().int().min(0).optional(),
      })
      .optional(),
    out: z.string().min(1).optional(),
    retries: z.number().int().min(0).optional(),
    retryDelayMs: z.number().int().min(0).optional(),
    claimTimeoutMs: z.number().int().min(1).optional(),
  })
  .refine((job) => !(job.grid && job.configurations), { message: 'give a grid or a list of configurations, not both', path: ['configurations'] });

/** A model of the job: a local folder (absolute) or a hub id. */
export interface JobModel {
  /** Short name, unique in the job: the output folder under `runs/`. */
  name: string;
  /** Absolute folder, or `org/name[@revision]`. */
  source: string;
  /** Whether `source` is a hub id. */
  hub: boolean;
  /** ONNX file inside the folder, when not the default. */
  onnxFile?: string;
  /** Memory a task on this model needs, GiB (default: estimated from the weights). */
  memoryGiB?: number;
}

/** Evaluation of the base and every pruned model (lm-eval protocol, @fairprune/eval). */
export interface JobEval {
  /** Tasks evaluated. */
  tasks: TaskName[];
  /** Per task, an absolute .jsonl/.parquet file or `hub`. */
  data: Partial<Record<TaskName, string>>;
  /** First N documents per task. */
  limit?: number;
  /** Prepend BOS. */
  bos?: boolean;
  /** Inputs per forward pass. */
  batchSize?: number;
  /** Resamples for perplexity_stderr. */
  bootstrapIters?: number;
}

/** A validated job file with paths made absolute and the configurations expanded. */
export interface BatchJob {
  /** Absolute path of the job file (undefined for a job given as an object). */
  file?: string;
  /** The models, in the file's order. */
  models: JobModel[];
  /** Every configuration (the grid's product, or the explicit list), defaults of the job filled in. */
  configurations: BatchConfig[];
  /** Evaluation, when asked for. */
  eval?: JobEval;
  /** Outputs root from the file (absolute), if given. */
  out?: string;
  /** Failed tasks are retried this many times. */
  retries: number;
  /** Delay before the first retry; doubles with each failure. */
  retryDelayMs: number;
  /** A claim held from another host whose worker has not sent a heartbeat for this long is taken over. */
  claimTimeoutMs: number;
}

/** {@link BatchJob.claimTimeoutMs} when the job file does not say: hosts' clocks must agree better than this. */
export const DEFAULT_CLAIM_TIMEOUT_MS = 60_000;

/** Retries of a failed task when the job file does not say. */
export const DEFAULT_RETRIES = 2;
/** First retry delay of a failed task when the job file does not say. */
export const DEFAULT_RETRY_DELAY_MS = 2000;

/** The grid's product, in the order the keys are given (the last key varies fastest). */
function product(grid: Record<string, unknown>): BatchConfig[] {
  let configs: Record<string, unknown>[] = [{}];
  for (const [key, raw] of Object.entries(grid)) {
    const listValued = LIST_VALUED.includes(key as ConfigField);
    const values = Array.isArray(raw) && (!listValued || Array.isArray(raw[0])) ? raw : [raw];
    configs = configs.flatMap((config) => values.map((value) => ({ ...config, [key]: value })));
  }
  return configs as BatchConfig[];
}

const localPath = (spec: string, base: string) => (spec.startsWith('builtin:') || spec === 'hub' || isAbsolute(spec) ? spec : resolve(base, spec));

/**
 * Validates a job (YAML or JSON text) and expands it: paths relative to the job file's folder, the grid's product.
 * @param file  The job file's path, for messages and relative paths.
 * @throws {@link JobFileError} naming the file, line and field of the first problem.
 */
export function parseJob(text: string, file: string): BatchJob {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const error = doc.errors[0]!;
    throw new JobFileError(`${file}:${error.linePos?.[0].line ?? 1}: not valid YAML or JSON: ${error.message.split('\n')[0]}`);
  }
  const checked = jobSchema.safeParse(doc.toJS());
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    const path = issue.path.map(String);
    // The innermost node the path reaches, for its line.
    let line = 1;
    for (let depth = path.length; depth >= 0; depth--) {
      const node = doc.getIn(path.slice(0, depth), true) as { range?: [number, number, number] } | undefined;
      const pair = depth > 0 ? (doc.getIn(path.slice(0, depth - 1), true) as { items?: { key?: { value?: unknown; range?: [number] } }[] } | undefined) : undefined;
      const key = pair?.items?.find((item) => String(item.key?.value) === path[depth - 1])?.key;
      const offset = key?.range?.[0] ?? node?.range?.[0];
      if (offset !== undefined) {
        line = lineCounter.linePos(offset).line;
        break;
      }
    }
    const field = path.length > 0 ? path.join('.') : '(top level)';
    throw new JobFileError(`${file}:${line}: ${field}: ${issue.message}`);
  }
  const job = checked.data as z.infer<typeof jobSchema> & Partial<Record<'pairs' | 'evalPairs' | 'estimator' | 'aggregation', string>> & { components?: string[] };
  const base = dirname(resolve(file));
  const names = new Map<string, number>();
  const models = job.models.map((m, index): JobModel => {
    const source = m.path !== undefined ? resolve(base, m.path) : m.id!;
    const name = m.name ?? source.replace(/@.*$/, '').split('/').filter(Boolean).at(-1)!.replace(/[^A-Za-z0-9._-]/g, '_');
    if (names.has(name)) throw new JobFileError(`${file}: models.${index}: the name "${name}" is also model ${names.get(name)}'s; give each a distinct name`);
    names.set(name, index);
    return { name, source, hub: m.path === undefined, ...(m.onnxFile !== undefined ? { onnxFile: m.onnxFile } : {}), ...(m.memoryGiB !== undefined ? { memoryGiB: m.memoryGiB } : {}) };
  });
  const defaults: BatchConfig = Object.fromEntries(
    (['pairs', 'evalPairs', 'estimator', 'aggregation', 'components'] as const).filter((k) => job[k] !== undefined).map((k) => [k, job[k]]),
  );
  const configurations = (job.configurations ?? product(job.grid ?? {})).map((config) => {
    const merged: BatchConfig = { ...defaults, ...(config as BatchConfig) };
    if (merged.pairs !== undefined) merged.pairs = localPath(merged.pairs, base);
    if (merged.evalPairs !== undefined) merged.evalPairs = localPath(merged.evalPairs, base);
    return merged;
  });
  const evalJob = job.eval;
  if (evalJob?.data) {
    for (const task of Object.keys(evalJob.data)) {
      if (!evalJob.tasks.includes(task)) throw new JobFileError(`${file}: eval.data.${task}: ${task} is not among eval.tasks (${evalJob.tasks.join(', ')})`);
    }
  }
  return {
    file: resolve(file),
    models,
    configurations,
    ...(evalJob
      ? {
          eval: {
            tasks: evalJob.tasks as TaskName[],
            data: Object.fromEntries(Object.entries(evalJob.data ?? {}).map(([task, spec]) => [task, localPath(spec, base)])),
            ...(evalJob.limit !== undefined ? { limit: evalJob.limit } : {}),
            ...(evalJob.bos !== undefined ? { bos: evalJob.bos } : {}),
            ...(evalJob.batchSize !== undefined ? { batchSize: evalJob.batchSize } : {}),
            ...(evalJob.bootstrapIters !== undefined ? { bootstrapIters: evalJob.bootstrapIters } : {}),
          },
        }
      : {}),
    ...(job.out !== undefined ? { out: resolve(base, job.out) } : {}),
    retries: job.retries ?? DEFAULT_RETRIES,
    retryDelayMs: job.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS,
    claimTimeoutMs: job.claimTimeoutMs ?? DEFAULT_CLAIM_TIMEOUT_MS,
  };
}

/** Reads and validates a job file ({@link parseJob}). */
export function readJob(file: string): BatchJob {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new JobFileError(`Cannot read the job file ${file}: ${(error as Error).message}`);
  }
  return parseJob(text, file);
}
