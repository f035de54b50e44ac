/**
 * A plain-JS forward of the llama fixture, written from the Llama architecture and read straight from its
 * model.safetensors (no ONNX, no code under test): the independent computation the behaviour selection is checked
 * against. Each layer's GLU product (the down_proj input) can be masked and shifted, as neuron removal
 * (mask 0) or mean replacement (mask 0, shift = the mean) do. Checked against Hugging Face's logits in its own test.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtureDir, readSafetensorsF32, type RefTensor } from '@fairprune/fixtures';

interface Config {
  hidden_size: number;
  intermediate_size: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  num_hidden_layers: number;
  rms_norm_eps: number;
  vocab_size: number;
  rope_parameters: { rope_theta: number };
}

/** Per layer: neuron → [mask, shift]; the GLU product a_n becomes a_n · mask + shift. */
export type GluEdit = ReadonlyMap<number, ReadonlyMap<number, readonly [number, number]>>;

export class ReferenceLlama {
  private readonly w: Map<string, RefTensor>;
  readonly config: Config;

  constructor() {
    this.w = readSafetensorsF32('llama');
    this.config = JSON.parse(readFileSync(join(fixtureDir('llama'), 'config.json'), 'utf8')) as Config;
  }

  private t(name: string): Float32Array {
    const tensor = this.w.get(name);
    if (!tensor) throw new Error(`llama fixture: no tensor ${name}`);
    return tensor.data;
  }

  /** y[T, out] = x[T, in] · Wᵀ for an HF [out, in] weight. */
  private static linear(x: Float64Array, rows: number, w: Float32Array, out: number, inDim: number): Float64Array {
    const y = new Float64Array(rows * out);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < out; o++) {
        let s = 0;
        for (let i = 0; i < inDim; i++) s += x[r * inDim + i]! * w[o * inDim + i]!;
        y[r * out + o] = s;
      }
    }
    return y;
  }

  private rmsNorm(x: Float64Array, rows: number, weight: Float32Array): Float64Array {
    const h = this.config.hidden_size;
    const y = new Float64Array(x.length);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let i = 0; i < h; i++) ss += x[r * h + i]! ** 2;
      const scale = 1 / Math.sqrt(ss / h + this.config.rms_norm_eps);
      for (let i = 0; i < h; i++) y[r * h + i] = x[r * h + i]! * scale * weight[i]!;
    }
    return y;
  }

  /** Rotary embedding in place (HF `rotate_half` convention) on [T, heads · d]. */
  private rope(x: Float64Array, rows: number, heads: number): void {
    const d = this.config.head_dim;
    const half = d / 2;
    for (let p = 0; p < rows; p++) {
      for (let h = 0; h < heads; h++) {
        const base = p * heads * d + h * d;
        for (let i = 0; i < half; i++) {
          const angle = p / this.config.rope_parameters.rope_theta ** ((2 * i) / d);
          const [c, s] = [Math.cos(angle), Math.sin(angle)];
          const [x1, x2] = [x[base + i]!, x[base + i + half]!];
          x[base + i] = x1 * c - x2 * s;
          x[base + i + half] = x2 * c + x1 * s;
        }
      }
    }
  }

  /** Logits [T, V] of one sequence, with optional edits of the GLU products; `record` sees each layer's GLU product [T, I] before the edit. */
  forward(ids: readonly number[], edit: GluEdit = new Map(), record?: (layer: number, glu: Float64Array) => void): Float64Array[] {
    const { hidden_size: H, intermediate_size: I, num_attention_heads: nH, num_key_value_heads: nKV, head_dim: d, vocab_size: V } = this.config;
    const T = ids.length;
    const embed = this.t('model.embed_tokens.weight');
    let x = new Float64Array(T * H);
    ids.forEach((id, p) => {
      for (let i = 0; i < H; i++) x[p * H + i] = embed[id * H + i]!;
    });
    for (let l = 0; l < this.config.num_hidden_layers; l++) {
      const pre = `model.layers.${l}.`;
      const h = this.rmsNorm(x, T, this.t(`${pre}input_layernorm.weight`));
      const q = ReferenceLlama.linear(h, T, this.t(`${pre}self_attn.q_proj.weight`), nH * d, H);
      const k = ReferenceLlama.linear(h, T, this.t(`${pre}self_attn.k_proj.weight`), nKV * d, H);
      const v = ReferenceLlama.linear(h, T, this.t(`${pre}self_attn.v_proj.weight`), nKV * d, H);
      this.rope(q, T, nH);
      this.rope(k, T, nKV);
      const attn = new Float64Array(T * nH * d);
      for (let head = 0; head < nH; head++) {
        const kvHead = Math.floor(head / (nH / nKV));
        for (let p = 0; p < T; p++) {
          const scores = Array.from({ length: p + 1 }, (_, s) => {
            let dot = 0;
            for (let i = 0; i < d; i++) dot += q[p * nH * d + head * d + i]! * k[s * nKV * d + kvHead * d + i]!;
            return dot / Math.sqrt(d);
          });
          const max = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - max));
          const z = e.reduce((a, b) => a + b, 0);
          for (let s = 0; s <= p; s++) for (let i = 0; i < d; i++) attn[p * nH * d + head * d + i]! += (e[s]! / z) * v[s * nKV * d + kvHead * d + i]!;
        }
      }
      const o = ReferenceLlama.linear(attn, T, this.t(`${pre}self_attn.o_proj.weight`), H, nH * d);
      x = x.map((value, i) => value + o[i]!);
      const h2 = this.rmsNorm(x, T, this.t(`${pre}post_attention_layernorm.weight`));
      const g = ReferenceLlama.linear(h2, T, this.t(`${pre}mlp.gate_proj.weight`), I, H);
      const u = ReferenceLlama.linear(h2, T, this.t(`${pre}mlp.up_proj.weight`), I, H);
      const a = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]!);
      record?.(l, a);
      for (const [n, [mask, shift]] of edit.get(l) ?? []) for (let p = 0; p < T; p++) a[p * I + n] = a[p * I + n]! * mask + shift;
      const down = ReferenceLlama.linear(a, T, this.t(`${pre}mlp.down_proj.weight`), H, I);
      x = x.map((value, i) => value + down[i]!);
    }
    const final = this.rmsNorm(x, T, this.t('model.norm.weight'));
    const logits = ReferenceLlama.linear(final, T, embed, V, H);
    return Array.from({ length: T }, (_, p) => logits.subarray(p * V, (p + 1) * V));
  }

  /** Each layer's mean GLU product per neuron over every position of the sequences. */
  meanGlu(sequences: readonly (readonly number[])[]): Float64Array[] {
    const { intermediate_size: I, num_hidden_layers: L } = this.config;
    const sums = Array.from({ length: L }, () => new Float64Array(I));
    let positions = 0;
    for (const ids of sequences) {
      this.forward(ids, new Map(), (layer, a) => {
        for (let i = 0; i < a.length; i++) sums[layer]![i % I]! += a[i]!;
      });
      positions += ids.length;
    }
    return sums.map((s) => s.map((v) => v / positions));
  }
}

/** log p(continuation | prompt) from per-position logits of prompt + continuation. */
export function continuationLogProb(logits: readonly Float64Array[], promptLength: number, continuation: readonly number[]): number {
  let total = 0;
  continuation.forEach((id, j) => {
    const row = logits[promptLength + j - 1]!;
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let z = 0;
    for (const v of row) z += Math.exp(v - max);
    total += row[id]! - max - Math.log(z);
  });
  return total;
}
