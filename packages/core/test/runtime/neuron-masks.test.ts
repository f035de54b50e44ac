import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtureDir, maxAbsDiff, readRefs } from '@fairprune/fixtures';
import { writePrunedFolder } from '../../src/prune/apply.js';
import { NeuronMaskedModel, zeroMasks } from '../../src/runtime/neuron-masks.js';
import { ModelSession } from '../../src/runtime/session.js';

const root = mkdtempSync(join(tmpdir(), 'fp-masks-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A fixed, irregular selection: different counts per layer, first and last neurons included. */
const selection = new Map<number, number[]>([
  [0, [0, 5, 17, 200, 255]],
  [1, [3, 64, 65, 66, 128, 190]],
  [3, [1, 99]],
]);

const cases = [
  ['llama', 'onnx/model.onnx'],
  ['llama', 'onnx/model_kv.onnx'],
  ['phi3', 'onnx/model.onnx'],
  ['phi3', 'onnx/model_dynamo.onnx'],
] as const;

describe.each(cases)('%s %s: masked session vs the pruned model on disk', (arch, form) => {
  const out = join(root, `${arch}-${form.replace(/\W/g, '_')}`);
  const prompts = readRefs(arch).prompts.slice(0, 2).map((p) => p.input_ids);
  let masked: NeuronMaskedModel;
  beforeAll(async () => {
    writePrunedFolder(fixtureDir(arch), out, { selection, mode: 'remove', onnxFiles: [form], safetensors: false });
    masked = await NeuronMaskedModel.create(join(fixtureDir(arch), form), { threads: 1 });
  });
  afterAll(async () => masked?.release());

  test('zeroed neurons give the logits of the model with them removed (≤ 1e-5)', async () => {
    const pruned = await ModelSession.create(join(out, form), { threads: 1 });
    try {
      for (const ids of prompts) {
        const expected = (await pruned.forward([ids])).logits;
        const got = (await masked.forward([ids], zeroMasks(masked.widths, selection))).logits;
        expect(maxAbsDiff(got, expected)).toBeLessThanOrEqual(1e-5);
      }
    } finally {
      await pruned.release();
    }
  });

  test('all-ones masks give the original logits; each batch row carries its own mask', async () => {
    const original = await ModelSession.create(join(fixtureDir(arch), form), { threads: 1 });
    try {
      const ids = prompts[0]!;
      const base = (await original.forward([ids])).logits;
      expect(maxAbsDiff((await masked.forward([ids])).logits, base)).toBeLessThanOrEqual(1e-6);
      // Row 0 unmasked, row 1 pruned: the rows must match the two separate forwards.
      const perRow = masked.widths.map((width, layer) => {
        const rows = new Float32Array(2 * width).fill(1);
        for (const n of selection.get(layer) ?? []) rows[width + n] = 0;
        return rows;
      });
      const both = await masked.forward([ids, ids], perRow);
      const size = base.length;
      const prunedAlone = (await masked.forward([ids], zeroMasks(masked.widths, selection))).logits;
      expect(maxAbsDiff(both.logits.subarray(0, size), base)).toBeLessThanOrEqual(1e-5);
      expect(maxAbsDiff(both.logits.subarray(size), prunedAlone)).toBeLessThanOrEqual(1e-5);
      expect(maxAbsDiff(prunedAlone, base)).toBeGreaterThan(1e-3);
    } finally {
      await original.release();
    }
  });
});

test('replacement inputs add after the mask: mask 0 + replacement = a constant neuron', async () => {
  const arch = 'llama';
  const form = 'onnx/model.onnx';
  const plain = await NeuronMaskedModel.create(join(fixtureDir(arch), form), { threads: 1 });
  const withReplacement = await NeuronMaskedModel.create(join(fixtureDir(arch), form), { threads: 1, replacement: true });
  try {
    const ids = readRefs(arch).prompts[0]!.input_ids;
    const masks = zeroMasks(plain.widths, selection);
    // Zero replacement = plain removal.
    expect(maxAbsDiff((await withReplacement.forward([ids], masks)).logits, (await plain.forward([ids], masks)).logits)).toBeLessThanOrEqual(1e-6);
    const replacement = plain.widths.map((w) => new Float32Array(w));
    replacement[0]![5] = 0.7;
    const moved = (await withReplacement.forward([ids], masks, replacement)).logits;
    expect(maxAbsDiff(moved, (await plain.forward([ids], masks)).logits)).toBeGreaterThan(1e-4);
    await expect(plain.forward([ids], masks, replacement)).rejects.toThrow(/without replacement inputs/);
    await expect(plain.forward([ids], [new Float32Array(3)])).rejects.toThrow(/Layer 0 mask has 3 values; expected 256/);
  } finally {
    await plain.release();
    await withReplacement.release();
  }
});
