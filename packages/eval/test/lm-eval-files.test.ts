import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DATA, FIXTURES, readRefs } from '@fairprune/fixtures';
import { evaluate, fileDateId, lmEvalResults, pythonFloat, sanitizeModelName, writeLmEvalFiles, type EvalResults, type WrittenLmEvalFiles } from '../src/index.js';

/**
 * The key structure of a results file as lm-evaluation-harness writes it, copied from its writer: the results dict of
 * `lm_eval/evaluator.py` (`evaluate`: results, group_subtasks, configs, versions, n-shot, higher_is_better, n-samples;
 * `simple_evaluate`: config, git_hash, date; commit 5b321a1ad92f126671533121783340dc59e1b173), then what
 * `lm_eval/loggers/evaluation_tracker.py` `save_results_aggregated` adds (task_hashes, then `GeneralConfigTracker`'s
 * fields in declaration order; commit 034ab03621186e68aa1f73ee1508370580ea77b5). `lm_eval/result_schema.py`
 * (v0.4.12) lists the same keys. The environment and tokenizer fields (`pretty_env_info`, `transformers_version`,
 * `tokenizer_*`, ...) describe a PyTorch process and are left out.
 */
const LM_EVAL_TOP_LEVEL = [
  'results',
  'group_subtasks',
  'configs',
  'versions',
  'n-shot',
  'higher_is_better',
  'n-samples',
  'config',
  'git_hash',
  'date',
  'task_hashes',
  'model_source',
  'model_name',
  'model_name_sanitized',
  'system_instruction',
  'system_instruction_sha',
  'fewshot_as_multiturn',
  'chat_template',
  'chat_template_sha',
  'start_time',
  'end_time',
  'total_evaluation_time_seconds',
];
/** `config` as `simple_evaluate` fills it for a non-HF model (model, model_args, then the execution settings). */
const LM_EVAL_CONFIG = ['model', 'model_args', 'batch_size', 'batch_sizes', 'device', 'use_cache', 'limit', 'bootstrap_iters', 'gen_kwargs', 'random_seed', 'numpy_seed', 'torch_seed', 'fewshot_seed'];
/**
 * A sample line after `save_results_samples`: the example dict of `evaluate` (doc_id … target_hash, with `filter` and
 * `metrics` as v0.4.12's `SampleResult` has them), then the per-document metric values.
 */
const LM_EVAL_SAMPLE = ['doc_id', 'doc', 'target', 'arguments', 'resps', 'filtered_resps', 'filter', 'metrics', 'doc_hash', 'prompt_hash', 'target_hash'];
/**
 * A real lm-eval results entry for lambada_openai (v0.4 with alias first), as lm-eval prints and saves it:
 * alias, then each metric of `process_results` in order, each followed by its stderr.
 */
const LAMBADA_RESULT_KEYS = ['alias', 'perplexity,none', 'perplexity_stderr,none', 'acc,none', 'acc_stderr,none'];

// lm-eval's consumers find and parse the files by name (lm_eval/utils.py): ported here to read ours the same way.
const getResultsFilenames = (files: string[]) => files.filter((f) => f.includes('/results_') && f.includes('.json'));
const getSampleResultsFilenames = (files: string[]) => files.filter((f) => f.includes('/samples_') && f.includes('.json'));
const getFileTaskName = (filename: string) => filename.slice(filename.indexOf('_') + 1, filename.lastIndexOf('_'));
const getFileDatetime = (filename: string) => filename.slice(filename.lastIndexOf('_') + 1).replace('.jsonl', '');

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const LIMIT = 8;
const MODEL = join(FIXTURES, 'llama');

test('Python float formatting (values printed by CPython 3.11 repr)', () => {
  const cases: Array<[number, string]> = [
    [-1.5, '-1.5'],
    [-3, '-3.0'],
    [0.1 + 0.2, '0.30000000000000004'],
    [1e-5, '1e-05'],
    [0.0001, '0.0001'],
    [-0.00012345, '-0.00012345'],
    [1e16, '1e+16'],
    [1234567890123456, '1234567890123456.0'],
    [1.5e22, '1.5e+22'],
    [5e-324, '5e-324'],
    [-12.345678901234567, '-12.345678901234567'],
    [0, '0.0'],
  ];
  for (const [x, expected] of cases) expect(pythonFloat(x), String(x)).toBe(expected);
});

test('file date: isoformat() with ":" replaced by "-", microseconds only when non-zero', () => {
  expect(fileDateId(new Date(2026, 10, 30, 14, 5, 9, 120))).toBe('2026-11-30T14-05-09.120000');
  expect(fileDateId(new Date(2026, 0, 2, 3, 4, 5, 0))).toBe('2026-01-02T03-04-05');
});

test('model folder names as lm-eval sanitizes them', () => {
  // lm-eval wrote lamhieu/ghost-8b-beta-disl-0x5 as "lamhieu__ghost-8b-beta-disl-0x5" in a published results file
  expect(sanitizeModelName('lamhieu/ghost-8b-beta-disl-0x5')).toBe('lamhieu__ghost-8b-beta-disl-0x5');
  expect(sanitizeModelName('/models/a:b')).toBe('__models__a__b');
});

describe('results and samples files of boolq + lambada_openai on the llama fixture', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'fairprune-lmeval-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const started = new Date(2026, 10, 30, 14, 41, 32, 500);
  let runs: EvalResults[];
  let written: WrittenLmEvalFiles;
  let results: Record<string, any>;
  let samples: Record<string, Record<string, any>[]>;

  beforeAll(async () => {
    runs = [];
    for (const [task, file] of [['boolq', DATA.boolqMini], ['lambada_openai', DATA.lambadaMini]] as const) {
      runs.push(await evaluate({ model: MODEL, task, data: { file }, limit: LIMIT, batchSize: 4, logSamples: true, thread: 'main', threads: 1, bootstrapIters: 100 }));
    }
    written = await writeLmEvalFiles(tmp, lmEvalResults({ model: MODEL, tasks: runs, started, seconds: 1.25 }), started);
    const dir = join(tmp, sanitizeModelName(MODEL));
    const files = readdirSync(dir).map((f) => `${dir}/${f}`);
    const [resultsFile, ...others] = getResultsFilenames(files);
    expect(others).toEqual([]);
    results = JSON.parse(readFileSync(resultsFile!, 'utf8'));
    samples = {};
    for (const file of getSampleResultsFilenames(files)) {
      expect(getFileDatetime(basename(file))).toBe(getFileDatetime(basename(resultsFile!)).replace('.json', ''));
      samples[getFileTaskName(basename(file))] = readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    }
  });

  test('file names and places: <output>/<sanitized model>/results_<date>.json and samples_<task>_<date>.jsonl', () => {
    const dir = join(tmp, sanitizeModelName(MODEL));
    expect(written.results).toBe(join(dir, 'results_2026-11-30T14-41-32.500000.json'));
    expect(written.samples).toEqual({
      boolq: join(dir, 'samples_boolq_2026-11-30T14-41-32.500000.jsonl'),
      lambada_openai: join(dir, 'samples_lambada_openai_2026-11-30T14-41-32.500000.jsonl'),
    });
    expect(Object.keys(samples).sort()).toEqual(['boolq', 'lambada_openai']);
  });

  test('top-level keys, config keys and per-task tables in lm-eval order', () => {
    expect(Object.keys(results)).toEqual(LM_EVAL_TOP_LEVEL);
    expect(Object.keys(results.config).slice(0, LM_EVAL_CONFIG.length)).toEqual(LM_EVAL_CONFIG);
    for (const key of ['results', 'configs', 'versions', 'n-shot', 'higher_is_better']) expect(Object.keys(results[key]), key).toEqual(['boolq', 'lambada_openai']);
    expect(Object.keys(results.results.lambada_openai)).toEqual(LAMBADA_RESULT_KEYS);
    expect(Object.keys(results.results.boolq)).toEqual(['alias', 'acc,none', 'acc_stderr,none']);
    expect(results.versions).toEqual({ boolq: 2, lambada_openai: 1 });
    expect(results['n-shot']).toEqual({ boolq: 0, lambada_openai: 0 });
    expect(results.higher_is_better).toEqual({ boolq: { acc: true }, lambada_openai: { perplexity: false, acc: true } });
    expect(results['n-samples']).toEqual({ boolq: { original: 64, effective: LIMIT }, lambada_openai: { original: 64, effective: LIMIT } });
    expect(results.config).toMatchObject({ model: 'fairprune', model_args: `pretrained=${MODEL},onnx_file=onnx/model.onnx,add_bos_token=False`, batch_size: 4, limit: LIMIT, bootstrap_iters: 100 });
    expect(results.model_name).toBe(MODEL);
    expect(results.model_name_sanitized).toBe(sanitizeModelName(MODEL));
    expect(results.date).toBe(started.getTime() / 1000);
    expect(results.total_evaluation_time_seconds).toBe('1.25');
    expect(results.configs.boolq).toMatchObject({ task: 'boolq', dataset_path: 'aps/super_glue', dataset_name: 'boolq', output_type: 'multiple_choice', num_fewshot: 0 });
    expect(results.configs.lambada_openai.dataset_kwargs).toEqual({ data_files: { test: DATA.lambadaMini } });
  });

  test('metrics: the aggregates of the sample lines, and the HF reference log-likelihoods in the responses', () => {
    const refs = readRefs('llama').eval;
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const lambada = samples['lambada_openai']!;
    expect(lambada).toHaveLength(LIMIT);
    lambada.forEach((s, i) => {
      // resps: per request, per repeat, [ll, is_greedy] as Python str() values
      expect(s.resps).toHaveLength(1);
      expect(Math.abs(Number(s.resps[0][0][0]) - refs.lambada[i]!.ll)).toBeLessThanOrEqual(1e-3);
      expect(s.resps[0][0][1]).toBe(refs.lambada[i]!.greedy ? 'True' : 'False');
      expect(s.filtered_resps).toEqual([s.resps[0][0]]);
      expect(s.acc).toBe(refs.lambada[i]!.greedy ? 1 : 0);
      expect(s.perplexity).toBe(Number(s.resps[0][0][0]));
    });
    expect(results.results.lambada_openai['acc,none']).toBeCloseTo(mean(lambada.map((s) => s.acc)), 12);
    expect(results.results.lambada_openai['perplexity,none']).toBeCloseTo(Math.exp(-mean(lambada.map((s) => s.perplexity))), 9);
    const boolq = samples['boolq']!;
    boolq.forEach((s, i) => {
      expect(Math.abs(Number(s.resps[0][0][0]) - refs.boolq[i]!.ll_no)).toBeLessThanOrEqual(1e-3);
      expect(Math.abs(Number(s.resps[1][0][0]) - refs.boolq[i]!.ll_yes)).toBeLessThanOrEqual(1e-3);
      expect(s.acc).toBe(refs.boolq[i]!.pred === refs.boolq[i]!.label ? 1 : 0);
    });
    expect(results.results.boolq['acc,none']).toBeCloseTo(mean(boolq.map((s) => s.acc)), 12);
  });

  test('sample lines: lm-eval keys, flattened arguments, and hashes of the doc, prompt and target', () => {
    const docs = readFileSync(DATA.boolqMini, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { question: string; passage: string; idx: number; label: number });
    samples['boolq']!.forEach((s, i) => {
      expect(Object.keys(s)).toEqual([...LM_EVAL_SAMPLE, 'acc']);
      const doc = docs[i]!;
      expect(s.doc_id).toBe(i);
      expect(s.doc).toEqual(doc);
      const context = `${doc.passage}\nQuestion: ${doc.question}?\nAnswer:`;
      expect(s.arguments).toEqual({ gen_args_0: { arg_0: context, arg_1: ' no' }, gen_args_1: { arg_0: context, arg_1: ' yes' } });
      expect(s.target).toBe(String(doc.label));
      expect(s.filter).toBe('none');
      expect(s.metrics).toEqual(['acc']);
      // json.dumps(doc, indent=2, ensure_ascii=False), written out by hand
      const python = `{\n  "question": ${JSON.stringify(doc.question)},\n  "passage": ${JSON.stringify(doc.passage)},\n  "idx": ${doc.idx},\n  "label": ${doc.label}\n}`;
      expect(s.doc_hash).toBe(sha256(python));
      expect(s.prompt_hash).toBe(sha256(context));
      expect(s.target_hash).toBe(sha256(String(doc.label)));
    });
    const texts = readFileSync(DATA.lambadaMini, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { text: string }).text);
    samples['lambada_openai']!.forEach((s, i) => {
      expect(Object.keys(s)).toEqual([...LM_EVAL_SAMPLE, 'perplexity', 'acc']);
      const cut = texts[i]!.lastIndexOf(' ');
      expect(s.arguments).toEqual({ gen_args_0: { arg_0: texts[i]!.slice(0, cut), arg_1: texts[i]!.slice(cut) } });
      expect(s.target).toBe(texts[i]!.slice(cut));
      expect(s.doc_hash).toBe(sha256(`{\n  "text": ${JSON.stringify(texts[i])}\n}`));
      expect(s.prompt_hash).toBe(sha256(texts[i]!.slice(0, cut)));
    });
    // save_results_aggregated: each task's hash is hash_string of the concatenated per-sample hashes
    for (const task of ['boolq', 'lambada_openai']) {
      expect(results.task_hashes[task]).toBe(sha256(samples[task]!.map((s) => s.doc_hash + s.prompt_hash + s.target_hash).join('')));
    }
  });

  test('an output path ending in .json names the results file <stem>_<date>.json, samples beside it', async () => {
    const out = await writeLmEvalFiles(join(tmp, 'flat', 'scores.json'), lmEvalResults({ model: MODEL, tasks: runs.slice(0, 1), started, seconds: 1 }), started);
    expect(out.results).toBe(join(tmp, 'flat', 'scores_2026-11-30T14-41-32.500000.json'));
    expect(out.samples).toEqual({ boolq: join(tmp, 'flat', 'samples_boolq_2026-11-30T14-41-32.500000.jsonl') });
  });

  test('without logged samples the task hashes are empty, as lm-eval leaves them', async () => {
    const run = await evaluate({ model: MODEL, task: 'boolq', data: { file: DATA.boolqMini }, limit: 2, thread: 'main', threads: 1 });
    const output = lmEvalResults({ model: MODEL, tasks: [run], started, seconds: 1 });
    expect(output.results['task_hashes']).toEqual({});
    expect(output.samples).toEqual({});
  });
});
