import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtureDir, maxAbsDiff, readRefs, readSafetensorsF32, refActivations } from '@fairprune/fixtures';
import { openModelFolder } from '../../src/model/folder.js';
import { SafetensorsFile } from '../../src/model/safetensors.js';
import { decodeToFloat32 } from '../../src/model/dtype.js';
import { OnnxWeights } from '../../src/model/weights.js';
import { writePrunedFolder } from '../../src/prune/apply.js';
import { compensationBiases, meanActivations } from '../../src/prune/compensate.js';
import { ActivationCapture } from '../../src/runtime/capture.js';
import { NeuronMaskedModel, zeroMasks } from '../../src/runtime/neuron-masks.js';
import { ModelSession } from '../../src/runtime/session.js';

const root = mkdtempSync(join(tmpdir(), 'fp-compensate-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const arch = 'llama';
const refs = readRefs(arch);
// The four reference prompts (pairs 0 and 1, both sides) are the calibration texts.
const texts = refs.prompts.map((p) => p.text);
const selection = new Map<number, number[]>([
  [0, [3, 40, 41, 250]],
  [2, [7, 128]],
  [3, [0, 1, 2, 3, 99, 200]],
]);

/** Written from the formula: mean over every position of every reference prompt, from HF's activations on disk. */
function referenceMeans(): Float64Array[] {
  const sums = Array.from({ length: 4 }, () => new Float64Array(256));
  let positions = 0;
  for (const p of refs.prompts) {
    const acts = refActivations(arch, refs, Number(p.pair), p.side);
    for (let layer = 0; layer < 4; layer++) {
      const { data, shape } = acts.get(`glu_product_layer_${layer}`)!;
      for (let t = 0; t < shape[0]!; t++) for (let n = 0; n < 256; n++) sums[layer]![n]! += data[t * 256 + n]!;
    }
    positions += p.input_ids.length;
  }
  return sums.map((s) => s.map((v) => v / positions));
}

/** b_h = Σ_n mean_n · W_down[h, n], with W_down from model.safetensors in HF layout [hidden, intermediate]. */
function referenceBias(means: Float64Array[], layer: number): Float64Array {
  const down = readSafetensorsF32(arch).get(`model.layers.${layer}.mlp.down_proj.weight`)!;
  const bias = new Float64Array(64);
  for (const n of selection.get(layer)!) for (let h = 0; h < 64; h++) bias[h]! += means[layer]![n]! * down.data[h * 256 + n]!;
  return bias;
}

describe('mean compensation on the llama fixture', () => {
  let means: Float32Array[];
  let biases: Map<number, Float32Array>;
  const out = join(root, 'compensated');
  beforeAll(async () => {
    const capture = await ActivationCapture.create(join(fixtureDir(arch), 'onnx/model.onnx'), { keys: ['glu_product'], threads: 1 });
    try {
      means = await meanActivations(capture, openModelFolder(fixtureDir(arch)).tokenizer, texts);
    } finally {
      await capture.release();
    }
    const weights = new OnnxWeights(join(fixtureDir(arch), 'onnx/model.onnx'));
    try {
      biases = compensationBiases(weights, means, selection);
    } finally {
      weights.close();
    }
    writePrunedFolder(fixtureDir(arch), out, { selection, mode: 'zero', mlpBiases: biases });
  });

  test('mean activations and biases match the formula on HF reference activations and weights (≤ 1e-5)', () => {
    const expected = referenceMeans();
    for (let layer = 0; layer < 4; layer++) expect(maxAbsDiff(means[layer]!, expected[layer]!)).toBeLessThanOrEqual(1e-5);
    expect([...biases.keys()].sort()).toEqual([0, 2, 3]);
    for (const layer of biases.keys()) expect(maxAbsDiff(biases.get(layer)!, referenceBias(expected, layer))).toBeLessThanOrEqual(1e-5);
  });

  test('the compensated ONNX model equals the masked model with the neurons mean-replaced (≤ 1e-5)', async () => {
    const written = await ModelSession.create(join(out, 'onnx/model.onnx'), { threads: 1 });
    const masked = await NeuronMaskedModel.create(join(fixtureDir(arch), 'onnx/model.onnx'), { threads: 1, replacement: true });
    try {
      const replacements = masked.widths.map((w, layer) => {
        const r = new Float32Array(w);
        for (const n of selection.get(layer) ?? []) r[n] = means[layer]![n]!;
        return r;
      });
      const masks = zeroMasks(masked.widths, selection);
      for (const p of refs.prompts) {
        const got = (await written.forward([p.input_ids])).logits;
        expect(maxAbsDiff(got, (await masked.forward([p.input_ids], masks, replacements)).logits)).toBeLessThanOrEqual(1e-5);
        // and it is not just the pruned model
        expect(maxAbsDiff(got, (await masked.forward([p.input_ids], masks)).logits)).toBeGreaterThan(1e-4);
      }
    } finally {
      await written.release();
      await masked.release();
    }
  });

  test('safetensors carry down_proj.bias, zero gate/up biases, and config.json mlp_bias: true', () => {
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config['mlp_bias']).toBe(true);
    const file = new SafetensorsFile(join(out, 'model.safetensors'));
    try {
      const read = (name: string) => decodeToFloat32(file.read(name, 0, file.entries.get(name)!.end - file.entries.get(name)!.begin), 'f32');
      const expected = referenceMeans();
      for (const layer of [0, 2, 3]) {
        expect(maxAbsDiff(read(`model.layers.${layer}.mlp.down_proj.bias`), referenceBias(expected, layer))).toBeLessThanOrEqual(1e-5);
        expect(Math.max(...read(`model.layers.${layer}.mlp.gate_proj.bias`).map(Math.abs))).toBe(0);
        expect(file.entries.get(`model.layers.${layer}.mlp.up_proj.bias`)!.shape).toEqual([256]);
      }
      expect(file.entries.has('model.layers.1.mlp.down_proj.bias')).toBe(false);
    } finally {
      file.close();
    }
  });

  test('an architecture whose config cannot carry mlp_bias is refused for safetensors output, naming the file', () => {
    expect(() => writePrunedFolder(fixtureDir('qwen2'), join(root, 'qwen2'), { selection, mode: 'zero', mlpBiases: biases })).toThrow(
      /qwen2[/\\]config\.json: model_type "qwen2" has no mlp_bias setting.*--no-safetensors/,
    );
  });
});
