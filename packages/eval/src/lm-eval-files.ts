import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join, parse, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTextOutput } from '@fairprune/core';
import type { EvalResults } from './evaluate.js';
import type { Sample } from './results.js';
import { getTask, type TaskName } from './tasks.js';
import { version } from './version.js';

/**
 * lm-evaluation-harness's result files, written the way its `EvaluationTracker` writes them
 * (`lm_eval/loggers/evaluation_tracker.py` `save_results_aggregated` / `save_results_samples`, with the results dict
 * of `lm_eval/evaluator.py` `simple_evaluate` / `evaluate` and the field list of `lm_eval/result_schema.py`,
 * v0.4.12): `<output>/<model_name_sanitized>/results_<date>.json` and one `samples_<task>_<date>.jsonl` per task.
 */

/** lm-eval's `hash_string`: SHA-256 hex of the UTF-8 text. */
export function hashString(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** lm-eval's `sanitize_model_name`: runs of `"<>:/|\?*[]` become `__` (the model's folder name under the output path). */
export function sanitizeModelName(name: string): string {
  return name.replace(/["<>:/|\\?*[\]]+/g, '__');
}

/**
 * Python's `str(float)`: the shortest round-trip digits, in exponent form below 1e-4 and from 1e16 on (`1e-05`,
 * `1.5e+16`), otherwise positional with at least one fractional digit (`-3.0`). lm-eval stores responses this way.
 */
export function pythonFloat(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, exponent] = x.toExponential().split('e') as [string, string];
  const e = Number(exponent);
  const sign = x < 0 ? '-' : '';
  const digits = mantissa.replace('-', '').replace('.', '');
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  if (e < 0) return `${sign}0.${'0'.repeat(-e - 1)}${digits}`;
  const whole = digits.slice(0, e + 1).padEnd(e + 1, '0');
  return `${sign}${whole}.${digits.slice(e + 1) || '0'}`;
}

/**
 * The date part of lm-eval's file names: `datetime.now().isoformat()` (local time, microseconds left out when zero)
 * with `:` replaced by `-`, e.g. `2026-11-30T14-41-32.123000`.
 */
export function fileDateId(date: Date): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const base =
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}-${pad(date.getMinutes())}-${pad(date.getSeconds())}`;
  return date.getMilliseconds() === 0 ? base : `${base}.${pad(date.getMilliseconds() * 1000, 6)}`;
}

/** One evaluation run over one or more tasks, as {@link lmEvalResults} records it. */
export interface LmEvalRun {
  /** The model as the user named it (folder or hub id): lm-eval's `model_name`, and the output sub-folder. */
  model: string;
  /** The {@link evaluate} result of each task, in the order asked for; all with the same settings. */
  tasks: readonly EvalResults[];
  /** When the evaluation started. */
  started: Date;
  /** Wall time of the whole run, seconds. */
  seconds: number;
}

/** Task config fields as lm-eval's `dump_config()` writes them for its yaml (0-shot, no filters). */
const TASK_CONFIGS: Record<TaskName, Record<string, unknown>> = {
  lambada_openai: {
    task: 'lambada_openai',
    tag: ['lambada'],
    dataset_path: 'EleutherAI/lambada_openai',
    dataset_name: 'default',
    test_split: 'test',
    doc_to_text: "{{text.split(' ')[:-1]|join(' ')}}",
    doc_to_target: "{{' '+text.split(' ')[-1]}}",
  },
  lambada_standard: {
    task: 'lambada_standard',
    tag: ['lambada'],
    dataset_path: 'cimec/lambada',
    validation_split: 'validation',
    test_split: 'test',
    doc_to_text: "{{text.split(' ')[:-1]|join(' ')}}",
    doc_to_target: "{{' '+text.split(' ')[-1]}}",
  },
  boolq: {
    task: 'boolq',
    tag: ['super-glue-lm-eval-v1'],
    dataset_path: 'aps/super_glue',
    dataset_name: 'boolq',
    training_split: 'train',
    validation_split: 'validation',
    doc_to_text: '{{passage}}\nQuestion: {{question}}?\nAnswer:',
    doc_to_target: 'label',
    doc_to_choice: ['no', 'yes'],
  },
};

const HIGHER_IS_BETTER: Record<string, boolean> = { acc: true, perplexity: false };
const AGGREGATION: Record<string, string> = { acc: 'mean', perplexity: 'perplexity' };

function taskConfig(name: TaskName, run: EvalResults): Record<string, unknown> {
  const task = getTask(name);
  const { task: taskName, tag, dataset_path, dataset_name, ...templates } = TASK_CONFIGS[name];
  return {
    task: taskName,
    tag,
    dataset_path,
    ...(dataset_name === undefined ? {} : { dataset_name }),
    // lm-eval's way of naming a local file; here always the file fairprune read (the cache copy for hub data)
    dataset_kwargs: { data_files: { [task.split]: run.config.data } },
    ...templates,
    description: '',
    target_delimiter: ' ',
    fewshot_delimiter: '\n\n',
    num_fewshot: 0,
    metric_list: task.metrics.map((metric) => ({ metric, aggregation: AGGREGATION[metric], higher_is_better: HIGHER_IS_BETTER[metric] })),
    output_type: name === 'boolq' ? 'multiple_choice' : 'loglikelihood',
    repeats: 1,
    should_decontaminate: false,
    metadata: { version: task.version },
  };
}

/** `dict(sorted(...))`, as lm-eval orders its per-task tables. */
function sortedByTask<T>(entries: Array<[string, T]>): Record<string, T> {
  return Object.fromEntries([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** `git describe --always` of fairprune's own source, as lm-eval records its own; null outside a git checkout. */
function gitHash(): string | null {
  try {
    const cwd = dirname(fileURLToPath(import.meta.url));
    return execFileSync('git', ['describe', '--always'], { cwd, stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).toString().trim() || null;
  } catch {
    return null;
  }
}

/** Which task one {@link evaluate} result is about. */
function taskOf(result: EvalResults): TaskName {
  const names = Object.keys(result.results) as TaskName[];
  if (names.length !== 1) throw new Error(`expected the results of one task, got ${names.length} (${names.join(', ')})`);
  return names[0]!;
}

/** A sample line of `samples_<task>_<date>.jsonl`, after lm-eval's `save_results_samples` flattened it for `datasets`. */
export function lmEvalSample(task: TaskName, sample: Sample): Record<string, unknown> {
  const metricNames = getTask(task).metrics;
  const responses = sample.resps.map(([ll, greedy]) => [pythonFloat(ll), greedy ? 'True' : 'False']);
  return {
    doc_id: sample.doc_id,
    doc: sample.doc,
    target: sample.target,
    arguments: Object.fromEntries(sample.arguments.map(([context, continuation], i) => [`gen_args_${i}`, { arg_0: context, arg_1: continuation }])),
    // one entry per request: its repeats (always 1 here), each (ll, is_greedy) as strings
    resps: responses.map((r) => [r]),
    filtered_resps: responses,
    filter: 'none',
    metrics: [...metricNames],
    // json.dumps(doc, indent=2, ensure_ascii=False): the same text as JSON.stringify(doc, null, 2) for string and integer fields
    doc_hash: hashString(JSON.stringify(sample.doc, null, 2)),
    prompt_hash: hashString(sample.arguments[0]![0]),
    target_hash: hashString(sample.target),
    ...Object.fromEntries(metricNames.map((m) => [m, sample[m]])),
  };
}

/** What {@link lmEvalResults} returns: the results file's object, and the sample lines of each task when logged. */
export interface LmEvalOutput {
  /** `results_<date>.json`: lm-eval's aggregated results, key for key. */
  results: Record<string, unknown>;
  /** The lines of each `samples_<task>_<date>.jsonl`; empty without `logSamples`. */
  samples: Partial<Record<TaskName, Record<string, unknown>[]>>;
}

/**
 * Builds lm-eval's results object (and sample lines) from per-task {@link evaluate} results: the top-level keys in
 * the order `simple_evaluate` and `save_results_aggregated` produce them, tasks sorted by name where lm-eval sorts,
 * metrics as `"<metric>,none"` / `"<metric>_stderr,none"`.
 */
export function lmEvalResults(run: LmEvalRun): LmEvalOutput {
  if (run.tasks.length === 0) throw new Error('no task results to write');
  const names = run.tasks.map(taskOf);
  const first = run.tasks[0]!.config;
  const samples: LmEvalOutput['samples'] = {};
  run.tasks.forEach((result, i) => {
    const logged = result.samples?.[names[i]!];
    if (logged) samples[names[i]!] = logged.map((s) => lmEvalSample(names[i]!, s));
  });
  const taskHashes = Object.fromEntries(
    Object.entries(samples).map(([task, lines]) => [task, hashString(lines.map((s) => `${s.doc_hash}${s.prompt_hash}${s.target_hash}`).join(''))]),
  );
  const metricsOf = (name: TaskName, result: EvalResults): Record<string, unknown> => {
    const m = result.results[name]!;
    const out: Record<string, unknown> = { alias: m.alias };
    for (const metric of getTask(name).metrics) {
      out[`${metric},none`] = m[metric];
      out[`${metric}_stderr,none`] = m[`${metric}_stderr`];
    }
    return out;
  };
  const model = run.model.replace(/[/\\]+$/, '') || run.model;
  const startSeconds = run.started.getTime() / 1000;
  const onnxFile = relative(first.model, first.onnx_file);
  const results: Record<string, unknown> = {
    results: sortedByTask(run.tasks.map((r, i) => [names[i]!, metricsOf(names[i]!, r)])),
    group_subtasks: Object.fromEntries([...names].reverse().map((n) => [n, []])),
    configs: sortedByTask(run.tasks.map((r, i) => [names[i]!, taskConfig(names[i]!, r)])),
    versions: sortedByTask(run.tasks.map((r, i) => [names[i]!, r.versions[names[i]!]])),
    'n-shot': sortedByTask(names.map((n) => [n, 0])),
    higher_is_better: sortedByTask(names.map((n) => [n, Object.fromEntries(getTask(n).metrics.map((m) => [m, HIGHER_IS_BETTER[m]]))])),
    'n-samples': Object.fromEntries(run.tasks.map((r, i) => [names[i]!, r['n-samples'][names[i]!]])),
    config: {
      model: 'fairprune',
      model_args: `pretrained=${model},onnx_file=${onnxFile},add_bos_token=${first.bos ? 'True' : 'False'}`,
      batch_size: first.batch_size,
      batch_sizes: [],
      device: first.device,
      use_cache: null,
      limit: first.limit,
      bootstrap_iters: first.bootstrap_iters,
      gen_kwargs: null,
      random_seed: 0,
      numpy_seed: 1234,
      torch_seed: 1234,
      fewshot_seed: 1234,
      bos: first.bos,
      onnx_file: first.onnx_file,
      fairprune_version: version,
      // What the run proceeded past or changed, so the results say so wherever they travel.
      ...(first.allow_mismatch ? { allow_mismatch: first.allow_mismatch } : {}),
      truncated_docs: run.tasks.reduce((n, r) => n + r.config.truncated_docs, 0),
    },
    git_hash: gitHash(),
    date: startSeconds,
    task_hashes: taskHashes,
    model_source: 'fairprune',
    model_name: model,
    model_name_sanitized: sanitizeModelName(model),
    system_instruction: null,
    system_instruction_sha: null,
    fewshot_as_multiturn: false,
    chat_template: null,
    chat_template_sha: null,
    start_time: startSeconds,
    end_time: startSeconds + run.seconds,
    total_evaluation_time_seconds: pythonFloat(run.seconds),
  };
  return { results, samples };
}

/** A results object as lm-eval's writer serialises it (`json.dumps(..., indent=2)`, no final newline). */
export function lmEvalJson(results: LmEvalOutput['results']): string {
  return JSON.stringify(results, null, 2);
}

/** The files {@link writeLmEvalFiles} wrote. */
export interface WrittenLmEvalFiles {
  /** `results_<date>.json` (or `<stem>_<date>.json` for an output path ending in `.json`). */
  results: string;
  /** `samples_<task>_<date>.jsonl` per logged task. */
  samples: Partial<Record<TaskName, string>>;
}

/** Writes one `samples_<task>_<date>.jsonl` per logged task into `dir` (atomically) and returns their paths. */
export async function writeLmEvalSamples(dir: string, samples: LmEvalOutput['samples'], date: Date): Promise<Partial<Record<TaskName, string>>> {
  mkdirSync(dir, { recursive: true });
  const written: Partial<Record<TaskName, string>> = {};
  for (const [task, lines] of Object.entries(samples) as Array<[TaskName, Record<string, unknown>[]]>) {
    const path = join(dir, `samples_${task}_${fileDateId(date)}.jsonl`);
    await writeTextOutput(path, lines.map((line) => `${JSON.stringify(line)}\n`).join(''), 'eval');
    written[task] = path;
  }
  return written;
}

/**
 * Writes the files where lm-eval would: under `outputPath/<model_name_sanitized>/`, or, when `outputPath` ends in
 * `.json`, as `<stem>_<date>.json` with the samples beside it. Each file is written atomically.
 */
export async function writeLmEvalFiles(outputPath: string, output: LmEvalOutput, date: Date = new Date()): Promise<WrittenLmEvalFiles> {
  const asFile = outputPath.endsWith('.json');
  const dir = asFile ? dirname(outputPath) : join(outputPath, String(output.results['model_name_sanitized']));
  mkdirSync(dir, { recursive: true });
  const id = fileDateId(date);
  const resultsPath = asFile ? join(dir, `${parse(outputPath).name}_${id}.json`) : join(dir, `results_${id}.json`);
  await writeTextOutput(resultsPath, lmEvalJson(output.results), 'eval');
  return { results: resultsPath, samples: await writeLmEvalSamples(dir, output.samples, date) };
}
