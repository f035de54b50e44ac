import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { ModelSession } from '../../src/runtime/session.js';
import { openModelFolder } from '../../src/model/folder.js';
import { ARCHITECTURES, fixtureDir, maxAbsDiff, ONNX_FORMS, readRefData, readRefs } from '@fairprune/fixtures';

describe.each(ARCHITECTURES.flatMap((arch) => ONNX_FORMS.map((form) => [arch, form] as const)))('%s %s', (arch, form) => {
  const refs = readRefs(arch).prompts;
  const folder = openModelFolder(fixtureDir(arch));
  let session: ModelSession;
  beforeAll(async () => {
    session = await ModelSession.create(join(fixtureDir(arch), form), { threads: 1, config: folder.config });
  });
  afterAll(async () => session?.release());

  test('logits of pairs 0 and 1 equal the HF reference (≤ 1e-4)', async () => {
    for (const prompt of refs) {
      const { logits, dims } = await session.forward([prompt.input_ids]);
      expect(dims).toEqual([1, ...prompt.logits.shape]);
      expect(maxAbsDiff(logits, readRefData(arch, prompt.logits))).toBeLessThanOrEqual(1e-4);
    }
  });

  test('KV layout detected only for the KV form', () => {
    if (form.endsWith('_kv.onnx')) {
      expect(session.kv).toMatchObject({
        numLayers: 4,
        numKvHeads: folder.config.numKeyValueHeads,
        headDim: folder.config.headDim,
        dtype: 'float32',
      });
      expect(session.kv?.presentKeyNames[3]).toBe('present.3.key');
      expect(session.needsPositionIds).toBe(true);
    } else {
      expect(session.kv).toBeUndefined();
    }
  });
});

test('batched forward of equal lengths equals one-by-one', async () => {
  const refs = readRefs('llama').prompts;
  const session = await ModelSession.create(join(fixtureDir('llama'), 'onnx/model_kv.onnx'), { threads: 1 });
  const [a, b] = [refs[0]!, refs[1]!];
  expect(a.input_ids.length).toBe(b.input_ids.length);
  const { logits, dims } = await session.forward([a.input_ids, b.input_ids]);
  const per = dims[1] * dims[2];
  expect(maxAbsDiff(logits.subarray(0, per), readRefData('llama', a.logits))).toBeLessThanOrEqual(1e-4);
  expect(maxAbsDiff(logits.subarray(per), readRefData('llama', b.logits))).toBeLessThanOrEqual(1e-4);
  await expect(session.forward([a.input_ids, b.input_ids.slice(1)])).rejects.toThrow(/equal lengths/);
  await session.release();
});

test("device 'cuda' falls back to CPU with a message when the provider libraries are missing", async () => {
  const messages: string[] = [];
  const session = await ModelSession.create(join(fixtureDir('llama'), 'onnx/model.onnx'), {
    device: 'cuda',
    threads: 1,
    onFallback: (m) => messages.push(m),
  });
  if (session.device === 'cpu') {
    expect(messages[0]).toMatch(/CUDA execution provider unavailable.*running on CPU/);
    expect(session.fallbackReason).toBe(messages[0]);
  } else {
    expect(messages).toEqual([]);
  }
  const ref = readRefs('llama').prompts[0]!;
  const { logits } = await session.forward([ref.input_ids]);
  expect(maxAbsDiff(logits, readRefData('llama', ref.logits))).toBeLessThanOrEqual(1e-4);
  await session.release();
});
