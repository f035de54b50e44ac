import { afterAll, describe, expect, test } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeOnnxModel, readOnnxModel } from '@fairprune/core';
import { DATA, fixtureDir } from '@fairprune/fixtures';
import { runCli } from './run-cli.js';

/**
 * Hostile inputs through the commands: each is refused with one line naming the file and field (or layer, tensor,
 * limit), exit code 1, and nothing written; the flags that proceed anyway record that they did.
 */
const tmp = mkdtempSync(join(tmpdir(), 'fairprune-hostile-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const llama = fixtureDir('llama');

let copies = 0;
/** A copy of fixtures/llama with `files` written over it; the fixture is only read. */
function llamaCopy(files: Record<string, string | Uint8Array> = {}): string {
  const dir = join(tmp, `model-${copies++}`);
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'model.safetensors', 'onnx/model.onnx']) {
    copyFileSync(join(llama, f), join(dir, f));
  }
  for (const [path, content] of Object.entries(files)) writeFileSync(join(dir, path), content);
  return dir;
}

let files = 0;
function file(content: string, name = 'input.json'): string {
  const dir = join(tmp, `file-${files++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, name), content);
  return join(dir, name);
}

const config = (changes: Record<string, unknown>) => JSON.stringify({ ...JSON.parse(readFileSync(join(llama, 'config.json'), 'utf8')), ...changes });

/** Runs a command expected to fail; asserts exit 1, the message, and that `out` was not created. */
async function refused(out: string, message: RegExp, ...args: string[]): Promise<void> {
  const { code, stderr } = await runCli(...args);
  expect(stderr).toMatch(message);
  expect(stderr).not.toMatch(/TypeError|RangeError|Cannot read properties/);
  expect(code).toBe(1);
  expect(existsSync(out), `${out} was written`).toBe(false);
}

describe('pairs files', () => {
  test.each([
    ['null', 'null', /input\.json, pair 0: expected an object \{a, b, category\?, negative\?, positive\?\}, found null/],
    ['a string', '"some text"', /input\.json, pair 0: expected an object .*, found a string/],
    ['pairs null', '{"pairs": null}', /input\.json: field "pairs" must be an array of pairs, found null/],
    ['a number where text belongs', '[{"a": 1, "b": "x"}]', /input\.json, pair 0: "a" must be a non-empty string/],
    ['continuations of numbers', '[{"a": "x y", "b": "x z", "negative": [1], "positive": ["a"]}]', /"negative" must be a non-empty array of non-empty strings/],
    ['broken JSON', '[{"a": "x"', /input\.json is not valid JSON/],
    ['broken JSON Lines', '{"a": "x", "b": "y"}\n{"a": ', /input\.json, line 2: not valid JSON/],
  ])('%s', async (_, content, message) => {
    const out = join(tmp, `pairs-out-${files}`);
    await refused(out, message, 'analyze', llama, '--pairs', file(content), '--out', out);
  });

  test('a one-line JSON Lines file works like a longer one, measured against the optiPfair reference', async () => {
    const refs = JSON.parse(readFileSync(join(llama, 'refs/refs.json'), 'utf8')) as { prompts: { text: string }[]; optipfair_bias_metrics_pair0: { overall_mean_difference: number } };
    const [a, b] = [refs.prompts[0]!.text, refs.prompts[1]!.text];
    const one = file(`${JSON.stringify({ a, b })}\n`, 'one.jsonl');
    const two = file(`${JSON.stringify({ a, b })}\n${JSON.stringify({ a, b })}\n`, 'two.jsonl');
    for (const [path, count] of [[one, 1], [two, 2]] as const) {
      const { code, stdout, stderr } = await runCli('analyze', llama, '--pairs', path, '--json');
      expect(code, stderr).toBe(0);
      const report = JSON.parse(stdout) as { pairs: unknown[]; metric: { overall: { mean_difference: number } } };
      expect(report.pairs).toHaveLength(count);
      expect(Math.abs(report.metric.overall.mean_difference / refs.optipfair_bias_metrics_pair0.overall_mean_difference - 1)).toBeLessThan(1e-4);
    }
  });
});

describe('pruning plans', () => {
  const plan = {
    format: 'fairprune.pruning-plan',
    version: 1,
    createdAt: '2026-01-01T00:00:00Z',
    tool: 'test',
    model: { path: llama, weightsFile: 'onnx/model.onnx', weightsHash: 'x', numLayers: 4, hiddenSize: 64, intermediateSizes: [256, 256, 256, 256] },
    options: {},
    mode: 'remove',
    layers: { 0: [1], 1: [1], 2: [1], 3: [1] },
    parameters: { before: 1, after: 1, affected: 0 },
    intermediateSizes: [255, 255, 255, 255],
  };
  test.each([
    ['null', null, /Pruning plan .*input\.json: the file: expected a JSON object, found null/],
    ['an array', [plan], /Pruning plan .*input\.json: the file: expected a JSON object, found an array/],
    ['no parameters', { ...plan, parameters: undefined }, /Pruning plan .*: the file: field "parameters" is missing \(expected an object\)/],
    ['parameters of strings', { ...plan, parameters: { before: '1', after: 1, affected: 0 } }, /"parameters": field "before" must be an integer, found a string/],
    ['a layer of null', { ...plan, layers: { 0: null } }, /layer 0: expected an array of neuron indices, found null/],
    ['widths of null', { ...plan, model: { ...plan.model, intermediateSizes: [null, 256, 256, 256] } }, /"model\.intermediateSizes" must list positive integers/],
    ['model null', { ...plan, model: null }, /the file: field "model" must be an object, found null/],
  ])('%s', async (_, value, message) => {
    const out = join(tmp, `plan-out-${files}`);
    await refused(out, message, 'prune', llama, '--plan', file(JSON.stringify(value)), '--out', out);
  });
});

describe('eval data', () => {
  test.each([
    ['a null line', 'null\n', /input\.jsonl:1: expected a JSON object per line/],
    ['an array line', '[]\n', /input\.jsonl:1: expected a JSON object per line/],
    ['fields of the wrong type', '{"question": 5, "passage": null, "label": 1}\n', /BoolQ needs string fields "passage" and "question"/],
    ['broken JSON', '{"question": \n', /input\.jsonl:1: not valid JSON/],
  ])('%s', async (_, content, message) => {
    const out = join(tmp, `eval-out-${files}.json`);
    await refused(out, message, 'eval', llama, '--task', 'boolq', '--data', file(content, 'input.jsonl'), '--out', out);
  });
});

describe('report inputs', () => {
  const reportCase = (name: string, content: unknown) => {
    const dir = join(tmp, `report-in-${files++}`);
    mkdirSync(dir);
    writeFileSync(join(dir, name), JSON.stringify(content));
    return dir;
  };
  test.each([
    ['bias-report.json', null, /report: .*bias-report\.json: the file must be an object, found null/],
    ['bias-report.json', [], /report: .*bias-report\.json: the file must be an object, found an array/],
    ['bias-report.json', { metric: { overall: { mean_difference: null }, layers: {} } }, /bias-report\.json: field "metric\.overall\.mean_difference" must be a number, found null/],
    ['bias-report.json', { behaviour: [{ a: 'x', b: 'y', logOddsA: '1', logOddsB: 1, gap: 0 }] }, /field "behaviour\[0\]\.logOddsA" must be a number, found a string/],
    ['pruning-plan.json', { parameters: { before: 'x', after: 1 } }, /pruning-plan\.json: field "parameters\.before" must be a number, found a string/],
    ['neuron-scores.json', { layers: null }, /neuron-scores\.json: field "layers" must be an array, found null/],
    ['neuron-scores.json', { layers: [{ layer: 0, bias: [null], importance: [], pruned: [] }] }, /field "layers\[0\]\.bias\[0\]" must be a number, found null/],
    ['token-activations.json', { key: 'k', width: 2, a: null, b: null }, /token-activations\.json: field "a" must be an object, found null/],
  ])('%s: %j', async (name, content, message) => {
    const out = join(tmp, `report-${files}.html`);
    await refused(out, message, 'report', '--after', reportCase(name, content), '--out', out);
  });
});

describe('model files through the commands', () => {
  test('config.json null: prune and eval refuse naming the file', async () => {
    const dir = llamaCopy({ 'config.json': 'null' });
    const out = join(tmp, 'config-null-out');
    await refused(out, /config\.json: expected a JSON object, found null/, 'prune', dir, '--out', out);
    await refused(`${out}.json`, /config\.json: expected a JSON object, found null/, 'eval', dir, '--task', 'boolq', '--data', DATA.boolqMini, '--out', `${out}.json`);
  });

  test('disagreeing files: refused by analyze, prune and eval unless --allow-mismatch, which the outputs record', async () => {
    const dir = llamaCopy({ 'config.json': config({ vocab_size: 800 }) });
    const out = join(tmp, 'mismatch-out');
    const message = /config\.json says vocab_size 800, .*model\.onnx output "logits" has 791 logits\n.*pass --allow-mismatch/s;
    const inspected = await runCli('inspect', dir);
    expect(inspected.code).toBe(0);
    expect(inspected.stdout).toMatch(/warning: .*config\.json says vocab_size 800, .* has 791 logits/);
    await refused(out, message, 'analyze', dir, '--out', out);
    await refused(out, message, 'prune', dir, '--out', out);
    await refused(`${out}.json`, message, 'eval', dir, '--task', 'boolq', '--data', DATA.boolqMini, '--limit', '2', '--out', `${out}.json`);
    const analyzed = await runCli('analyze', dir, '--allow-mismatch', '--out', out);
    expect(analyzed.code, analyzed.stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(out, 'bias-report.json'), 'utf8')) as { inputChecks: unknown };
    expect(report.inputChecks).toEqual({ allowMismatch: true, mismatches: [expect.stringMatching(/vocab_size 800/)], allowNonfinite: false });
    const evaluated = await runCli('eval', dir, '--task', 'boolq', '--data', DATA.boolqMini, '--limit', '2', '--allow-mismatch', '--json');
    expect(evaluated.code, evaluated.stderr).toBe(0);
    expect((JSON.parse(evaluated.stdout) as { config: Record<string, unknown> }).config['allow_mismatch']).toEqual({ mismatches: [expect.stringMatching(/vocab_size 800/)] });
  });
});

/** The fixture with one weight of layer 2's up projection set to NaN: from there on, activations and logits are NaN. */
function nanModel(): string {
  const model = readOnnxModel(join(llama, 'onnx/model.onnx'));
  const matmul = model.graph!.node.find((n) => n.name === '/m/model/layers.2/mlp/up_proj/MatMul')!;
  const weight = model.graph!.initializer.find((t) => t.name === matmul.input[1])!;
  const data = new Uint8Array(weight.rawData);
  new DataView(data.buffer).setFloat32(5 * 4, Number.NaN, true);
  weight.rawData = data;
  return llamaCopy({ 'onnx/model.onnx': encodeOnnxModel(model) });
}

describe('non-finite numbers', () => {
  const dir = nanModel();

  test('analyze stops naming layer, component and tensor; --allow-nonfinite proceeds and the report says so', async () => {
    const out = join(tmp, 'nan-analyze');
    await refused(
      out,
      /NaN in the activations of layer 2, (up_proj|glu_product|down_proj|mlp_output) \(graph tensor "[^"]+"\), prompt \d .* Pass --allow-nonfinite to proceed anyway/,
      'analyze', dir, '--out', out,
    );
    const { code, stderr } = await runCli('analyze', dir, '--allow-nonfinite', '--out', out);
    expect(code, stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(out, 'bias-report.json'), 'utf8')) as { inputChecks: { allowNonfinite: boolean } };
    expect(report.inputChecks.allowNonfinite).toBe(true);
  });

  test('analyze --streamed and eval --streamed stop the same way (the layer-by-layer path checks every capture and the logits)', async () => {
    const out = join(tmp, 'nan-analyze-streamed');
    await refused(
      out,
      /NaN in the activations of layer 2, (up_proj|glu_product|down_proj|mlp_output) \(graph tensor "[^"]+"\), prompt \d .* Pass --allow-nonfinite to proceed anyway/,
      'analyze', dir, '--streamed', '--out', out,
    );
    const { code, stderr } = await runCli('analyze', dir, '--streamed', '--allow-nonfinite', '--out', out);
    expect(code, stderr).toBe(0);
    const evalOut = join(tmp, 'nan-eval-streamed.json');
    await refused(evalOut, /NaN in logits output "logits" of sequence \d+/, 'eval', dir, '--streamed', '--task', 'boolq', '--data', DATA.boolqMini, '--limit', '4', '--out', evalOut);
  });

  test('eval stops instead of printing an accuracy from NaN logits; generate stops too', async () => {
    const out = join(tmp, 'nan-eval.json');
    await refused(out, /NaN in logits output "logits"/, 'eval', dir, '--task', 'boolq', '--data', DATA.boolqMini, '--limit', '4', '--out', out);
    const generated = await runCli('generate', dir, '--prompt', 'The doctor said', '--num-beams', '1', '--max-new-tokens', '3');
    expect(generated.code).toBe(1);
    expect(generated.stderr).toMatch(/NaN in logits output "logits"/);
    expect(generated.stdout).toBe('');
  });
});

describe('context length (config.json max_position_embeddings 256)', () => {
  test('pairs longer than the context are refused before the model loads, naming the limit', async () => {
    const long = `The doctor said that ${'very '.repeat(300)}`;
    const pairs = file(JSON.stringify([{ a: `${long}he`, b: `${long}she` }]));
    const out = join(tmp, 'long-pairs');
    await refused(out, /input\.json, pair 0: prompt a takes \d+ tokens, more than the model's context of 256 \(config\.json max_position_embeddings\)/, 'analyze', llama, '--pairs', pairs, '--out', out);
  });

  test('generate refuses a prompt plus new tokens past the context', async () => {
    const { code, stderr, stdout } = await runCli('generate', llama, '--prompt', 'The doctor said', '--num-beams', '1', '--max-new-tokens', '300');
    expect(code).toBe(1);
    expect(stderr).toMatch(/prompt 0: a \d+-token prompt generating up to \d+ tokens in all exceeds the model's context of 256 \(config\.json max_position_embeddings\)/);
    expect(stdout).toBe('');
  });

  test('eval cuts a too-long document from the left, as lm-eval does, and says so', async () => {
    const rows = readFileSync(DATA.boolqMini, 'utf8').trim().split('\n').slice(0, 2);
    const long = JSON.parse(rows[0]!) as Record<string, unknown>;
    long['passage'] = `${'Ottawa is a large city. '.repeat(60)}Ottawa is the capital of Canada.`;
    const data = file(`${JSON.stringify(long)}\n${rows[1]}\n`, 'long.jsonl');
    const { code, stdout, stderr } = await runCli('eval', llama, '--task', 'boolq', '--data', data, '--json');
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/1 of 2 documents are longer than the model's context of 256 tokens; their context is cut from the left, as lm-eval does/);
    expect((JSON.parse(stdout) as { config: { truncated_docs: number } }).config.truncated_docs).toBe(1);
  });
});
