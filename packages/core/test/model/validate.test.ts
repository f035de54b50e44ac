import { afterAll, describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { NodeProtoSchema, TensorProtoSchema } from 'onnx-buf';
import { ALL_ARCHITECTURES, fixtureDir, ONNX_FORMS } from '@fairprune/fixtures';
import { openModelFolder } from '../../src/model/folder.js';
import { encodeOnnxModel, readOnnxModel } from '../../src/model/onnx-codec.js';
import { requireConsistentModel, validateModel } from '../../src/model/validate.js';
import { inspectModel } from '../../src/model/inspect.js';
import { runFairnessPruning } from '../../src/prune/run.js';
import { analyzeBias } from '../../src/bias/analyze.js';
import { readGenerationDefaults } from '../../src/runtime/generate.js';
import { encodeSafetensors, llamaConfig, llamaCopy, readRawSafetensors } from './model-copies.js';

const root = mkdtempSync(join(tmpdir(), 'fp-validate-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const validate = (dir: string) => {
  const folder = openModelFolder(dir);
  return validateModel(folder, folder.onnxPath!);
};

describe.each(ALL_ARCHITECTURES)('%s fixture', (arch) => {
  test.each(ONNX_FORMS)('%s: every format agrees, no findings', (form) => {
    const folder = openModelFolder(fixtureDir(arch), { onnxFile: form });
    const validation = validateModel(folder, folder.onnxPath!);
    expect(validation.findings).toEqual([]);
    expect(validation.map.layers.map((l) => l.index)).toEqual([0, 1, 2, 3]);
    expect(validation.contextLimit).toBe(folder.config.raw['max_position_embeddings'] ?? (folder.config.raw['text_config'] as Record<string, unknown>)?.['max_position_embeddings']);
  });
});

/** The llama safetensors with one change made by `edit` on an independently parsed header and data. */
function safetensors(edit: (header: Record<string, any>, data: Uint8Array) => { header?: unknown; data?: Uint8Array; text?: string } | void): Buffer {
  const raw = readRawSafetensors();
  const header = structuredClone(raw.header) as Record<string, any>;
  const changed = edit(header, raw.data) ?? {};
  return encodeSafetensors(changed.header ?? header, changed.data ?? raw.data, changed.text);
}

/** Offsets of the tensors in data order, as the fixture file lays them out. */
function ordered(header: Record<string, any>): [string, any][] {
  return Object.entries(header).filter(([k]) => k !== '__metadata__').sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
}

const malformed: [string, Record<string, string | Uint8Array>, RegExp][] = [
  ['config null', { 'config.json': 'null' }, /config\.json: expected a JSON object, found null/],
  ['config array', { 'config.json': '[1, 2]' }, /config\.json: expected a JSON object, found an array/],
  ['config not JSON', { 'config.json': '{"hidden_size": 64,' }, /config\.json is not valid JSON/],
  ['layers null', { 'config.json': llamaConfig({ num_hidden_layers: null }) }, /config\.json: field "num_hidden_layers" must be a positive integer, found null/],
  ['layers string', { 'config.json': llamaConfig({ num_hidden_layers: '4' }) }, /field "num_hidden_layers" must be a positive integer, found a string/],
  ['width fraction', { 'config.json': llamaConfig({ intermediate_size: 255.5 }) }, /field "intermediate_size" must be a positive integer, found a number 255\.5/],
  ['width negative', { 'config.json': llamaConfig({ intermediate_size: -256 }) }, /field "intermediate_size" must be a positive integer, found a number -256/],
  ['text_config array', { 'config.json': llamaConfig({ text_config: [] }) }, /field "text_config" must be an object, found an array/],
  ['eos list of strings', { 'config.json': llamaConfig({ eos_token_id: [1, 'x'] }) }, /"eos_token_id" must be an integer or a list of integers/],
  ['context string', { 'config.json': llamaConfig({ max_position_embeddings: '256' }) }, /field "max_position_embeddings" must be a positive integer/],
  ['tokenizer_config null', { 'tokenizer_config.json': 'null' }, /tokenizer_config\.json: expected a JSON object, found null/],
  ['tokenizer.json an array', { 'tokenizer.json': '[]' }, /tokenizer\.json: expected a JSON object, found an array/],
  ['tokenizer.json null', { 'tokenizer.json': 'null' }, /tokenizer\.json: expected a JSON object, found null/],
  ['shard index weight_map null', { 'model.safetensors.index.json': '{"weight_map": null}' }, /model\.safetensors\.index\.json: field "weight_map" must be an object, found null/],
  ['shard index entry a number', { 'model.safetensors.index.json': '{"weight_map": {"lm_head.weight": 3}}' }, /index\.json: weight_map entry "lm_head\.weight" must be a file name, found a number/],
  ['safetensors header null', { 'model.safetensors': encodeSafetensors(null, new Uint8Array(0), 'null') }, /model\.safetensors: header does not start with "\{"/],
  ['safetensors header not JSON', { 'model.safetensors': encodeSafetensors(null, new Uint8Array(0), '{"a":') }, /model\.safetensors: header is not valid JSON/],
  ['safetensors entry null', { 'model.safetensors': safetensors((h) => void (h['model.norm.weight'] = null)) }, /tensor "model\.norm\.weight": expected an object \{dtype, shape, data_offsets\}, found null/],
  ['safetensors unknown dtype', { 'model.safetensors': safetensors((h) => void (h['model.norm.weight'].dtype = 'Q4')) }, /tensor "model\.norm\.weight": unknown dtype "Q4"/],
  ['safetensors shape of strings', { 'model.safetensors': safetensors((h) => void (h['model.norm.weight'].shape = ['64'])) }, /"shape" must be a list of non-negative integers/],
  ['safetensors offsets null', { 'model.safetensors': safetensors((h) => void (h['model.norm.weight'].data_offsets = null)) }, /"data_offsets" must be \[begin, end\]/],
  ['safetensors metadata number', { 'model.safetensors': safetensors((h) => void (h['__metadata__'] = { format: 1 })) }, /"__metadata__" must be an object of strings/],
  ['safetensors shape × dtype ≠ bytes', { 'model.safetensors': safetensors((h) => void (h['model.norm.weight'].shape = [65])) }, /tensor "model\.norm\.weight" \[65\] F32 needs 260 bytes, its data_offsets .* hold 256/],
  [
    'safetensors overlapping ranges',
    {
      'model.safetensors': safetensors((h) => {
        // Two equal-sized tensors made to share one byte range; the freed range becomes trailing bytes.
        const [first, second] = ordered(h).filter(([, e]) => e.shape.join() === '64');
        second![1].data_offsets = [...first![1].data_offsets];
      }),
    },
    /overlap tensor/,
  ],
  ['safetensors trailing bytes', { 'model.safetensors': safetensors((_, data) => ({ data: Buffer.concat([data, Buffer.alloc(16)]) })) }, /16 trailing bytes after the last tensor/],
  [
    'safetensors gap',
    {
      'model.safetensors': safetensors((h, data) => {
        const last = ordered(h).at(-1)![1];
        last.data_offsets = [last.data_offsets[0] + 4, last.data_offsets[1] + 4];
        return { data: Buffer.concat([data, Buffer.alloc(4)]) };
      }),
    },
    /4 bytes before tensor ".*" \(offset \d+\.\.\d+\) belong to no tensor/,
  ],
  ['safetensors truncated', { 'model.safetensors': safetensors((_, data) => ({ data: data.subarray(0, data.length - 100) })) }, /run past the data section .* truncated file\?/],
  ['safetensors huge header size', { 'model.safetensors': Buffer.from([255, 255, 255, 255, 0, 0, 0, 0, 123]) }, /header size 4294967295 does not fit the file/],
  ['onnx truncated', { 'onnx/model.onnx': readFileSync(join(fixtureDir('llama'), 'onnx/model.onnx')).subarray(0, 100_000) }, /onnx\/model\.onnx is not a valid ONNX model/],
  ['onnx empty', { 'onnx/model.onnx': '' }, /onnx\/model\.onnx is not a valid ONNX model/],
];

describe('malformed files are errors naming the file and field or tensor', () => {
  test.each(malformed)('%s', (name, files, message) => {
    const dir = llamaCopy(root, `bad-${name.replace(/\W+/g, '-')}`, files);
    expect(() => {
      const folder = openModelFolder(dir);
      folder.tokenizer; // loaded lazily: a bad tokenizer_config.json shows here
      validateModel(folder, folder.onnxPath!);
    }).toThrow(message);
  });
});

test('generation_config.json of the wrong type is an error naming the file', () => {
  const dir = llamaCopy(root, 'generation-null', { 'generation_config.json': 'null' });
  expect(() => readGenerationDefaults(dir)).toThrow(/generation_config\.json: expected a JSON object, found null/);
  writeFileSync(join(dir, 'generation_config.json'), '{"max_length": 20');
  expect(() => readGenerationDefaults(dir)).toThrow(/generation_config\.json is not valid JSON/);
});

/** Layer 1's down projection weight replaced by int8 data behind a DequantizeLinear, as a quantizer would leave it. */
function dequantizedLayer1(): Uint8Array {
  const model = readOnnxModel(join(fixtureDir('llama'), 'onnx/model.onnx'));
  const graph = model.graph!;
  const matmul = graph.node.find((n) => n.name === '/m/model/layers.1/mlp/down_proj/MatMul')!;
  const weight = graph.initializer.find((t) => t.name === matmul.input[1])!;
  const values = new Float32Array(new Uint8Array(weight.rawData).buffer);
  const scale = Math.max(...values.map(Math.abs)) / 127;
  graph.initializer.push(
    create(TensorProtoSchema, { name: 'w_q', dataType: 3, dims: weight.dims, rawData: new Uint8Array(Int8Array.from(values, (v) => Math.round(v / scale)).buffer) }),
    create(TensorProtoSchema, { name: 'w_scale', dataType: 1, dims: [], rawData: new Uint8Array(new Float32Array([scale]).buffer) }),
  );
  graph.initializer.splice(graph.initializer.indexOf(weight), 1);
  const index = graph.node.indexOf(matmul);
  graph.node.splice(index, 0, create(NodeProtoSchema, { opType: 'DequantizeLinear', name: 'dq', input: ['w_q', 'w_scale'], output: ['w_deq'] }));
  matmul.input[1] = 'w_deq';
  return encodeOnnxModel(model);
}

test('a layer whose MLP weight goes through DequantizeLinear is an error naming the layer, never a renumbering', () => {
  const dir = llamaCopy(root, 'dequantized', { 'onnx/model.onnx': dequantizedLayer1() });
  expect(() => validate(dir)).toThrow(
    /onnx\/model\.onnx: the MLP of decoder layer 1 was not recognised: 10 weight MatMuls lie before the next recognised MLP where each layer has 4; "\/m\/model\/layers\.1\/mlp\/down_proj\/MatMul" reads its weight through DequantizeLinear/,
  );
  expect(() => inspectModel(dir)).toThrow(/MLP of decoder layer 1 was not recognised/);
});

test('an inline ONNX weight shorter than its dims is an error naming the tensor', () => {
  const model = readOnnxModel(join(fixtureDir('llama'), 'onnx/model.onnx'));
  const matmul = model.graph!.node.find((n) => n.name === '/m/model/layers.2/mlp/up_proj/MatMul')!;
  const weight = model.graph!.initializer.find((t) => t.name === matmul.input[1])!;
  weight.rawData = weight.rawData.slice(0, 1000);
  const dir = llamaCopy(root, 'short-inline', { 'onnx/model.onnx': encodeOnnxModel(model) });
  expect(() => validate(dir)).toThrow(new RegExp(`initializer "${weight.name}" \\[64, 256\\] needs 65536 bytes of data, holds 1000`));
});

/** Every safetensors tensor of one layer's up projection removed (header and bytes), keeping the file valid. */
function withoutTensor(name: string): Buffer {
  const raw = readRawSafetensors();
  const kept = ordered(raw.header).filter(([n]) => n !== name);
  const header: Record<string, unknown> = {};
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [n, e] of kept) {
    const bytes = raw.data.subarray(e.data_offsets[0], e.data_offsets[1]);
    header[n] = { ...e, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  return encodeSafetensors(header, Buffer.concat(parts));
}

const mismatches: [string, Record<string, string | Uint8Array>, RegExp][] = [
  ['config says 5 layers', { 'config.json': llamaConfig({ num_hidden_layers: 5 }) }, /config\.json says num_hidden_layers 5, .*onnx\/model\.onnx has 4 decoder layers/],
  ['config says a billion layers', { 'config.json': llamaConfig({ num_hidden_layers: 1e9 }) }, /says num_hidden_layers 1000000000, .* has 4 decoder layers/],
  ['config intermediate_size 128', { 'config.json': llamaConfig({ intermediate_size: 128 }) }, /intermediate_size 128 disagrees with the MLP widths of .*: layer 0: 256 \(config 128\)/],
  ['config hidden_size 32', { 'config.json': llamaConfig({ hidden_size: 32 }) }, /says hidden_size 32, .* has MLP outputs of width 64/],
  ['config vocab 800', { 'config.json': llamaConfig({ vocab_size: 800 }) }, /says vocab_size 800, .* output "logits" has 791 logits/],
  ['safetensors lacks a layer tensor', { 'model.safetensors': withoutTensor('model.layers.2.mlp.up_proj.weight') }, /model\.safetensors has no layers\.2\.mlp\.up_proj\.weight \(layer 2 of 4 in config\.json\)/],
  [
    'safetensors gate of layer 1 transposed',
    { 'model.safetensors': safetensors((h) => void (h['model.layers.1.mlp.gate_proj.weight'].shape = [64, 256])) },
    /"model\.layers\.1\.mlp\.gate_proj\.weight" is \[64, 256\], the graph's layer 1 needs \[256, 64\]/,
  ],
  ['safetensors layer 1 down stored as I32', { 'model.safetensors': safetensors((h) => void (h['model.layers.1.mlp.down_proj.weight'].dtype = 'I32')) }, /"model\.layers\.1\.mlp\.down_proj\.weight" is I32, expected F32, F16 or BF16/],
  [
    'safetensors layer index past the config',
    { 'model.safetensors': safetensors((h) => void ((h['model.layers.7.mlp.gate_proj.weight'] = h['model.layers.3.mlp.gate_proj.weight']), delete h['model.layers.3.mlp.gate_proj.weight'])) },
    /has tensor "model\.layers\.7\.mlp\.gate_proj\.weight" of layer 7, config\.json has 4 layers/,
  ],
  ['shard index names a missing tensor', { 'model.safetensors.index.json': JSON.stringify({ weight_map: { 'lm_head.weight': 'model.safetensors' } }) }, /index\.json lists tensor "lm_head\.weight" in model\.safetensors, but no shard holds it/],
];

describe('disagreeing files are findings: inspect shows them, analyze and prune refuse them before any work', () => {
  test.each(mismatches)('%s', async (name, files, message) => {
    const dir = llamaCopy(root, `mismatch-${name.replace(/\W+/g, '-')}`, files);
    const validation = validate(dir);
    expect(validation.findings.join('\n')).toMatch(message);
    expect(inspectModel(dir).warnings.join('\n')).toMatch(message);
    expect(() => requireConsistentModel(validation, false)).toThrow(/pass --allow-mismatch to proceed anyway/);
    expect(requireConsistentModel(validation, true)).toEqual({ allowMismatch: true, mismatches: validation.findings });
    const out = join(root, `out-${name.replace(/\W+/g, '-')}`);
    await expect(runFairnessPruning(dir, { outDir: out })).rejects.toThrow(message);
    await expect(analyzeBias(dir)).rejects.toThrow(/The model's files disagree/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(root).filter((f) => f.includes('fairprune-tmp'))).toEqual([]);
  });
});

test('--allow-mismatch proceeds and the report and plan record the disagreements', async () => {
  const dir = llamaCopy(root, 'allowed', { 'config.json': llamaConfig({ vocab_size: 800 }) });
  const { report } = await analyzeBias(dir, { allowMismatch: true, tokenActivations: false });
  expect(report.inputChecks).toEqual({ allowMismatch: true, mismatches: [expect.stringMatching(/vocab_size 800/)], allowNonfinite: false });
  const out = join(root, 'allowed-out');
  const result = await runFairnessPruning(dir, { outDir: out, allowMismatch: true, analyzeAfter: false });
  const plan = JSON.parse(readFileSync(result.files.plan, 'utf8')) as { options: Record<string, unknown> };
  expect(plan.options).toMatchObject({ allowMismatch: true, mismatches: [expect.stringMatching(/vocab_size 800/)] });
  // The fixture itself records that nothing was allowed.
  expect((await analyzeBias(fixtureDir('llama'), { tokenActivations: false })).report.inputChecks).toEqual({ allowMismatch: false, mismatches: [], allowNonfinite: false });
});

test('a refused run leaves the input folder byte for byte as it was', async () => {
  const dir = llamaCopy(root, 'untouched', { 'config.json': llamaConfig({ num_hidden_layers: 3 }) });
  const snapshot = () =>
    readdirSync(dir, { recursive: true })
      .map(String)
      .filter((f) => statSync(join(dir, f)).isFile())
      .sort()
      .map((f) => [f, createHash('sha256').update(readFileSync(join(dir, f))).digest('hex')]);
  const before = snapshot();
  await expect(runFairnessPruning(dir, { outDir: join(root, 'untouched-out') })).rejects.toThrow(/num_hidden_layers 3/);
  expect(snapshot()).toEqual(before);
  expect(existsSync(join(root, 'untouched-out'))).toBe(false);
});

test("a graph with a fixed sequence length sets the context limit, and pairs past it are refused before the weights load", async () => {
  const model = readOnnxModel(join(fixtureDir('llama'), 'onnx/model.onnx'));
  const ids = model.graph!.input.find((i) => i.name === 'input_ids')!;
  const type = ids.type!.value;
  if (type.case !== 'tensorType') throw new Error('input_ids is not a tensor input');
  type.value.shape!.dim[1]!.value = { case: 'dimValue', value: 8n };
  const dir = llamaCopy(root, 'fixed-length', { 'onnx/model.onnx': encodeOnnxModel(model) });
  const validation = validate(dir);
  expect(validation).toMatchObject({ contextLimit: 8, contextLimitSource: expect.stringMatching(/fixed sequence length of input_ids in .*fixed-length\/onnx\/model\.onnx/) });
  // The seed pair takes 16 tokens (the fixture's reference input_ids).
  await expect(analyzeBias(dir)).rejects.toThrow(/builtin:seed, pair 0: prompt a takes 16 tokens, more than the model's context of 8 \(the fixed sequence length of input_ids in /);
});

test('a graph whose layer order disagrees with its layer names is refused, not pruned on the wrong layers', () => {
  const model = readOnnxModel(join(fixtureDir('llama'), 'onnx/model.onnx'));
  // As if layers 1 and 2 had been exported in swapped order: graph position 1 carries layer 2's names.
  for (const node of model.graph!.node) {
    if (node.name.startsWith('/m/model/layers.1/')) node.name = node.name.replace('/layers.1/', '/layers.2/');
    else if (node.name.startsWith('/m/model/layers.2/')) node.name = node.name.replace('/layers.2/', '/layers.1/');
  }
  const dir = llamaCopy(root, 'swapped', { 'onnx/model.onnx': encodeOnnxModel(model) });
  expect(() => validate(dir)).toThrow(/decoder layer 1 \(in graph order\) has its MLP in "\/m\/model\/layers\.2\/mlp\/down_proj\/MatMul", named for layer 2/);
});

test('a plan made for other MLP widths is refused before the analysis', async () => {
  const plan = {
    format: 'fairprune.pruning-plan' as const,
    version: 1 as const,
    createdAt: '2026-01-01T00:00:00Z',
    tool: 'test',
    model: { path: '/elsewhere', weightsFile: 'onnx/model.onnx', weightsHash: 'x', numLayers: 4, hiddenSize: 64, intermediateSizes: [512, 512, 512, 512] },
    options: {},
    mode: 'remove' as const,
    layers: { 0: [300] },
    parameters: { before: 1, after: 1, affected: 0 },
    intermediateSizes: [511, 512, 512, 512],
  };
  const out = join(root, 'wide-plan-out');
  const progress: string[] = [];
  await expect(runFairnessPruning(fixtureDir('llama'), { outDir: out, plan, onProgress: (m) => progress.push(m) })).rejects.toThrow(
    /Pruning plan given was made for MLP widths \[512, 512, 512, 512\], this model has \[256, 256, 256, 256\]/,
  );
  expect(progress.filter((m) => m.startsWith('scoring'))).toEqual([]);
  expect(existsSync(out)).toBe(false);
});

test('a folder entry named like a shard but not a file is an error naming it', () => {
  const dir = llamaCopy(root, 'shard-dir');
  mkdirSync(join(dir, 'extra.safetensors'));
  expect(() => validate(dir)).toThrow(/Cannot read .*shard-dir\/extra\.safetensors: EISDIR/);
});
