import { expect, test } from 'vitest';
import { join } from 'node:path';
import { FIXTURES } from '@fairprune/fixtures';
import { runCli } from './run-cli.js';

test('inspect --json prints one JSON object with a layers array', async () => {
  const { code, stdout, stderr } = await runCli('inspect', join(FIXTURES, 'qwen2'), '--onnx-file', 'onnx/model_dynamo.onnx', '--json');
  expect(code).toBe(0);
  const parsed = JSON.parse(stdout) as {
    modelType: string; onnxFile: string; layers: { gate: { name: string; dtype: string; shape: number[]; layout: string }; tensors: Record<string, string> }[];
  };
  expect(parsed.modelType).toBe('qwen2');
  expect(parsed.onnxFile).toBe('onnx/model_dynamo.onnx');
  expect(parsed.layers).toHaveLength(4);
  expect(parsed.layers[0]!.gate).toMatchObject({ dtype: 'f32', shape: [64, 256], layout: 'in_out' });
  expect(Object.keys(parsed.layers[3]!.tensors)).toEqual(['input_norm', 'attention_output', 'gate_proj', 'up_proj', 'glu_product', 'down_proj', 'mlp_output']);
});

test('inspect prints a readable summary of a fused Phi-3 MLP', async () => {
  const { code, stdout, stderr } = await runCli('inspect', join(FIXTURES, 'phi3'));
  expect(code).toBe(0);
  expect(stdout).toMatch(/architecture\s+phi3 \(Phi3ForCausalLM\)/);
  expect(stdout).toMatch(/4 GLU layers, activation silu/);
  expect(stdout).toMatch(/gate\s+onnx::MatMul_\d+\s+f32 \[64, 512\] in_out \(fused, half 0\)/);
});

test('inspect of a missing folder fails with a clear message', async () => {
  const { code, stdout, stderr } = await runCli('inspect', join(FIXTURES, 'nope'));
  expect(code).toBe(1);
  expect(stderr).toMatch(/fairprune: model folder not found: .*nope/);
});

test('inspect shows the working-set estimate and the measure path the budget gives', async () => {
  const roomy = await runCli('inspect', join(FIXTURES, 'llama'), '--memory-budget', '100');
  expect(roomy.code).toBe(0);
  expect(roomy.stdout).toMatch(/memory\s+working set with the default pairs: whole model \d+\.\d GB, streamed \d+\.\d GB \(largest: [^)]+\); budget 100\.0 GB → whole-model path/);
  const tight = await runCli('inspect', join(FIXTURES, 'llama'), '--memory-budget', '0.000001', '--json');
  expect(tight.code).toBe(0);
  const measure = (JSON.parse(tight.stdout) as { measure: { path: string; budget: number; estimate: { whole: number; streamed: number } } }).measure;
  expect(measure).toMatchObject({ path: 'streamed', budget: 1000 });
  expect(measure.estimate.streamed).toBeLessThan(measure.estimate.whole);
});
