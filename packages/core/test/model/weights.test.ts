import { describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { OnnxWeights, SafetensorsWeights } from '../../src/model/weights.js';
import { fixtureDir, readSafetensorsF32, type RefTensor } from '@fairprune/fixtures';

/** ONNX [in, out] bytes of an HF [out, in] matrix, transposed independently. */
function transposedBytes(t: RefTensor): Uint8Array {
  const [rows, cols] = t.shape as [number, number];
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = t.data[r * cols + c]!;
  return new Uint8Array(out.buffer);
}

const bytes = (data: Uint8Array) => Buffer.from(data.buffer, data.byteOffset, data.byteLength);

describe('weight reads reuse one buffer per role', () => {
  test('ONNX external data: each layer equals the safetensors weights, read into the same buffers', () => {
    const hf = readSafetensorsF32('llama');
    const weights = new OnnxWeights(join(fixtureDir('llama'), 'onnx/model_external.onnx'));
    try {
      const first = weights.layerMlp(0);
      expect(bytes(first.gate.data).equals(bytes(transposedBytes(hf.get('model.layers.0.mlp.gate_proj.weight')!)))).toBe(true);
      const second = weights.layerMlp(1);
      expect(bytes(second.gate.data).equals(bytes(transposedBytes(hf.get('model.layers.1.mlp.gate_proj.weight')!)))).toBe(true);
      expect(bytes(second.up.data).equals(bytes(transposedBytes(hf.get('model.layers.1.mlp.up_proj.weight')!)))).toBe(true);
      // no fresh allocation per layer: layer 1 was read over layer 0's bytes
      expect(second.gate.data.buffer).toBe(first.gate.data.buffer);
      expect(second.up.data.buffer).toBe(first.up.data.buffer);
      expect(second.gate.data.buffer).not.toBe(second.up.data.buffer);
    } finally {
      weights.close();
    }
  });

  test('Phi-3 fused gate_up ([in, 2I] in ONNX): halves equal the safetensors rows 0..I−1 and I..2I−1', () => {
    const hf = readSafetensorsF32('phi3').get('model.layers.1.mlp.gate_up_proj.weight')!;
    const [twoI, hidden] = hf.shape as [number, number];
    const half = (h: number): RefTensor => ({ ...hf, shape: [twoI / 2, hidden], data: hf.data.subarray((h * twoI / 2) * hidden, ((h + 1) * twoI / 2) * hidden) });
    const weights = new OnnxWeights(join(fixtureDir('phi3'), 'onnx/model.onnx'));
    const st = new SafetensorsWeights([join(fixtureDir('phi3'), 'model.safetensors')]);
    try {
      weights.layerMlp(0);
      const { gate, up } = weights.layerMlp(1);
      expect(bytes(gate.data).equals(bytes(transposedBytes(half(0))))).toBe(true);
      expect(bytes(up.data).equals(bytes(transposedBytes(half(1))))).toBe(true);
      st.layerMlp(0);
      const rows = st.layerMlp(1);
      expect(new Float32Array(rows.up.data.slice().buffer)).toEqual(half(1).data);
    } finally {
      weights.close();
      st.close();
    }
  });
});
