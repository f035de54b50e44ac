import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { renderCardEvalSection } from '@fairprune/core';
import { sanitizeModelName } from '@fairprune/eval';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES } from '@fairprune/fixtures';
import { runCli } from './run-cli.js';

/** `fairprune generate` and `fairprune eval` on the bundled demo model, checked against the HF references. */
const DEMO = join(import.meta.dirname, '../demo');
const refs = JSON.parse(readFileSync(join(FIXTURES, 'llama/refs/refs.json'), 'utf8')) as {
  prompts: { text: string; input_ids: number[]; greedy_ids: number[]; beam5_ids: number[]; beam5_article_ids: number[]; beam5_article_text: string }[];
  eval: { boolq: { pred: number; label: number }[] };
};


let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'fairprune-cli-eval-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test('the demo model is the Llama fixture (same config and weights)', () => {
  for (const file of ['config.json', 'tokenizer.json', 'model.safetensors', 'onnx/model.onnx', 'onnx/model_kv.onnx']) {
    expect(readFileSync(join(DEMO, 'model', file)).equals(readFileSync(join(FIXTURES, 'llama', file)))).toBe(true);
  }
});

test('generate --json: 5 beams, max_length 50, on both ONNX forms = HF beam5_ids', async () => {
  const prompts = refs.prompts.slice(0, 2);
  for (const onnx of ['onnx/model.onnx', 'onnx/model_kv.onnx']) {
    const { code, stdout, stderr } = await runCli('generate', join(DEMO, 'model'), '--onnx-file', onnx, '--prompt', ...prompts.map((p) => p.text), '--json');
    expect(code).toBe(0);
    const rows = JSON.parse(stdout) as { prompt: string; ids: number[]; text: string }[];
    expect(rows.map((r) => r.prompt)).toEqual(prompts.map((p) => p.text));
    expect(rows.map((r) => r.ids)).toEqual(prompts.map((p) => p.beam5_ids));
  }
});

// Pair 1's first prompt is the case where n-gram blocking, not early stopping, changes HF's result.
test.each([0, 2])('generate with the article settings prints the HF continuation (prompt %i)', async (index) => {
  const prompt = refs.prompts[index]!;
  const { code, stdout, stderr } = await runCli('generate', join(DEMO, 'model'), '--prompt', prompt.text, '--num-beams', '5', '--max-length', '50', '--early-stopping', '--no-repeat-ngram-size', '2');
  expect(code).toBe(0);
  expect(stdout).toBe(`${prompt.text}\n  →${prompt.beam5_article_text.replace('<|end_of_text|>', '')}\n`);
});

test('generate greedy with --max-new-tokens = HF greedy_ids', async () => {
  const { code, stdout, stderr } = await runCli('generate', join(DEMO, 'model'), '--prompt', refs.prompts[1]!.text, '--num-beams', '1', '--max-new-tokens', '24', '--json');
  expect(code).toBe(0);
  expect((JSON.parse(stdout) as { ids: number[] }[])[0]!.ids).toEqual(refs.prompts[1]!.greedy_ids);
});

test('generate rejects a bad --early-stopping value', async () => {
  const { code, stdout, stderr } = await runCli('generate', join(DEMO, 'model'), '--prompt', 'x', '--early-stopping', 'sometimes');
  expect(code).toBe(2);
  expect(stderr).toMatch(/option '--early-stopping \[mode\]' argument 'sometimes' is invalid. expected true, false or never/);
});

test('eval --task --data FILE --json --out (the single-task form) prints and writes the lm-eval results object', async () => {
  const out = join(tmp, 'results', 'boolq.json');
  const { code, stdout, stderr } = await runCli('eval', join(DEMO, 'model'), '--task', 'boolq', '--data', join(DEMO, 'data/boolq-mini.jsonl'), '--limit', '32', '--batch-size', '8', '--json', '--out', out);
  expect(code).toBe(0);
  const printed = JSON.parse(stdout) as { results: { boolq: Record<string, number> }; config: Record<string, unknown>; 'n-samples': unknown };
  const expected = refs.eval.boolq.filter((r) => r.pred === r.label).length / 32;
  expect(printed.results.boolq['acc,none']).toBeCloseTo(expected, 12);
  expect(printed.results.boolq['acc_stderr,none']).toBeCloseTo(Math.sqrt((expected * (1 - expected)) / 31), 12);
  expect(printed.config).toMatchObject({ bos: false, limit: 32, batch_size: 8 });
  expect(printed['n-samples']).toEqual({ boolq: { original: 64, effective: 32 } });
  expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(printed);
  expect(stderr).toMatch(/boolq .* 32\/32 docs/);
});

describe('eval --tasks with --output-path and --log-samples', () => {
  let model: string;
  beforeAll(() => {
    // A model folder whose README.md is a fairprune card (as `prune` writes it), to see eval fill in its section.
    model = join(tmp, 'carded-model');
    cpSync(join(DEMO, 'model'), model, { recursive: true });
    writeFileSync(join(model, 'README.md'), `---\nbase_model: "demo"\n---\n\n# carded-model\n\n${renderCardEvalSection([], 'carded-model')}\n\n## Limitations\n`);
  });

  test('writes results_<date>.json and a samples file per task under <output>/<model>/, and updates the card', async () => {
    const card = readFileSync(join(model, 'README.md'), 'utf8');
    const output = join(tmp, 'lm-eval');
    const { code, stdout, stderr } = await runCli(
      'eval', model, '--tasks', 'boolq,lambada_openai',
      '--data', `boolq=${join(DEMO, 'data/boolq-mini.jsonl')}`, '--data', `lambada_openai=${join(DEMO, 'data/lambada-mini.jsonl')}`,
      '--limit', '4', '--bootstrap-iters', '10', '--output-path', output, '--log-samples',
    );
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/^boolq: acc [\d.]+ ± [\d.]+ {2}\(4 docs, no BOS, .*\)\nlambada_openai: acc [\d.]+ ± [\d.]+, perplexity [\d.]+ ± [\d.]+ {2}\(4 docs/);
    const dir = join(output, sanitizeModelName(model));
    const files = readdirSync(dir).sort();
    expect(files).toHaveLength(3);
    expect(files[0]).toMatch(/^results_\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d(\.\d{6})?\.json$/);
    const date = files[0]!.slice('results_'.length, -'.json'.length);
    expect(files.slice(1)).toEqual([`samples_boolq_${date}.jsonl`, `samples_lambada_openai_${date}.jsonl`]);
    const results = JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as { results: Record<string, Record<string, number>> };
    expect(Object.keys(results.results)).toEqual(['boolq', 'lambada_openai']);
    expect(readFileSync(join(dir, files[2]!), 'utf8').trim().split('\n')).toHaveLength(4);
    // the card: only its evaluation section changed, and it holds the printed numbers
    const updated = readFileSync(join(model, 'README.md'), 'utf8');
    const outside = (text: string) => text.replace(/<!-- fairprune:eval:start -->[\s\S]*<!-- fairprune:eval:end -->/, '');
    expect(outside(updated)).toBe(outside(card));
    expect(updated).toContain(`| boolq | acc | ${results.results.boolq!['acc,none']!.toFixed(4)} | ${results.results.boolq!['acc_stderr,none']!.toFixed(4)} | 4 of 64 | no |`);
    expect(updated).toContain(`| lambada_openai | perplexity | ${results.results.lambada_openai!['perplexity,none']!.toFixed(4)} |`);
    expect(stderr).toContain(`updated the evaluation section of ${join(model, 'README.md')}`);
  });

  test('the report finds the results file under the folder it is given', async () => {
    const { loadReportData } = await import('../src/report/load.js');
    const { data, files } = loadReportData({ after: join(tmp, 'lm-eval') });
    expect(Object.keys(data.evaluation!.after!.results)).toEqual(['boolq', 'lambada_openai']);
    expect(files.some((f) => /results_.*\.json$/.test(f))).toBe(true);
  });

  test('a bare --data FILE with two tasks, an unknown task, --log-samples without a place: usage errors naming the flag', async () => {
    const bare = await runCli('eval', model, '--tasks', 'boolq,lambada_openai', '--data', join(DEMO, 'data/boolq-mini.jsonl'));
    expect(bare.code).toBe(2);
    expect(bare.stderr).toMatch(/--data .*boolq-mini.jsonl: with several tasks, name the task \(--data TASK=FILE/);
    const unknown = await runCli('eval', model, '--tasks', 'boolq,hellaswag');
    expect(unknown.code).not.toBe(0);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--tasks <list>.*unknown "hellaswag"; expected a comma-separated list of lambada_openai, lambada_standard, boolq/);
    const noPlace = await runCli('eval', model, '--task', 'boolq', '--log-samples');
    expect(noPlace.code).toBe(2);
    expect(noPlace.stderr).toMatch(/--log-samples .* needs --output-path \(or --out\)/);
    const none = await runCli('eval', model);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/required option '--tasks <list>'/);
  });
});

test('eval with hub data offline and nothing cached names the dataset, the file and the Hugging Face cache', async () => {
  vi.stubEnv('HF_HUB_CACHE', join(tmp, 'empty-cache'));
  const { code, stderr } = await runCli('eval', join(DEMO, 'model'), '--task', 'lambada_openai', '--offline');
  vi.unstubAllEnvs();
  expect(code).toBe(1);
  expect(stderr).toContain(`fairprune: dataset EleutherAI/lambada_openai is not in the Hugging Face cache ${join(tmp, 'empty-cache', 'datasets--EleutherAI--lambada_openai')}`);
  expect(stderr).toContain('missing data/lambada_test.jsonl');
});
