import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { AttributeProtoSchema, AttributeProto_AttributeType, NodeProtoSchema } from 'onnx-buf';
import { scanWeights } from '@fairprune/native-cuda';
import { encodeOnnxModel, readOnnxModel, TensorDataReader } from '../../src/model/onnx-codec.js';
import { mapGraph } from '../../src/model/graph-map.js';
import { OnnxWeights, SafetensorsWeights } from '../../src/model/weights.js';
import { ONNX_BFLOAT16, decodeToFloat32, f32ToBf16 } from '../../src/model/dtype.js';
import { ActivationCapture } from '../../src/runtime/capture.js';
import { ModelSession } from '../../src/runtime/session.js';
import { writePrunedFolder } from '../../src/prune/apply.js';
import { fixtureDir, maxAbsDiff, readRefData, readRefs } from '@fairprune/fixtures';

const root = mkdtempSync(join(tmpdir(), 'fp-dtypes-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const refsFile = () => readRefs('llama');

/** Llama fixture with every MLP weight stored as bf16 and a Cast to float after it (how bf16 checkpoints are often exported). */
function writeBf16Folder(dir: string): void {
  const model = readOnnxModel(join(fixtureDir('llama'), 'onnx/model.onnx'));
  const map = mapGraph(model, 'llama');
  const names = new Set(map.layers.flatMap((l) => [l.gate.name, l.up.name, l.down.name]));
  const casts = [];
  for (const tensor of model.graph!.initializer) {
    if (!names.has(tensor.name)) continue;
    const values = decodeToFloat32(tensor.rawData, 'f32');
    const bits = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) bits[i] = f32ToBf16(values[i]!);
    const original = tensor.name;
    tensor.name = `${original}_bf16`;
    tensor.dataType = ONNX_BFLOAT16;
    tensor.rawData = new Uint8Array(bits.buffer);
    casts.push(
      create(NodeProtoSchema, {
        opType: 'Cast', name: `cast_${original}`, input: [tensor.name], output: [original],
        attribute: [create(AttributeProtoSchema, { name: 'to', type: AttributeProto_AttributeType.INT, i: 1n })],
      }),
    );
  }
  model.graph!.node.unshift(...casts);
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(fixtureDir('llama'), f), join(dir, f));
  writeFileSync(join(dir, 'onnx/model.onnx'), encodeOnnxModel(model));
}

async function columnMaxAbs(weights: OnnxWeights | SafetensorsWeights, layer: number): Promise<Float32Array> {
  const { gate, up, neuronAxis } = weights.layerMlp(layer);
  const [g, u] = [await scanWeights(gate, { axis: neuronAxis }), await scanWeights(up, { axis: neuronAxis })];
  return g.maxAbs.map((v, i) => v + u.maxAbs[i]!);
}

describe('weight matrices for the native scan equal the reference importance (maw)', () => {
  test('fp32 ONNX ([in, out], cols) and safetensors ([out, in], rows)', async () => {
    const maw = refsFile().maw_importance;
    const onnx = new OnnxWeights(join(fixtureDir('llama'), 'onnx/model_external.onnx'));
    const st = new SafetensorsWeights([join(fixtureDir('llama'), 'model.safetensors')]);
    try {
      expect(onnx.layerMlp(0).neuronAxis).toBe('cols');
      expect(st.layerMlp(0).neuronAxis).toBe('rows');
      for (let layer = 0; layer < 4; layer++) {
        expect(maxAbsDiff(await columnMaxAbs(onnx, layer), maw[layer]!)).toBeLessThanOrEqual(1e-6);
        expect(maxAbsDiff(await columnMaxAbs(st, layer), maw[layer]!)).toBeLessThanOrEqual(1e-6);
      }
    } finally {
      onnx.close();
      st.close();
    }
  });

  test('Phi-3 fused gate_up is split into gate and up halves the same way in ONNX and safetensors', async () => {
    const onnx = new OnnxWeights(join(fixtureDir('phi3'), 'onnx/model_dynamo.onnx'));
    const st = new SafetensorsWeights([join(fixtureDir('phi3'), 'model.safetensors')]);
    try {
      const a = onnx.layerMlp(2);
      expect([a.gate.rows, a.gate.cols]).toEqual([64, 256]);
      expect(maxAbsDiff(await columnMaxAbs(onnx, 2), await columnMaxAbs(st, 2))).toBeLessThanOrEqual(1e-6);
    } finally {
      onnx.close();
      st.close();
    }
  });
});

describe('fp16 (llama/onnx/model_fp16.onnx)', () => {
  const path = join(fixtureDir('llama'), 'onnx/model_fp16.onnx');
  test('map sees f16 weights and activations; scan matches maw to fp16 precision', async () => {
    const weights = new OnnxWeights(path);
    try {
      expect(weights.map.activationDtype).toBe('f16');
      expect(weights.map.layers[0]!.gate.dtype).toBe('f16');
      const maw = refsFile().maw_importance;
      for (let layer = 0; layer < 4; layer++) {
        const ours = await columnMaxAbs(weights, layer);
        ours.forEach((v, i) => expect(Math.abs(v - maw[layer]![i]!)).toBeLessThanOrEqual(2e-3 * maw[layer]![i]!));
      }
    } finally {
      weights.close();
    }
  });

  test('capture casts to float32 and stays within fp16 error of the fp32 references', async () => {
    const capture = await ActivationCapture.create(path, { threads: 1 });
    try {
      const prompt = refsFile().prompts[0]!;
      const got = await capture.capture(prompt.input_ids);
      for (const [key, ref] of Object.entries(prompt.activations)) {
        const expected = readRefData('llama', ref);
        const scale = expected.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        expect(got.get(key)!.data).toBeInstanceOf(Float32Array);
        expect(maxAbsDiff(got.get(key)!.data, expected), key).toBeLessThanOrEqual(2e-2 * Math.max(1, scale));
      }
    } finally {
      await capture.release();
    }
  });

  test('remove and zero give the same fp16 logits', async () => {
    const selection = new Map([[0, [3, 9, 200]], [1, [0, 1, 2]], [2, [100, 101, 255]], [3, [7, 8, 9]]]);
    const removed = join(root, 'fp16-removed');
    const zeroed = join(root, 'fp16-zeroed');
    writePrunedFolder(fixtureDir('llama'), removed, { selection, mode: 'remove', onnxFiles: ['onnx/model_fp16.onnx'], safetensors: false });
    writePrunedFolder(fixtureDir('llama'), zeroed, { selection, mode: 'zero', onnxFiles: ['onnx/model_fp16.onnx'], safetensors: false });
    const ids = refsFile().prompts[0]!.input_ids;
    const a = await ModelSession.create(join(removed, 'onnx/model_fp16.onnx'), { threads: 1 });
    const b = await ModelSession.create(join(zeroed, 'onnx/model_fp16.onnx'), { threads: 1 });
    expect(maxAbsDiff((await a.forward([ids])).logits, (await b.forward([ids])).logits)).toBeLessThanOrEqual(1e-5);
    await a.release();
    await b.release();
  });
});

describe('bf16 weights (converted in a helper, Cast to float after each)', () => {
  const dir = join(root, 'bf16');
  beforeAll(() => writeBf16Folder(dir));
  const path = join(dir, 'onnx/model.onnx');

  test('map sees bf16 initializers behind the Cast, f32 activations', () => {
    const map = mapGraph(readOnnxModel(path), path);
    expect(map.layers).toHaveLength(4);
    expect(map.layers[1]!.gate).toMatchObject({ dtype: 'bf16', layout: 'in_out', shape: [64, 256] });
    expect(map.activationDtype).toBe('f32');
  });

  test('scan of bf16 matrices matches maw to bf16 precision', async () => {
    const weights = new OnnxWeights(path);
    try {
      const maw = refsFile().maw_importance;
      const ours = await columnMaxAbs(weights, 3);
      ours.forEach((v, i) => expect(Math.abs(v - maw[3]![i]!)).toBeLessThanOrEqual(8e-3 * maw[3]![i]!));
    } finally {
      weights.close();
    }
  });

  test('removal slices bf16 columns bit-exactly and capture still matches the refs closely', async () => {
    const out = join(root, 'bf16-removed');
    const drop = [0, 17, 255];
    writePrunedFolder(dir, out, { selection: new Map([[1, drop], [0, drop], [2, drop], [3, drop]]), mode: 'remove' });
    const before = readOnnxModel(path);
    const after = readOnnxModel(join(out, 'onnx/model.onnx'));
    const gateName = mapGraph(before, path).layers[1]!.gate.name;
    const src = new Uint16Array(new Uint8Array(new TensorDataReader(dir).read(before.graph!.initializer.find((t) => t.name === gateName)!)).buffer);
    const dst = new Uint16Array(new Uint8Array(new TensorDataReader(out).read(after.graph!.initializer.find((t) => t.name === gateName)!)).buffer);
    const kept = Array.from({ length: 256 }, (_, i) => i).filter((i) => !drop.includes(i));
    const expected = new Uint16Array(64 * kept.length);
    for (let r = 0; r < 64; r++) kept.forEach((c, j) => (expected[r * kept.length + j] = src[r * 256 + c]!));
    expect(dst).toEqual(expected);

    const capture = await ActivationCapture.create(path, { threads: 1 });
    const prompt = refsFile().prompts[1]!;
    const got = await capture.capture(prompt.input_ids);
    const ref = readRefData('llama', prompt.activations['glu_product_layer_2']!);
    const scale = ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(maxAbsDiff(got.get('glu_product_layer_2')!.data, ref)).toBeLessThanOrEqual(3e-2 * Math.max(1, scale));
    await capture.release();
  });
});
