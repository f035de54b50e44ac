import { describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { OnnxWeights } from '../../src/model/weights.js';
import { IMPORTANCE_METHODS, layerImportance, modelImportance, scanModelImportance, type ImportanceMethod } from '../../src/prune/importance.js';
import { ARCHITECTURES, FIXTURES, readRefs, readSafetensorsF32, type RefTensor, row } from '@fairprune/fixtures';

/** Plain float64 definitions over one neuron's gate row g and up row u. */
const plain: Record<ImportanceMethod, (g: Float32Array, u: Float32Array) => number> = {
  maw: (g, u) => Math.max(...g.map(Math.abs)) + Math.max(...u.map(Math.abs)),
  ppm: (g, u) => Math.max(...g) + Math.abs(Math.min(...g)) + Math.max(...u) + Math.abs(Math.min(...u)),
  vow: (g, u) => variance(g) + variance(u),
  pon: (g, u) => sum(g, Math.abs) * sum(u, Math.abs),
  l2: (g, u) => Math.sqrt(sum(g, (x) => x * x)) + Math.sqrt(sum(u, (x) => x * x)),
};
function sum(v: Float32Array, f: (x: number) => number): number {
  let s = 0;
  for (const x of v) s += f(x);
  return s;
}
function variance(v: Float32Array): number {
  const mean = sum(v, (x) => x) / v.length;
  return sum(v, (x) => (x - mean) ** 2) / (v.length - 1);
}

function view(t: RefTensor) {
  return { data: t.data, rows: t.shape[0]!, cols: t.shape[1]!, dtype: 'f32' as const };
}
/** The same matrix transposed, as ONNX stores MatMul weights ([in, out], a neuron is a column). */
function transposed(t: RefTensor) {
  const [rows, cols] = t.shape as [number, number];
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) data[c * rows + r] = t.data[r * cols + c]!;
  return { data, rows: cols, cols: rows, dtype: 'f32' as const };
}

describe.each(ARCHITECTURES)('importance on %s', (arch) => {
  const refs = readRefs(arch);
  const weights = readSafetensorsF32(arch);
  const layerWeights = (layer: number) => ({
    gate: weights.get(`model.layers.${layer}.mlp.gate_proj.weight`)!,
    up: weights.get(`model.layers.${layer}.mlp.up_proj.weight`)!,
  });

  test('maw equals refs.json maw_importance (rows and columns)', async () => {
    for (let layer = 0; layer < refs.maw_importance.length; layer++) {
      const { gate, up } = layerWeights(layer);
      const fromRows = await layerImportance('maw', { gate: view(gate), up: view(up), neuronAxis: 'rows' });
      const fromCols = await layerImportance('maw', { gate: transposed(gate), up: transposed(up), neuronAxis: 'cols' });
      const expected = refs.maw_importance[layer]!;
      expect(fromRows.length).toBe(expected.length);
      expected.forEach((value, i) => {
        expect(fromRows[i]).toBeCloseTo(value, 6);
        expect(fromCols[i]).toBeCloseTo(value, 6);
      });
    }
  });

  test.each(IMPORTANCE_METHODS)('%s equals its plain definition', async (method) => {
    const { gate, up } = layerWeights(1);
    const actual = await layerImportance(method, { gate: view(gate), up: view(up), neuronAxis: 'rows' });
    for (let i = 0; i < actual.length; i++) {
      const expected = plain[method](row(gate, i), row(up, i));
      expect(Math.abs(actual[i]! - expected)).toBeLessThanOrEqual(1e-5 * Math.abs(expected) + 1e-9);
    }
  });
});

describe('importance read from ONNX initializers', () => {
  test.each(['model.onnx', 'model_dynamo.onnx', 'model_external.onnx'])('llama %s: maw equals refs.json, hash identifies the weights', async (file) => {
    const path = join(FIXTURES, 'llama/onnx', file);
    const weights = new OnnxWeights(path);
    const result = await modelImportance(weights, 4, 'maw');
    weights.close();
    const refs = readRefs('llama');
    result.layers.forEach((layer, l) => refs.maw_importance[l]!.forEach((v, i) => expect(layer[i]).toBeCloseTo(v, 6)));
    expect(result.weightsHash).toMatch(/^[0-9a-f]{64}$/);
  });

  test('phi3 fused gate_up: each half scored like the safetensors rows', async () => {
    const path = join(FIXTURES, 'phi3/onnx/model.onnx');
    const weights = new OnnxWeights(path);
    const result = await modelImportance(weights, weights.map.layers.length, 'ppm');
    weights.close();
    const hf = readSafetensorsF32('phi3');
    const gateUp = hf.get('model.layers.2.mlp.gate_up_proj.weight')!;
    const width = gateUp.shape[0]! / 2;
    expect(result.layers[2]).toHaveLength(width);
    for (let i = 0; i < width; i++) {
      const expected = plain.ppm(row(gateUp, i), row(gateUp, width + i));
      expect(result.layers[2]![i]).toBeCloseTo(expected, 5);
    }
  });

  test('several methods from one scan: each equals the plain formula on the safetensors rows, one hash for all', async () => {
    const weights = new OnnxWeights(join(FIXTURES, 'llama/onnx/model.onnx'));
    let reads = 0;
    const source = { layerMlp: (layer: number) => (reads++, weights.layerMlp(layer)) };
    const scan = await scanModelImportance(source, 4, IMPORTANCE_METHODS);
    weights.close();
    expect(reads).toBe(4);
    const hf = readSafetensorsF32('llama');
    for (const method of IMPORTANCE_METHODS) {
      const gate = hf.get('model.layers.1.mlp.gate_proj.weight')!;
      const up = hf.get('model.layers.1.mlp.up_proj.weight')!;
      const actual = scan.importance.get(method)![1]!;
      for (let i = 0; i < actual.length; i++) {
        const expected = plain[method](row(gate, i), row(up, i));
        expect(Math.abs(actual[i]! - expected), `${method} neuron ${i}`).toBeLessThanOrEqual(1e-5 * Math.abs(expected) + 1e-6);
      }
    }
    const alone = new OnnxWeights(join(FIXTURES, 'llama/onnx/model.onnx'));
    expect((await scanModelImportance(alone, 4, [])).weightsHash).toBe(scan.weightsHash);
    alone.close();
  });

  test('the weights hash: same for the same weights in another file form, different when one weight changes', async () => {
    const hashOf = async (file: string, perturb = false) => {
      const weights = new OnnxWeights(join(FIXTURES, 'llama/onnx', file));
      const source = {
        layerMlp: (layer: number) => {
          const mlp = weights.layerMlp(layer);
          if (!perturb || layer !== 2) return mlp;
          const data = new Uint8Array(mlp.gate.data);
          const f32 = new Float32Array(data.buffer);
          f32[100] = f32[100]! + 1e-3;
          return { ...mlp, gate: { ...mlp.gate, data } };
        },
      };
      const result = await modelImportance(source, 4, 'maw');
      weights.close();
      return result.weightsHash;
    };
    const original = await hashOf('model.onnx');
    expect(await hashOf('model_external.onnx')).toBe(original);
    expect(await hashOf('model.onnx', true)).not.toBe(original);
  });
});
