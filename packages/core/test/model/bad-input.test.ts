import { afterAll, describe, expect, test } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import {
  GraphProtoSchema, ModelProtoSchema, NodeProtoSchema, OperatorSetIdProtoSchema, TensorProtoSchema, ValueInfoProtoSchema,
} from 'onnx-buf';
import { checkExternalData, encodeOnnxModel, readOnnxModel } from '../../src/model/onnx-codec.js';
import { mapGraph } from '../../src/model/graph-map.js';
import { writePrunedFolder } from '../../src/prune/apply.js';
import { ActivationCapture } from '../../src/runtime/capture.js';
import { ModelSession } from '../../src/runtime/session.js';
import { SafetensorsFile } from '../../src/model/safetensors.js';
import { fixtureDir } from '@fairprune/fixtures';

const root = mkdtempSync(join(tmpdir(), 'fp-bad-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A model folder in `root` with the llama config/tokenizer and the given ONNX files from the fixture. */
function folderWith(name: string, onnxFiles: string[]): string {
  const dir = join(root, name);
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(fixtureDir('llama'), f), join(dir, f));
  for (const f of onnxFiles) copyFileSync(join(fixtureDir('llama'), 'onnx', f), join(dir, 'onnx', f));
  return dir;
}

const selection = new Map([[0, [1]], [1, [1]], [2, [1]], [3, [1]]]);

test('truncated .onnx: clear error naming the file, no output written', async () => {
  const dir = folderWith('truncated', []);
  const bytes = readFileSync(join(fixtureDir('llama'), 'onnx/model.onnx'));
  writeFileSync(join(dir, 'onnx/model.onnx'), bytes.subarray(0, Math.floor(bytes.length / 2)));
  expect(() => readOnnxModel(join(dir, 'onnx/model.onnx'))).toThrow(/truncated\/onnx\/model\.onnx is not a valid ONNX model/);
  await expect(ActivationCapture.create(join(dir, 'onnx/model.onnx'))).rejects.toThrow(/onnx\/model\.onnx/);
  await expect(ModelSession.create(join(dir, 'onnx/model.onnx'))).rejects.toThrow(/onnxruntime could not load .*truncated\/onnx\/model\.onnx/);
  expect(() => writePrunedFolder(dir, join(root, 'truncated-out'), { selection, mode: 'zero' })).toThrow(/not a valid ONNX model/);
  expect(existsSync(join(root, 'truncated-out'))).toBe(false);
});

describe('external data problems', () => {
  test('missing data file: error names the file and tensor, no output written', () => {
    const dir = folderWith('missing-data', ['model_external.onnx']);
    const path = join(dir, 'onnx/model_external.onnx');
    expect(() => checkExternalData(readOnnxModel(path), path)).toThrow(/External data file not found: .*model_external\.onnx_data \(needed by tensor "/);
    expect(() => writePrunedFolder(dir, join(root, 'missing-out'), { selection, mode: 'zero', onnxFiles: ['onnx/model_external.onnx'] })).toThrow(
      /External data file not found/,
    );
    expect(existsSync(join(root, 'missing-out'))).toBe(false);
    expect(readdirSync(root).filter((f) => f.includes('fairprune-tmp'))).toEqual([]);
  });

  test('short data file: error says how short', () => {
    const dir = folderWith('short-data', ['model_external.onnx']);
    const data = readFileSync(join(fixtureDir('llama'), 'onnx/model_external.onnx_data'));
    writeFileSync(join(dir, 'onnx/model_external.onnx_data'), data.subarray(0, data.length - 1000));
    const path = join(dir, 'onnx/model_external.onnx');
    expect(() => checkExternalData(readOnnxModel(path), path)).toThrow(/model_external\.onnx_data is too short: tensor ".*" needs/);
    expect(() => writePrunedFolder(dir, join(root, 'short-out'), { selection, mode: 'zero', onnxFiles: ['onnx/model_external.onnx'] })).toThrow(/too short/);
    expect(existsSync(join(root, 'short-out'))).toBe(false);
    return expect(ActivationCapture.create(path)).rejects.toThrow(/model_external\.onnx_data is too short/);
  });
});

test('GPT-2-like graph (single up projection, no GLU): error says what was found', () => {
  const tensor = (name: string, dims: number[]) =>
    create(TensorProtoSchema, { name, dataType: 1, dims: dims.map(BigInt), rawData: new Uint8Array(dims.reduce((a, b) => a * b, 1) * 4) });
  const node = (opType: string, input: string[], output: string[]) => create(NodeProtoSchema, { opType, input, output, name: `${opType}_${output[0]}` });
  const graph = create(GraphProtoSchema, {
    name: 'gpt2ish',
    input: [create(ValueInfoProtoSchema, { name: 'x' })],
    output: [create(ValueInfoProtoSchema, { name: 'y' })],
    initializer: [tensor('c_fc', [8, 32]), tensor('c_proj', [32, 8]), tensor('c_attn', [8, 24]), tensor('attn_proj', [8, 8])],
    node: [
      node('MatMul', ['x', 'c_attn'], ['qkv']),
      node('Slice', ['qkv'], ['v']),
      node('MatMul', ['v', 'attn_proj'], ['attn']),
      node('Add', ['x', 'attn'], ['h']),
      node('MatMul', ['h', 'c_fc'], ['fc']),
      node('Gelu', ['fc'], ['act']),
      node('MatMul', ['act', 'c_proj'], ['proj']),
      node('Add', ['h', 'proj'], ['y']),
    ],
  });
  const model = create(ModelProtoSchema, { irVersion: 8n, opsetImport: [create(OperatorSetIdProtoSchema, { version: 20n })], graph });
  const path = join(root, 'gpt2.onnx');
  writeFileSync(path, encodeOnnxModel(model));
  expect(() => mapGraph(readOnnxModel(path), path)).toThrow(/gpt2\.onnx: no GLU MLP found.*Found 4 MatMul\/Gemm with weight initializers and ops: MatMul×4, Add×2.*Gelu×1.*GPT-2-style/);
});

test('safetensors with a bad header names the file', () => {
  const path = join(root, 'bad.safetensors');
  writeFileSync(path, Buffer.from([200, 0, 0, 0, 0, 0, 0, 0, 123]));
  expect(() => new SafetensorsFile(path)).toThrow(/bad\.safetensors: header size 200 does not fit the file/);
});
