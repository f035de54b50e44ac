import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { buildPlan, planSelection, readPlan, type BuildPlanInput } from '../../src/prune/plan.js';

const tmp = mkdtempSync(join(tmpdir(), 'fairprune-plan-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Llama-3.2-1B's shape: 16 layers × 8192, hidden 2048, 1,235,814,400 parameters.
const input: BuildPlanInput = {
  model: { path: '/m', weightsFile: 'onnx/model.onnx', weightsHash: 'ab', numLayers: 16, hiddenSize: 2048, intermediateSizes: new Array(16).fill(8192) },
  options: { fraction: 0.002 },
  mode: 'remove',
  selection: new Map(Array.from({ length: 16 }, (_, l) => [l, Array.from({ length: 16 }, (_, i) => 8191 - i * 7 - l)])),
  parametersBefore: 1_235_814_400,
  parametersPerNeuron: 3 * 2048,
  tool: 'fairprune test',
};

test('parameter counts and sizes reproduce the article (16 neurons per layer)', () => {
  const plan = buildPlan(input);
  expect(plan.parameters).toEqual({ before: 1_235_814_400, after: 1_234_241_536, affected: 1_572_864 });
  expect(plan.intermediateSizes).toEqual(new Array(16).fill(8176));
  expect(plan.layers['3']).toEqual([...input.selection.get(3)!].sort((a, b) => a - b));
  const zero = buildPlan({ ...input, mode: 'zero' });
  expect(zero.parameters.after).toBe(1_235_814_400);
  expect(zero.intermediateSizes[0]).toBe(8192);
  const small = buildPlan({ ...input, selection: new Map([[0, [2, 1]]]), model: { ...input.model, intermediateSizes: [4, 4] } });
  expect(small.layers).toEqual({ 0: [1, 2], 1: [] });
  expect(planSelection(small)).toEqual(new Map([[0, [1, 2]]]));
  expect(() => buildPlan({ ...input, selection: new Map([[2, [1]]]), model: { ...input.model, intermediateSizes: [4, 4] } })).toThrow(/names layers 2, the model has layers 0\.\.1/);
});

test('a saved plan reads back; bad plans fail naming the file and field', async () => {
  const plan = buildPlan(input);
  const file = join(tmp, 'plan.json');
  writeFileSync(file, JSON.stringify(plan));
  expect(await readPlan(file)).toEqual(plan);
  const write = (name: string, value: unknown) => {
    writeFileSync(join(tmp, name), typeof value === 'string' ? value : JSON.stringify(value));
    return join(tmp, name);
  };
  await expect(readPlan(write('text.json', 'nope'))).rejects.toThrow(/text\.json is not valid JSON/);
  await expect(readPlan(write('format.json', { ...plan, format: 'x' }))).rejects.toThrow(/format\.json: "format" is "x"/);
  await expect(readPlan(write('mode.json', { ...plan, mode: 'cut' }))).rejects.toThrow(/"mode" must be remove or zero/);
  await expect(readPlan(write('range.json', { ...plan, layers: { 0: [8192] } }))).rejects.toThrow(/layer 0: neuron 8192 is outside 0\.\.8191/);
  await expect(readPlan(write('dup.json', { ...plan, layers: { 1: [3, 3] } }))).rejects.toThrow(/layer 1: neuron 3 is listed twice/);
  await expect(readPlan(write('layer.json', { ...plan, layers: { 16: [1] } }))).rejects.toThrow(/layer "16" is not one of the model's 16 layers/);
  await expect(readPlan(join(tmp, 'missing.json'))).rejects.toThrow(/Cannot read .*missing\.json: ENOENT/);
});
