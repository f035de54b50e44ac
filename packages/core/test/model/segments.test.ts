import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ALL_ARCHITECTURES, fixtureDir, maxAbsDiff, ONNX_FORMS, readRefData, readRefs } from '@fairprune/fixtures';
import { create } from '@bufbuild/protobuf';
import { AttributeProtoSchema, AttributeProto_AttributeType, GraphProtoSchema } from 'onnx-buf';
import { GraphMapError, mapGraph } from '../../src/model/graph-map.js';
import { externalLocation, readOnnxModel } from '../../src/model/onnx-codec.js';
import { segmentGraph } from '../../src/model/segments.js';
import { SegmentedModel } from '../../src/runtime/segmented-model.js';
import { ModelSession } from '../../src/runtime/session.js';

describe.each(ALL_ARCHITECTURES)('segments of %s', (arch) => {
  const refs = readRefs(arch);
  // Pair 0's two prompts have equal length (one batch); pair 1's a side adds a second length.
  const sequences = [refs.prompts[0]!.input_ids, refs.prompts[1]!.input_ids, refs.prompts[2]!.input_ids];

  it.each(ONNX_FORMS)('%s: the suffix logits equal the whole model logits', async (form) => {
    const path = join(fixtureDir(arch), form);
    const whole = await ModelSession.create(path);
    const expected = await Promise.all(sequences.map(async (ids) => (await whole.forward([ids])).logits));
    await whole.release();

    const segmented = SegmentedModel.open(path);
    try {
      const { prefix, layers, suffix } = segmented.segments;
      expect(layers).toHaveLength(segmented.map.layers.length);
      // Each layer segment holds exactly its own MLP weights; the prefix and suffix hold none.
      segmented.map.layers.forEach((layer, l) => {
        const names = new Set(layers[l]!.initializers.map((t) => t.name));
        expect(names.has(layer.gate.name) && names.has(layer.up.name) && names.has(layer.down.name)).toBe(true);
        for (const other of segmented.map.layers.filter((o) => o.index !== l)) expect(names.has(other.down.name)).toBe(false);
      });
      const mlpWeights = new Set(segmented.map.layers.flatMap((l) => [l.gate.name, l.up.name, l.down.name]));
      for (const segment of [prefix, suffix]) expect(segment.initializers.filter((t) => mlpWeights.has(t.name))).toEqual([]);
      // Between layers only the residual stream and shared prefix tensors (masks, positions, rotary) cross.
      for (const layer of layers.slice(1)) expect(layer.inputs).toContain(segmented.segments.residual[layer.index]);
      const external = form === 'onnx/model_external.onnx';
      // Weights by offset: the original data file when external, else the temp copy that close() removes.
      const locations = new Set(layers.flatMap((s) => s.initializers.map((t) => externalLocation(t)?.location).filter((l) => l !== undefined)));
      expect([...locations]).toEqual([external ? `${basename(path)}_data` : 'weights.bin']);
      expect(segmented.tempDir === undefined).toBe(external);

      const got: Float32Array[] = [];
      await segmented.run(sequences, { onLogits: (sequence, logits) => (got[sequence] = logits) });
      sequences.forEach((_, i) => expect(maxAbsDiff(got[i]!, expected[i]!)).toBeLessThanOrEqual(1e-5));
      // forward() batches equal lengths like ModelSession.forward.
      const batched = await segmented.forward([sequences[0]!, sequences[1]!]);
      expect(maxAbsDiff(batched.logits, Float32Array.from([...expected[0]!, ...expected[1]!]))).toBeLessThanOrEqual(1e-5);
    } finally {
      segmented.close();
    }
    if (segmented.tempDir) expect(existsSync(segmented.tempDir)).toBe(false);
  });
});

describe('captured activations through segments', () => {
  it.each(['llama', 'phi3', 'gemma3'] as const)('%s: each layer hands over its tensors, equal to the HF references', async (arch) => {
    const refs = readRefs(arch);
    const prompt = refs.prompts[0]!;
    const segmented = SegmentedModel.open(join(fixtureDir(arch), 'onnx/model_dynamo.onnx'), { keys: ['gate_proj', 'up_proj', 'glu_product', 'mlp_output'] });
    const seen: number[] = [];
    try {
      await segmented.run([prompt.input_ids], {
        onLayer: (layer, captured) => {
          seen.push(layer);
          expect([...captured[0]!.keys()].every((key) => key.endsWith(`_layer_${layer}`))).toBe(true);
          for (const key of ['gate_proj', 'up_proj', 'glu_product', 'mlp_output']) {
            const ref = readRefData(arch, prompt.activations[`${key}_layer_${layer}`]!);
            expect(maxAbsDiff(captured[0]!.get(`${key}_layer_${layer}`)!.data, ref)).toBeLessThanOrEqual(1e-4);
          }
        },
      });
    } finally {
      segmented.close();
    }
    expect(seen).toEqual(segmented.map.layers.map((l) => l.index));
  });
});

describe('graphs that cannot be cut', () => {
  const path = join(fixtureDir('llama'), 'onnx/model.onnx');

  it('a layer without its MLP residual Add: GraphMapError naming the file and where the cut fails', () => {
    const model = readOnnxModel(path);
    const map = mapGraph(model, path);
    const add = model.graph!.node.find((n) => n.opType === 'Add' && n.input.includes(map.layers[1]!.tensors.mlp_output))!;
    add.opType = 'Sub';
    expect(() => segmentGraph(model, map, path)).toThrow(GraphMapError);
    // Layer 1's stream now runs into layer 2 without a cut point: layer 2's tensors are computed in segment 1.
    expect(() => segmentGraph(model, map, path)).toThrow(`${path}: layer 2 input_norm`);
  });

  it('control flow: refused, naming the node', () => {
    const model = readOnnxModel(path);
    const map = mapGraph(model, path);
    const node = model.graph!.node[5]!;
    node.attribute.push(create(AttributeProtoSchema, { name: 'then_branch', type: AttributeProto_AttributeType.GRAPH, g: create(GraphProtoSchema, {}) }));
    expect(() => segmentGraph(model, map, path)).toThrow(/subgraph .*cannot be cut into layers/);
  });
});

it('forward refuses a batch of unequal lengths, like ModelSession.forward', async () => {
  const segmented = SegmentedModel.open(join(fixtureDir('llama'), 'onnx/model_external.onnx'));
  try {
    await expect(segmented.forward([[0, 5, 6], [0, 5]])).rejects.toThrow('forward batches need equal lengths, got 3, 2');
  } finally {
    segmented.close();
  }
});
