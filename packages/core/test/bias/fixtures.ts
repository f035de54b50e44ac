/** Test helpers that read the shared fixtures' HF references directly (no code under test involved). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const FIXTURES = join(import.meta.dirname, '../../../../../shared/fixtures');
export const ARCHITECTURES = ['llama', 'qwen2', 'gemma'] as const;

export interface RefTensor {
  data: Float32Array;
  shape: number[];
}

export interface RefPrompt {
  pair: number;
  side: 'a' | 'b';
  text: string;
  input_ids: number[];
  activations: Record<string, { file: string; shape: number[] }>;
}

export interface Refs {
  prompts: RefPrompt[];
  maw_importance: number[][];
  optipfair_bias_metrics_pair0: {
    overall_mean_difference: number;
    component_mean_difference: Record<string, number>;
    layer_mean_difference: Record<string, number>;
  };
}

export function readRefs(arch: string): Refs {
  return JSON.parse(readFileSync(join(FIXTURES, arch, 'refs/refs.json'), 'utf8')) as Refs;
}

function readF32(path: string): Float32Array {
  const bytes = readFileSync(path);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** All reference activations of one side of a pair, keyed like the capture (`gate_proj_layer_0`, ...). */
export function refActivations(arch: string, refs: Refs, pair: number, side: 'a' | 'b'): Map<string, RefTensor> {
  const prompt = refs.prompts.find((p) => Number(p.pair) === pair && p.side === side);
  if (!prompt) throw new Error(`no ref prompt for pair ${pair}${side}`);
  const out = new Map<string, RefTensor>();
  for (const [key, { file, shape }] of Object.entries(prompt.activations)) {
    out.set(key, { data: readF32(join(FIXTURES, arch, file)), shape });
  }
  return out;
}

/** Minimal safetensors reader for F32 tensors (HF layout [out, in]). */
export function readSafetensors(arch: string): Map<string, RefTensor> {
  const bytes = readFileSync(join(FIXTURES, arch, 'model.safetensors'));
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLength;
  const out = new Map<string, RefTensor>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (info.dtype !== 'F32') throw new Error(`${name}: dtype ${info.dtype}`);
    const [start, end] = info.data_offsets;
    const slice = bytes.subarray(base + start, base + end);
    out.set(name, { data: new Float32Array(slice.buffer.slice(slice.byteOffset, slice.byteOffset + slice.byteLength)), shape: info.shape });
  }
  return out;
}

/** Row `i` of a row-major [rows, cols] matrix. */
export function row(t: RefTensor, i: number): Float32Array {
  const cols = t.shape[1]!;
  return t.data.subarray(i * cols, (i + 1) * cols);
}
