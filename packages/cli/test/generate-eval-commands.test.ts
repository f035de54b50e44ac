import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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

test('eval --json --out on the bundled BoolQ mini set: accuracy of the reference predictions', async () => {
  const out = join(tmp, 'results', 'boolq.json');
  const { code, stdout, stderr } = await runCli('eval', join(DEMO, 'model'), '--task', 'boolq', '--data', join(DEMO, 'data/boolq-mini.jsonl'), '--limit', '32', '--batch-size', '8', '--json', '--out', out);
  expect(code).toBe(0);
  const printed = JSON.parse(stdout) as { results: { boolq: { acc: number; acc_stderr: number } }; config: Record<string, unknown> };
  const expected = refs.eval.boolq.filter((r) => r.pred === r.label).length / 32;
  expect(printed.results.boolq.acc).toBeCloseTo(expected, 12);
  expect(printed.config).toMatchObject({ bos: false, limit: 32, batch_size: 8 });
  expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(printed);
  expect(stderr).toMatch(/boolq .* 32\/32 docs/);
});

test('eval with hub data offline and nothing cached names the dataset, the file and the Hugging Face cache', async () => {
  vi.stubEnv('HF_HUB_CACHE', join(tmp, 'empty-cache'));
  const { code, stderr } = await runCli('eval', join(DEMO, 'model'), '--task', 'lambada_openai', '--offline');
  vi.unstubAllEnvs();
  expect(code).toBe(1);
  expect(stderr).toContain(`fairprune: dataset EleutherAI/lambada_openai is not in the Hugging Face cache ${join(tmp, 'empty-cache', 'datasets--EleutherAI--lambada_openai')}`);
  expect(stderr).toContain('missing data/lambada_test.jsonl');
});
