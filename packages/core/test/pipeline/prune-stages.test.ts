import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { fixtureDir, readRefs } from '@fairprune/fixtures';
import { mapGraph } from '../../src/model/graph-map.js';
import { externalLocation, readOnnxModel } from '../../src/model/onnx-codec.js';
import { checkWrittenModel } from '../../src/pipeline/prune-stages.js';
import { writePrunedFolder } from '../../src/prune/apply.js';
import { ActivationCapture } from '../../src/runtime/capture.js';

const root = mkdtempSync(join(tmpdir(), 'fp-stages-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

test('the written-model check passes on the written files and fails, naming the file, when one written weight is wrong', async () => {
  const form = 'onnx/model_external.onnx';
  const selection = new Map([[0, [3, 70]], [1, [0, 5, 255]]]);
  const out = join(root, 'pruned');
  writePrunedFolder(fixtureDir('llama'), out, { selection, mode: 'remove', onnxFiles: [form], safetensors: false });
  const written = join(out, form);
  const capture = await ActivationCapture.create(join(fixtureDir('llama'), form), { keys: ['glu_product'], neuronMasks: { replacement: false }, threads: 1 });
  try {
    capture.simulatePruning({ selection, mode: 'remove' });
    const prompt = readRefs('llama').prompts[0]!.input_ids.slice(0, 4);
    const expected = (await capture.forward([prompt])).logits;
    await expect(checkWrittenModel(expected, written, prompt, 'f32', { threads: 1 })).resolves.toBeUndefined();

    // One value of layer 1's written down projection changed by +1, in the external data file.
    const model = readOnnxModel(written);
    const down = mapGraph(model, written).layers[1]!.down;
    const tensor = model.graph!.initializer.find((t) => t.name === down.name)!;
    const { location, offset } = externalLocation(tensor)!;
    const fd = openSync(join(dirname(written), location), 'r+');
    const value = Buffer.alloc(4);
    readSync(fd, value, 0, 4, offset + 4 * 100);
    value.writeFloatLE(value.readFloatLE(0) + 1, 0);
    writeSync(fd, value, 0, 4, offset + 4 * 100);
    closeSync(fd);
    await expect(checkWrittenModel(expected, written, prompt, 'f32', { threads: 1 })).rejects.toThrow(
      new RegExp(`^${written.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: the written model's logits differ .* by up to [0-9.e-]+ \\(tolerance .* for f32, over 4 tokens\\)`),
    );
  } finally {
    await capture.release();
  }
});
