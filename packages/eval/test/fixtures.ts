import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The shared, read-only fixtures (tiny HF models with reference outputs from transformers). */
export const FIXTURES = join(import.meta.dirname, '../../../../shared/fixtures');
export const LAMBADA_MINI = join(FIXTURES, 'data/lambada-mini.jsonl');
export const BOOLQ_MINI = join(FIXTURES, 'data/boolq-mini.jsonl');

export interface EvalRefs {
  lambada: { ll: number; greedy: boolean; ctx_ids: number[]; cont_ids: number[] }[];
  boolq: { ll_no: number; ll_yes: number; pred: number; label: number }[];
}

export function evalRefs(arch: string): EvalRefs {
  return (JSON.parse(readFileSync(join(FIXTURES, arch, 'refs/refs.json'), 'utf8')) as { eval: EvalRefs }).eval;
}
