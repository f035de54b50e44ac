import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The shared, read-only fixtures (tiny HF models with reference outputs from transformers). */
export const FIXTURES = join(import.meta.dirname, '../../../../../shared/fixtures');

export const ARCHS = ['llama', 'qwen2', 'gemma'] as const;
export const EXTRA_ARCHS = ['phi3', 'gemma3'] as const;
export const ONNX_FORMS = ['onnx/model.onnx', 'onnx/model_dynamo.onnx', 'onnx/model_external.onnx', 'onnx/model_kv.onnx'] as const;

export interface RefTensor {
  file: string;
  shape: number[];
}
export interface RefPrompt {
  pair: number;
  side: 'a' | 'b';
  text: string;
  input_ids: number[];
  logits: RefTensor;
  activations: Record<string, RefTensor>;
}

export function fixtureDir(arch: string): string {
  return join(FIXTURES, arch);
}

export function loadRefs(arch: string): { prompts: RefPrompt[] } {
  return JSON.parse(readFileSync(join(FIXTURES, arch, 'refs/refs.json'), 'utf8')) as { prompts: RefPrompt[] };
}

export function readRef(arch: string, ref: RefTensor): Float32Array {
  const bytes = readFileSync(join(FIXTURES, arch, ref.file));
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
  }
  return max;
}
