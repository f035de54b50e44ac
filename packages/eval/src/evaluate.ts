import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  chooseMeasurePath,
  defaultMemoryBudget,
  estimateWorkingSet,
  openModelFolder,
  readJsonObject,
  requireConsistentModel,
  requireOnnxPath,
  validateModel,
  type HubOptions,
  type SessionDevice,
  type WorkingSetEstimate,
} from '@fairprune/core';
import { loadDocs, type DataSource } from './data/load-docs.js';
import { encodePair, modelInput, resolveMaxLength } from './requests.js';
import { aggregateTask, type Sample, type TaskMetrics } from './results.js';
import { defaultScorerThread, openScorer, openSegmentedScorer, type ScorerThread } from './scorer.js';
import type { ScoringRow } from './scoring.js';
import { getTask, type LoglikelihoodResult, type TaskName } from './tasks.js';
import { version } from './version.js';

export interface EvaluateOptions {
  /** Hugging Face-style model folder (config.json, tokenizer, ONNX). */
  model: string;
  /** ONNX file inside the folder; default onnx/model.onnx, else model.onnx, else the only .onnx file. */
  onnxFile?: string;
  task: TaskName;
  /** Local .jsonl/.parquet file, or the task's file on the Hugging Face hub (default). */
  data?: DataSource;
  /** Evaluate the first N documents only. */
  limit?: number;
  /** Prepend the tokenizer's BOS token (lm-eval ≥ 0.4.9.2 does for Llama 3; older releases and the default do not). */
  bos?: boolean;
  /** Model inputs per forward pass (harness default 1). */
  batchSize?: number;
  /** Resamples for perplexity_stderr (harness default 100000). */
  bootstrapIters?: number;
  logSamples?: boolean;
  device?: SessionDevice;
  /**
   * Score one decoder layer at a time (the model's segments), for models larger than memory; documents go in chunks
   * whose residual streams and logits fit `memoryBudget`. Default: when the whole model does not fit the budget.
   */
  streamed?: boolean;
  /** Bytes the scoring may use (default {@link defaultMemoryBudget}: a fraction of the memory available). */
  memoryBudget?: number;
  threads?: number;
  /** Where ORT runs; default `worker` in the built package (`main` when running from TypeScript sources). */
  thread?: ScorerThread;
  hub?: HubOptions;
  /** Proceed although config.json, the graph and the safetensors disagree (`--allow-mismatch`); the results record it. */
  allowMismatch?: boolean;
  onProgress?: (progress: EvalProgress) => void;
  /** One-line notices, e.g. why CUDA was asked for but CPU is used. */
  onNotice?: (message: string) => void;
}

export interface EvalProgress {
  task: TaskName;
  docsDone: number;
  docsTotal: number;
  tokensDone: number;
  tokensTotal: number;
  elapsedMs: number;
}

/** lm-evaluation-harness-shaped output. */
export interface EvalResults {
  results: Partial<Record<TaskName, TaskMetrics>>;
  versions: Partial<Record<TaskName, number>>;
  /** Documents in the task's file (`original`) and evaluated (`effective`, after `limit`). */
  'n-samples': Partial<Record<TaskName, { original: number; effective: number }>>;
  config: {
    model: string;
    onnx_file: string;
    data: string;
    bos: boolean;
    limit: number | null;
    batch_size: number;
    bootstrap_iters: number;
    device: string;
    fairprune_version: string;
    /** `--allow-mismatch` was given; with the disagreements between the model's files it proceeded past. */
    allow_mismatch?: { mismatches: string[] };
    /** Documents whose context was cut from the left to fit the model (as lm-eval does). */
    truncated_docs: number;
  };
  samples?: Partial<Record<TaskName, Sample[]>>;
}

/** Tokens one chunk of the segmented scorer may hold: what the budget leaves after the largest segment (at least one row). */
function chunkTokens(estimate: WorkingSetEstimate, budget: number, longest: number): number {
  const fixed = estimate.streamed! - longest * estimate.streamedPerToken;
  return Math.max(longest, Math.floor((budget - fixed) / estimate.streamedPerToken));
}

const gigabytes = (bytes: number) => `${(bytes / 1e9).toFixed(1)} GB`;

interface PlannedRequest {
  doc: number;
  index: number;
  context: string;
  continuation: string;
}

/**
 * Evaluates one task the way lm-evaluation-harness does (0-shot loglikelihood requests, same prompts, same
 * tokenization split, same metrics and stderr), on an ONNX model with onnxruntime.
 */
export async function evaluate(options: EvaluateOptions): Promise<EvalResults> {
  const task = getTask(options.task);
  const batchSize = options.batchSize ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`--batch-size must be a positive integer, got ${batchSize}`);
  const bootstrapIters = options.bootstrapIters ?? 100000;
  const bos = options.bos ?? false;
  const folder = openModelFolder(options.model, options.onnxFile === undefined ? {} : { onnxFile: options.onnxFile });
  const onnxPath = requireOnnxPath(folder);
  const validation = validateModel(folder, onnxPath);
  const inputChecks = requireConsistentModel(validation, options.allowMismatch ?? false);
  const { docs, rows, total, path: dataPath } = await loadDocs(task, options.data ?? { hub: true }, {
    ...(options.limit === undefined ? {} : { limit: options.limit }),
    ...(options.hub === undefined ? {} : { hub: options.hub }),
  });
  // lm-eval's length, unless the graph itself takes fewer positions.
  const maxLength = Math.min(resolveMaxLength(folder.config.raw, readTokenizerConfig(folder.dir)), validation.contextLimit ?? Infinity);
  const truncatedDocs = new Set<number>();

  // Requests → model rows; identical inputs share one row.
  const planned: PlannedRequest[] = [];
  const rowsByInput = new Map<string, { row: ScoringRow; requests: PlannedRequest[] }>();
  docs.forEach((doc, d) => {
    task.requests(doc).forEach((request, index) => {
      const pair = encodePair(folder.tokenizer, request.context, request.continuation, bos);
      const input = modelInput(pair, maxLength);
      if (pair.continuation.length > maxLength) {
        throw new Error(`document ${d}: its continuation takes ${pair.continuation.length} tokens, more than the model's context of ${maxLength}`);
      }
      if (pair.context.length + pair.continuation.length > maxLength + 1) truncatedDocs.add(d);
      const planItem = { doc: d, index, ...request };
      planned.push(planItem);
      const key = input.join(',');
      const entry = rowsByInput.get(key) ?? { row: { input, continuations: [] }, requests: [] };
      entry.row.continuations.push(pair.continuation);
      entry.requests.push(planItem);
      rowsByInput.set(key, entry);
    });
  });
  if (truncatedDocs.size > 0) {
    options.onNotice?.(
      `${truncatedDocs.size} of ${docs.length} documents are longer than the model's context of ${maxLength} tokens; ` +
        'their context is cut from the left, as lm-eval does',
    );
  }
  // Longest first, like the harness: the first batch shows at once whether memory suffices.
  const work = [...rowsByInput.values()].sort((a, b) => b.row.input.length - a.row.input.length);

  const results = new Map<PlannedRequest, LoglikelihoodResult>();
  const byDoc: PlannedRequest[][] = docs.map(() => []);
  for (const request of planned) byDoc[request.doc]!.push(request);
  const requestsLeft = byDoc.map((requests) => requests.length);
  const tokensTotal = work.reduce((n, w) => n + w.row.input.length, 0);
  let docsDone = 0;
  let tokensDone = 0;
  let started = Date.now();
  const report = () =>
    options.onProgress?.({ task: task.name, docsDone, docsTotal: docs.length, tokensDone, tokensTotal, elapsedMs: Date.now() - started });

  const sessionOptions = { ...(options.device ? { device: options.device } : {}), ...(options.threads ? { threads: options.threads } : {}), config: folder.config };
  const longest = work[0]?.row.input.length ?? 0;
  const budget = options.memoryBudget ?? defaultMemoryBudget();
  // One row's residual streams and logits at the least; the budget decides the path and the chunk size.
  const estimate = estimateWorkingSet(onnxPath, folder.config, { tokens: longest, batchTokens: batchSize * longest });
  const segmented = chooseMeasurePath(estimate, { ...(options.streamed ? { streamed: true } : {}), memoryBudget: budget }) === 'streamed';
  const scorer = segmented ? openSegmentedScorer(onnxPath, sessionOptions) : await openScorer(onnxPath, sessionOptions, options.thread ?? defaultScorerThread());
  // Segments open one by one, so a CUDA fallback is known only after the first batch.
  let noticed = false;
  const noticeFallback = () => {
    if (noticed || !scorer.fallbackReason) return;
    noticed = true;
    options.onNotice?.(scorer.fallbackReason);
  };
  noticeFallback();
  if (segmented) {
    options.onNotice?.(
      `scoring one layer at a time (working set: whole model ${gigabytes(estimate.whole)}, budget ${gigabytes(budget)}); ` +
        `documents in chunks of up to ${chunkTokens(estimate, budget, longest)} tokens`,
    );
  }
  try {
    // elapsedMs counts scoring only, not opening the model, so rates and ETA describe the work itself
    started = Date.now();
    report();
    const batches: (typeof work)[] = [];
    if (segmented) {
      // Every segment loads once per chunk: chunks as large as the budget allows (batch size does not apply).
      const limit = chunkTokens(estimate, budget, longest);
      let chunk: typeof work = [];
      let tokens = 0;
      for (const w of work) {
        if (chunk.length > 0 && tokens + w.row.input.length > limit) {
          batches.push(chunk);
          [chunk, tokens] = [[], 0];
        }
        chunk.push(w);
        tokens += w.row.input.length;
      }
      if (chunk.length > 0) batches.push(chunk);
    } else {
      for (let start = 0; start < work.length; start += batchSize) batches.push(work.slice(start, start + batchSize));
    }
    // With the worker, two batches are in flight: it starts the next forward while this thread books the previous
    // one. On the main thread batches run strictly one after another.
    const submit = (b: number) => {
      if (b >= batches.length) return undefined;
      const scores = scorer.score(batches[b]!.map((w) => w.row));
      scores.catch(() => {}); // a failure is rethrown where it is awaited; don't report the in-flight one as unhandled
      return scores;
    };
    let next = submit(0);
    for (let b = 0; b < batches.length; b++) {
      const pending = next!;
      if (scorer.pipelined) next = submit(b + 1);
      const scores = await pending;
      noticeFallback();
      if (!scorer.pipelined) next = submit(b + 1);
      batches[b]!.forEach((w, i) => {
        w.requests.forEach((request, j) => {
          results.set(request, scores[i]![j]!);
          if (--requestsLeft[request.doc]! === 0) docsDone++;
        });
        tokensDone += w.row.input.length;
      });
      report();
    }
  } finally {
    await scorer.close();
  }

  const perDoc = docs.map((doc, d) => {
    const mine = byDoc[d]!;
    const resps = mine.map((p) => results.get(p)!);
    return { doc, requests: mine, resps, metrics: task.score(doc, resps) };
  });
  if (task.metrics.includes('perplexity') && bootstrapIters * docs.length > 5e7) {
    options.onNotice?.(`bootstrapping perplexity_stderr: ${bootstrapIters} resamples of ${docs.length} documents, as lm-eval does (--bootstrap-iters lowers it)`);
  }
  const metrics = aggregateTask(task, perDoc.map((p) => p.metrics), bootstrapIters);

  const output: EvalResults = {
    results: { [task.name]: metrics },
    versions: { [task.name]: task.version },
    'n-samples': { [task.name]: { original: total, effective: docs.length } },
    config: {
      model: folder.dir,
      onnx_file: onnxPath,
      data: dataPath,
      bos,
      limit: options.limit ?? null,
      batch_size: batchSize,
      bootstrap_iters: bootstrapIters,
      device: scorer.device,
      fairprune_version: version,
      ...(inputChecks.allowMismatch ? { allow_mismatch: { mismatches: inputChecks.mismatches } } : {}),
      truncated_docs: truncatedDocs.size,
    },
  };
  if (options.logSamples) {
    output.samples = {
      [task.name]: perDoc.map((p, d) => ({
        doc_id: d,
        doc: jsonRow(rows[d]!),
        target: task.target(p.doc),
        arguments: p.requests.map((r) => [r.context, r.continuation] as [string, string]),
        resps: p.resps.map((r) => [r.ll, r.isGreedy] as [number, boolean]),
        ...p.metrics,
      })),
    };
  }
  return output;
}

/** The dataset row as JSON would hold it: parquet int64 columns arrive as bigint. */
function jsonRow(row: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).map(([key, value]) => [key, typeof value === 'bigint' ? Number(value) : value]));
}

function readTokenizerConfig(dir: string): Record<string, unknown> {
  const path = join(dir, 'tokenizer_config.json');
  if (!existsSync(path)) return {};
  return readJsonObject(path);
}
