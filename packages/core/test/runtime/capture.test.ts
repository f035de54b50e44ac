import { join } from 'node:path';
import { expect, test } from 'vitest';
import { fixtureDir, readRefs, refActivations, refPrompt, maxAbsDiff } from '@fairprune/fixtures';
import { encodeOnnxModel, readOnnxModel } from '../../src/model/onnx-codec.js';
import { ActivationCapture } from '../../src/runtime/capture.js';

test('capture runs on a copy of the graph: the decoded model given stays byte-identical, the capture matches HF', async () => {
  const path = join(fixtureDir('llama'), 'onnx/model.onnx');
  const model = readOnnxModel(path);
  const before = Buffer.from(encodeOnnxModel(model));
  const capture = await ActivationCapture.create(path, { model, keys: ['glu_product'], threads: 1 });
  const refs = readRefs('llama');
  const prompt = refPrompt(refs, 0, 'a');
  const captured = await capture.capture(prompt.input_ids);
  await capture.release();
  const expected = refActivations('llama', refs, 0, 'a').get('glu_product_layer_1')!;
  expect(maxAbsDiff(captured.get('glu_product_layer_1')!.data, expected.data)).toBeLessThan(1e-4);
  expect(Buffer.from(encodeOnnxModel(model)).equals(before)).toBe(true);
});
