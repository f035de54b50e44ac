import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writePrunedFolder } from '../../src/prune/apply.js';
import { ModelSession } from '../../src/runtime/session.js';
import { mapGraph } from '../../src/model/graph-map.js';
import { externalLocation, readOnnxModel } from '../../src/model/onnx-codec.js';
import { SafetensorsFile } from '../../src/model/safetensors.js';
import { decodeToFloat32 } from '../../src/model/dtype.js';
import { fixtureDir, maxAbsDiff, readRefs } from '@fairprune/fixtures';

const root = mkdtempSync(join(tmpdir(), 'fp-surgery-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Deterministic neuron choice (mulberry32) so failures reproduce; `count` neurons in every layer. */
function randomSelection(seed: number, layers: number, width: number, count: number): Map<number, number[]> {
  let state = seed;
  const next = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const selection = new Map<number, number[]>();
  for (let layer = 0; layer < layers; layer++) {
    const chosen = new Set<number>();
    while (chosen.size < count) chosen.add(Math.floor(next() * width));
    selection.set(layer, [...chosen]);
  }
  return selection;
}

async function logitsOf(path: string, prompts: number[][]): Promise<Float32Array[]> {
  const session = await ModelSession.create(path, { threads: 1 });
  try {
    const out: Float32Array[] = [];
    for (const ids of prompts) out.push((await session.forward([ids])).logits);
    return out;
  } finally {
    await session.release();
  }
}

const cases = [
  ['llama', 'onnx/model.onnx'],
  ['llama', 'onnx/model_external.onnx'],
  ['qwen2', 'onnx/model_dynamo.onnx'],
  ['gemma', 'onnx/model_kv.onnx'],
  ['phi3', 'onnx/model_dynamo.onnx'],
  ['phi3', 'onnx/model.onnx'],
] as const;

describe.each(cases)('%s %s: remove vs zero', (arch, form) => {
  const selection = randomSelection(arch.length * 7 + form.length, 4, 256, 37);
  const prompts = readRefs(arch).prompts.slice(0, 2).map((p) => p.input_ids);
  const tag = `${arch}-${form.replace(/\W/g, '_')}`;
  const removedDir = join(root, `${tag}-removed`);
  const zeroedDir = join(root, `${tag}-zeroed`);
  beforeAll(() => {
    writePrunedFolder(fixtureDir(arch), removedDir, { selection, mode: 'remove', onnxFiles: [form] });
    writePrunedFolder(fixtureDir(arch), zeroedDir, { selection, mode: 'zero', onnxFiles: [form] });
  });

  test('pruned ONNX reloads, maps to width 219, and remove/zero logits agree (≤ 1e-5)', async () => {
    const removedModel = readOnnxModel(join(removedDir, form));
    const removedMap = mapGraph(removedModel, form);
    expect(removedMap.layers.map((l) => l.intermediateSize)).toEqual([219, 219, 219, 219]);
    // shapes recorded in value_info (the dynamo export has them) follow the new width
    let checked = 0;
    for (const layer of removedMap.layers) {
      for (const key of ['gate_proj', 'up_proj', 'glu_product'] as const) {
        const info = removedModel.graph!.valueInfo.find((v) => v.name === layer.tensors[key]);
        if (!info) continue;
        const type = info.type?.value;
        const dims = type?.case === 'tensorType' ? type.value.shape?.dim ?? [] : [];
        expect(dims.at(-1)?.value, `${key} layer ${layer.index}`).toEqual({ case: 'dimValue', value: 219n });
        checked++;
      }
    }
    if (form.includes('dynamo')) expect(checked).toBe(12);
    const removed = await logitsOf(join(removedDir, form), prompts);
    const zeroed = await logitsOf(join(zeroedDir, form), prompts);
    const original = await logitsOf(join(fixtureDir(arch), form), prompts);
    for (let i = 0; i < prompts.length; i++) {
      expect(maxAbsDiff(removed[i]!, zeroed[i]!)).toBeLessThanOrEqual(1e-5);
      // pruning 37 of 256 neurons per layer must change the output, or nothing was pruned
      expect(maxAbsDiff(removed[i]!, original[i]!)).toBeGreaterThan(1e-3);
    }
  });

  test('external data in, external data out', () => {
    const model = readOnnxModel(join(removedDir, form));
    const external = model.graph!.initializer.filter((t) => externalLocation(t) !== undefined);
    if (form.includes('external')) {
      expect(external.length).toBeGreaterThan(10);
      expect(existsSync(join(removedDir, `${form}_data`))).toBe(true);
      expect(statSync(join(removedDir, form)).size).toBeLessThan(300_000);
    } else {
      expect(external).toEqual([]);
    }
  });

  test('only the pruned ONNX file and the support files are written', () => {
    const files = readdirSync(removedDir).sort();
    expect(files).toEqual(expect.arrayContaining(['config.json', 'generation_config.json', 'model.safetensors', 'onnx', 'tokenizer.json', 'tokenizer_config.json']));
    const onnx = readdirSync(join(removedDir, 'onnx'));
    expect(onnx.filter((f) => f.endsWith('.onnx'))).toEqual([form.slice(5)]);
    const config = JSON.parse(readFileSync(join(removedDir, 'config.json'), 'utf8')) as { intermediate_size: number };
    expect(config.intermediate_size).toBe(219);
    const zeroConfig = JSON.parse(readFileSync(join(zeroedDir, 'config.json'), 'utf8')) as { intermediate_size: number };
    expect(zeroConfig.intermediate_size).toBe(256);
  });

  test('safetensors slices equal the original rows/columns; zero mode zeroes them', () => {
    const original = new SafetensorsFile(join(fixtureDir(arch), 'model.safetensors'));
    const removed = new SafetensorsFile(join(removedDir, 'model.safetensors'));
    const zeroed = new SafetensorsFile(join(zeroedDir, 'model.safetensors'));
    try {
      for (let layer = 0; layer < 4; layer++) {
        const drop = new Set(selection.get(layer));
        const kept = Array.from({ length: 256 }, (_, i) => i).filter((i) => !drop.has(i));
        const read = (file: SafetensorsFile, name: string) => {
          const entry = file.entry(name);
          return { data: decodeToFloat32(file.read(name), 'f32'), shape: entry.shape };
        };
        const fused = arch === 'phi3';
        const producers = fused ? [`model.layers.${layer}.mlp.gate_up_proj.weight`] : [`model.layers.${layer}.mlp.gate_proj.weight`, `model.layers.${layer}.mlp.up_proj.weight`];
        for (const name of producers) {
          const src = read(original, name);
          const out = read(removed, name);
          const zero = read(zeroed, name);
          const rowsKept = fused ? [...kept, ...kept.map((k) => k + 256)] : kept;
          expect(out.shape).toEqual([rowsKept.length, 64]);
          const expected = new Float32Array(rowsKept.length * 64);
          rowsKept.forEach((row, i) => expected.set(src.data.subarray(row * 64, (row + 1) * 64), i * 64));
          expect(out.data).toEqual(expected);
          expect(zero.shape).toEqual(src.shape);
          const zeroRows = [...drop].flatMap((n) => (fused ? [n, n + 256] : [n]));
          expect(zeroRows.every((row) => zero.data.subarray(row * 64, (row + 1) * 64).every((v) => v === 0))).toBe(true);
          expect(zero.data[kept[0]! * 64]).toBe(src.data[kept[0]! * 64]);
        }
        const downName = `model.layers.${layer}.mlp.down_proj.weight`;
        const down = read(original, downName);
        const downOut = read(removed, downName);
        expect(downOut.shape).toEqual([64, kept.length]);
        const expectedDown = new Float32Array(64 * kept.length);
        for (let r = 0; r < 64; r++) kept.forEach((c, j) => (expectedDown[r * kept.length + j] = down.data[r * 256 + c]!));
        expect(downOut.data).toEqual(expectedDown);
      }
      // everything outside the MLPs is untouched
      const embed = [...original.entries.keys()].find((n) => n.includes('embed_tokens'))!;
      expect(removed.read(embed)).toEqual(original.read(embed));
    } finally {
      original.close();
      removed.close();
      zeroed.close();
    }
  });
});

describe('writing rules', () => {
  const selection = new Map([[0, [1, 2, 3]], [2, [5]]]);
  test('output equal to input is refused and nothing is written', () => {
    const before = readdirSync(fixtureDir('llama')).join();
    expect(() => writePrunedFolder(fixtureDir('llama'), fixtureDir('llama'), { selection, mode: 'zero' })).toThrow(/is the input folder or inside it/);
    expect(() => writePrunedFolder(fixtureDir('llama'), join(fixtureDir('llama'), 'pruned'), { selection, mode: 'zero' })).toThrow(/inside it/);
    expect(readdirSync(fixtureDir('llama')).join()).toBe(before);
  });

  test('an empty output folder is accepted; an earlier output is replaced only with force; a foreign folder never', () => {
    const out = join(root, 'existing');
    mkdirSync(out);
    writePrunedFolder(fixtureDir('llama'), out, { selection, mode: 'zero' });
    expect(readdirSync(out)).toContain('config.json');
    expect(JSON.parse(readFileSync(join(out, '.fairprune-output.json'), 'utf8'))).toMatchObject({ format: 'fairprune.output', command: 'writePrunedFolder' });
    expect(() => writePrunedFolder(fixtureDir('llama'), out, { selection, mode: 'zero' })).toThrow(/already holds the output of `fairprune writePrunedFolder`.*--force/);
    writePrunedFolder(fixtureDir('llama'), out, { selection: new Map([[1, [7]]]), mode: 'zero', force: true });
    expect(readdirSync(out)).toContain('config.json');
    const foreign = join(root, 'foreign');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'notes.txt'), 'mine');
    expect(() => writePrunedFolder(fixtureDir('llama'), foreign, { selection, mode: 'zero', force: true })).toThrow(/not written by fairprune.*notes\.txt/);
    expect(readdirSync(foreign)).toEqual(['notes.txt']);
    expect(readdirSync(root).filter((f) => f.includes('.fairprune-'))).toEqual([]);
  });

  test('uneven removal with safetensors is refused, pointing to zero; ONNX-only uneven removal works', async () => {
    const out = join(root, 'uneven');
    expect(() => writePrunedFolder(fixtureDir('llama'), out, { selection, mode: 'remove' })).toThrow(/Use mode "zero"/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(root).filter((f) => f.includes('fairprune-tmp'))).toEqual([]);
    const result = writePrunedFolder(fixtureDir('llama'), out, { selection, mode: 'remove', safetensors: false });
    expect(result.intermediateSizes).toEqual([253, 256, 255, 256]);
    const map = mapGraph(readOnnxModel(join(out, 'onnx/model.onnx')), out);
    expect(map.layers.map((l) => l.intermediateSize)).toEqual([253, 256, 255, 256]);
    const [logits] = await logitsOf(join(out, 'onnx/model.onnx'), [readRefs('llama').prompts[0]!.input_ids]);
    expect(logits!.every(Number.isFinite)).toBe(true);
  });

  test('bad selections name the layer and neuron', () => {
    const out = join(root, 'bad-selection');
    expect(() => writePrunedFolder(fixtureDir('llama'), out, { selection: new Map([[7, [1]]]), mode: 'zero' })).toThrow(/layer 7.*layers 0\.\.3/);
    expect(() => writePrunedFolder(fixtureDir('llama'), out, { selection: new Map([[1, [256]]]), mode: 'zero' })).toThrow(/Layer 1: neuron index 256 is outside 0\.\.255/);
    expect(existsSync(out)).toBe(false);
  });
});

test('input folder files are byte-identical after pruning', () => {
  const src = join(root, 'input-copy');
  mkdirSync(join(src, 'onnx'), { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']) copyFileSync(join(fixtureDir('llama'), f), join(src, f));
  for (const f of ['model_external.onnx', 'model_external.onnx_data']) copyFileSync(join(fixtureDir('llama'), 'onnx', f), join(src, 'onnx', f));
  const snapshot = () => readdirSync(src, { recursive: true }).map(String).sort().map((f) => (statSync(join(src, f)).isFile() ? `${f}:${readFileSync(join(src, f)).toString('base64')}` : f)).join('|');
  const before = snapshot();
  writePrunedFolder(src, join(root, 'from-copy'), { selection: new Map([[0, [0, 1]], [1, [0, 1]], [2, [0, 1]], [3, [0, 1]]]), mode: 'remove', onnxFiles: ['onnx/model_external.onnx'] });
  expect(snapshot()).toBe(before);
});

test('pruning a pruned folder does not carry over the earlier run\'s plan, reports, scores or marker', () => {
  const first = join(root, 'pruned-once');
  writePrunedFolder(fixtureDir('llama'), first, { selection: new Map([[0, [1]], [1, [1]], [2, [1]], [3, [1]]]), mode: 'zero' });
  for (const name of ['pruning-plan.json', 'bias-report.before.json', 'bias-report.after.json', 'neuron-scores.json']) writeFileSync(join(first, name), '{"stale": true}');
  writeFileSync(join(first, 'notes.txt'), 'user file');
  const second = join(root, 'pruned-twice');
  writePrunedFolder(first, second, { selection: new Map([[0, [2]], [1, [2]], [2, [2]], [3, [2]]]), mode: 'zero' });
  const files = readdirSync(second);
  for (const name of ['pruning-plan.json', 'bias-report.before.json', 'bias-report.after.json', 'neuron-scores.json']) expect(files).not.toContain(name);
  expect(files).toContain('notes.txt');
  expect(JSON.parse(readFileSync(join(second, '.fairprune-output.json'), 'utf8'))).toMatchObject({ command: 'writePrunedFolder' });
});

test('constant Slice bounds of a fused gate_up are rewritten on removal (copies, not the shared constants)', async () => {
  // The TorchScript Phi-3 export computes the gate/up split from the shape; give it constant bounds instead, as
  // other exporters write them, with one constant shared by both halves and every layer.
  const { create } = await import('@bufbuild/protobuf');
  const { TensorProtoSchema } = await import('onnx-buf');
  const { encodeOnnxModel } = await import('../../src/model/onnx-codec.js');
  const dir = join(root, 'phi3-const-slices');
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(fixtureDir('phi3'), f), join(dir, f));
  const model = readOnnxModel(join(fixtureDir('phi3'), 'onnx/model.onnx'));
  const int64 = (name: string, value: number) => create(TensorProtoSchema, { name, dataType: 7, dims: [1n], int64Data: [BigInt(value)] });
  model.graph!.initializer.push(int64('c_zero', 0), int64('c_width', 256), int64('c_double', 512));
  const map = mapGraph(model, 'phi3');
  for (const layer of map.layers) {
    for (const name of layer.fusedSplitNodes) {
      const node = model.graph!.node.find((n) => n.name === name)!;
      const first = node.output[0] === layer.tensors.gate_proj;
      node.input[1] = first ? 'c_zero' : 'c_width';
      node.input[2] = first ? 'c_width' : 'c_double';
    }
  }
  writeFileSync(join(dir, 'onnx/model.onnx'), encodeOnnxModel(model));
  const selection = randomSelection(99, 4, 256, 20);
  writePrunedFolder(dir, join(root, 'phi3-const-removed'), { selection, mode: 'remove' });
  writePrunedFolder(dir, join(root, 'phi3-const-zeroed'), { selection, mode: 'zero' });
  const pruned = readOnnxModel(join(root, 'phi3-const-removed/onnx/model.onnx'));
  expect(pruned.graph!.initializer.find((t) => t.name === 'c_width')!.int64Data).toEqual([256n]);
  expect(pruned.graph!.initializer.filter((t) => t.name.startsWith('c_width__fairprune_layer')).map((t) => t.int64Data)).toEqual([[236n], [236n], [236n], [236n]]);
  const prompts = readRefs('phi3').prompts.slice(0, 1).map((p) => p.input_ids);
  const [original] = await logitsOf(join(dir, 'onnx/model.onnx'), prompts);
  const [reference] = await logitsOf(join(fixtureDir('phi3'), 'onnx/model.onnx'), prompts);
  expect(maxAbsDiff(original!, reference!)).toBeLessThanOrEqual(1e-6);
  const [removed] = await logitsOf(join(root, 'phi3-const-removed/onnx/model.onnx'), prompts);
  const [zeroed] = await logitsOf(join(root, 'phi3-const-zeroed/onnx/model.onnx'), prompts);
  expect(maxAbsDiff(removed!, zeroed!)).toBeLessThanOrEqual(1e-5);
});

test('sharded safetensors: every shard pruned, index total_size recomputed', async () => {
  const { writeSafetensors } = await import('../../src/model/safetensors.js');
  const dir = join(root, 'sharded');
  mkdirSync(dir);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(fixtureDir('llama'), f), join(dir, f));
  const source = new SafetensorsFile(join(fixtureDir('llama'), 'model.safetensors'));
  const names = [...source.entries.keys()].sort();
  const weightMap: Record<string, string> = {};
  const shards = [names.filter((n) => !n.includes('layers.3')), names.filter((n) => n.includes('layers.3'))];
  shards.forEach((shard, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    for (const n of shard) weightMap[n] = file;
    writeSafetensors(join(dir, file), shard.map((n) => ({ ...source.entry(n), chunks: () => [source.read(n)] })));
  });
  source.close();
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 1 }, weight_map: weightMap }));
  const out = join(root, 'sharded-removed');
  const result = writePrunedFolder(dir, out, { selection: randomSelection(5, 4, 256, 16), mode: 'remove' });
  expect(result.safetensorsFiles).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
  const last = new SafetensorsFile(join(out, 'model-00002-of-00002.safetensors'));
  expect(last.entry('model.layers.3.mlp.down_proj.weight').shape).toEqual([64, 240]);
  last.close();
  const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  expect(index.weight_map).toEqual(weightMap);
  // HF's total_size counts tensor bytes: 4 layers × 3 MLP matrices shrink by 16 × 64 floats each
  const original = readFileSync(join(fixtureDir('llama'), 'model.safetensors'));
  const originalTensorBytes = original.length - 8 - Number(original.readBigUInt64LE(0));
  expect(index.metadata.total_size).toBe(originalTensorBytes - 4 * 3 * 16 * 64 * 4);
});
