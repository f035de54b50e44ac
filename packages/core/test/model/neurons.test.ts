import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ALL_ARCHITECTURES, ONNX_FORMS, fixtureDir, readSafetensorsF32 } from '@fairprune/fixtures';
import { mapGraph } from '../../src/model/graph-map.js';
import { fusedGateUpIndices, neuronAxis, parseHfMlpTensor } from '../../src/model/neurons.js';
import { readOnnxModel } from '../../src/model/onnx-codec.js';

const config = (arch: string) => JSON.parse(readFileSync(join(fixtureDir(arch), 'config.json'), 'utf8')) as { intermediate_size: number; num_hidden_layers: number };

describe('one vocabulary for neurons', () => {
  test.each(ALL_ARCHITECTURES.flatMap((arch) => ONNX_FORMS.slice(0, 3).map((form) => [arch, form] as const)))(
    '%s %s: the neuron axis of gate/up (output) and down (input) has config.json intermediate_size entries',
    (arch, form) => {
      const path = join(fixtureDir(arch), form);
      const map = mapGraph(readOnnxModel(path), path);
      const width = config(arch).intermediate_size;
      for (const layer of map.layers) {
        const along = (shape: number[], axis: 'rows' | 'cols') => shape[axis === 'rows' ? 0 : 1]!;
        const fused = layer.fusedGateUp ? 2 : 1;
        expect(along(layer.gate.shape, neuronAxis(layer.gate.layout, 'output')), `layer ${layer.index} gate`).toBe(fused * width);
        expect(along(layer.up.shape, neuronAxis(layer.up.layout, 'output')), `layer ${layer.index} up`).toBe(fused * width);
        expect(along(layer.down.shape, neuronAxis(layer.down.layout, 'input')), `layer ${layer.index} down`).toBe(width);
      }
    },
  );

  test.each(ALL_ARCHITECTURES)('%s safetensors: every MLP weight is parsed to its layer and projection, nothing else is', (arch) => {
    const names = [...readSafetensorsF32(arch).keys()];
    const parsed = names.map((name) => [name, parseHfMlpTensor(name)] as const);
    const layers = config(arch).num_hidden_layers;
    const weights = parsed.filter(([, p]) => p?.kind === 'weight');
    // gate + up + down, or fused gate_up + down.
    expect(weights.length === 3 * layers || weights.length === 2 * layers).toBe(true);
    for (const [name, p] of parsed) {
      expect(p !== undefined, name).toBe(/\.mlp\.(gate|up|down|gate_up)_proj\./.test(name));
      if (p) expect(name).toBe(`model.layers.${p.layer}.mlp.${p.projection}.${p.kind}`);
    }
  });

  test('a fused gate_up axis of 2·I holds neuron n at n and I + n; a bias has one axis', () => {
    expect(fusedGateUpIndices([1, 3], 8)).toEqual([1, 3, 5, 7]);
    expect(neuronAxis('out_in', 'output', 1)).toBe('cols');
    expect(neuronAxis('in_out', 'output')).toBe('cols');
    expect(neuronAxis('out_in', 'input')).toBe('cols');
    expect(neuronAxis('out_in', 'output')).toBe('rows');
  });
});
