import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { mapGraph } from '../../src/model/graph-map.js';
import { readOnnxModel } from '../../src/model/onnx-codec.js';
import { ActivationCapture } from '../../src/runtime/capture.js';
import { ARCHITECTURES, EXTRA_ARCHITECTURES, fixtureDir, maxAbsDiff, ONNX_FORMS, readRefData, readRefs } from '@fairprune/fixtures';

const cases = [...ARCHITECTURES, ...EXTRA_ARCHITECTURES].flatMap((arch) => ONNX_FORMS.map((form) => [arch, form] as const));

describe.each(cases)('%s %s', (arch, form) => {
  const path = join(fixtureDir(arch), form);
  const refs = readRefs(arch).prompts;
  let capture: ActivationCapture;
  beforeAll(async () => {
    capture = await ActivationCapture.create(path, { threads: 1 });
  });
  afterAll(async () => capture?.release());

  test('map finds 4 GLU layers with [in, out] weights', () => {
    const map = mapGraph(readOnnxModel(path), path);
    expect(map.layers).toHaveLength(4);
    for (const layer of map.layers) {
      expect(layer.intermediateSize).toBe(256);
      expect(layer.hiddenSize).toBe(64);
      expect(layer.down.shape).toEqual([256, 64]);
      expect(layer.gate.layout).toBe('in_out');
      expect(layer.fusedGateUp).toBe(arch === 'phi3');
      expect(layer.activation).toBe(arch.startsWith('gemma') ? 'gelu_tanh' : 'silu');
    }
    expect(map.logits).toBe('logits');
    expect(map.kv !== undefined).toBe(form.endsWith('_kv.onnx'));
  });

  test('every captured activation equals its HF reference (≤ 1e-4)', async () => {
    const results = await capture.captureBatch(refs.map((p) => p.input_ids));
    refs.forEach((prompt, i) => {
      const captured = results[i]!;
      const keys = Object.keys(prompt.activations);
      expect(keys.length).toBeGreaterThanOrEqual(24);
      for (const key of keys) {
        const got = captured.get(key);
        expect(got, key).toBeDefined();
        expect(got!.shape, key).toEqual(prompt.activations[key]!.shape);
        expect(maxAbsDiff(got!.data, readRefData(arch, prompt.activations[key]!)), `${key} pair ${prompt.pair}${prompt.side}`).toBeLessThanOrEqual(1e-4);
      }
    });
  });
});
