import './ort-env.js'; // before onnxruntime-node, which reads ORT_DISABLE_TELEMETRY when it loads
import * as ort from 'onnxruntime-node';
import { type KvLayout, type ModelSession } from './session.js';

/**
 * The model seen from a decoding loop: rows of token sequences that all grow by one token per step.
 * Beam search reorders rows between steps (row r continues what row `parents[r]` held); greedy keeps one row.
 */
export interface Decoder {
  /** True when past keys/values are reused; false when every step recomputes the whole prefix. */
  readonly usesCache: boolean;
  /** Starts `rows` copies of `prompt`; returns the next-token logits after the prompt, [vocab] (identical for all rows). */
  start(prompt: readonly number[], rows: number): Promise<Float32Array>;
  /** Row r becomes row `parents[r]` + `tokens[r]`; returns next-token logits for every row, [rows, vocab] row-major. */
  advance(parents: readonly number[], tokens: readonly number[]): Promise<Float32Array>;
}

/** KV-cache decoding when the graph has past_key_values inputs, else prefix recomputation. */
export function openDecoder(session: ModelSession, options: { cache?: boolean } = {}): Decoder {
  if (session.kv && options.cache !== false) return new KvCacheDecoder(session, session.kv);
  return new RecomputeDecoder(session);
}

/** Past keys/values per layer, [rows, kvHeads, length, headDim], in the optimum / transformers.js layout. */
class KvCache {
  constructor(
    readonly layout: KvLayout,
    /** pastKeyNames then pastValueNames order, one tensor per input. */
    readonly tensors: ort.Tensor[],
    readonly rows: number,
    readonly length: number,
  ) {}

  static fromPresent(layout: KvLayout, outputs: Record<string, ort.Tensor>, rows: number): KvCache {
    const names = [...layout.presentKeyNames, ...layout.presentValueNames];
    const tensors = names.map((name) => {
      const tensor = outputs[name];
      if (!tensor) throw new Error(`KV-cache model did not return ${name}`);
      return tensor;
    });
    const length = tensors[0]!.dims[2]!;
    return new KvCache(layout, tensors, rows, length);
  }

  /** Feeds naming each past input. */
  feeds(): Record<string, ort.Tensor> {
    const names = [...this.layout.pastKeyNames, ...this.layout.pastValueNames];
    return Object.fromEntries(names.map((name, i) => [name, this.tensors[i]!]));
  }

  /** Gathers rows along dim 0: new row r is old row parents[r]. A no-op when parents is the identity. */
  reorder(parents: readonly number[]): KvCache {
    const identity = parents.length === this.rows && parents.every((p, r) => p === r);
    if (identity) return this;
    for (const p of parents) {
      if (!Number.isInteger(p) || p < 0 || p >= this.rows) throw new Error(`KV-cache reorder: parent row ${p} out of range 0..${this.rows - 1}`);
    }
    const tensors = this.tensors.map((tensor) => {
      const rowSize = tensor.size / this.rows;
      const data = tensor.data as Float32Array | Uint16Array;
      const out = new (data.constructor as Float32ArrayConstructor | Uint16ArrayConstructor)(parents.length * rowSize);
      parents.forEach((p, r) => out.set(data.subarray(p * rowSize, (p + 1) * rowSize), r * rowSize));
      return new ort.Tensor(tensor.type as 'float32' | 'float16', out, [parents.length, ...tensor.dims.slice(1)]);
    });
    return new KvCache(this.layout, tensors, parents.length, this.length);
  }
}

/** One new token per row per step, past keys/values fed back (reordered by beam when rows change parents). */
export class KvCacheDecoder implements Decoder {
  readonly usesCache = true;
  private cache: KvCache | undefined;
  /** Set between start and the first advance: how many identical rows the single prompt row stands for. */
  private startRows: number | undefined;

  constructor(
    private readonly session: ModelSession,
    private readonly layout: KvLayout,
  ) {}

  async start(prompt: readonly number[], rows: number): Promise<Float32Array> {
    const outputs = await this.session.run(this.session.initialFeeds([prompt]));
    // The prompt is run once; the rows are identical copies, so the first advance gathers every row from this one.
    this.cache = KvCache.fromPresent(this.layout, outputs, 1);
    this.startRows = rows;
    const logits = this.logitsOf(outputs, 1);
    const vocab = logits.length / prompt.length;
    return logits.slice((prompt.length - 1) * vocab);
  }

  async advance(parents: readonly number[], tokens: readonly number[]): Promise<Float32Array> {
    if (!this.cache) throw new Error('KvCacheDecoder.advance called before start');
    if (parents.length !== tokens.length) throw new Error('advance: parents and tokens differ in length');
    if (this.startRows !== undefined) {
      for (const p of parents) if (p < 0 || p >= this.startRows) throw new Error(`advance: parent row ${p} out of range 0..${this.startRows - 1}`);
      parents = parents.map(() => 0);
      this.startRows = undefined;
    }
    const cache = this.cache.reorder(parents);
    const rows = parents.length;
    const total = cache.length + 1;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [rows, 1]),
      ...cache.feeds(),
    };
    if (this.session.needsAttentionMask) feeds['attention_mask'] = new ort.Tensor('int64', new BigInt64Array(rows * total).fill(1n), [rows, total]);
    if (this.session.needsPositionIds) feeds['position_ids'] = new ort.Tensor('int64', new BigInt64Array(rows).fill(BigInt(cache.length)), [rows, 1]);
    const outputs = await this.session.run(feeds);
    this.cache = KvCache.fromPresent(this.layout, outputs, rows);
    return this.logitsOf(outputs, rows);
  }

  private logitsOf(outputs: Record<string, ort.Tensor>, rows: number): Float32Array {
    const logits = outputs[this.session.logitsName];
    if (!logits || logits.dims[0] !== rows) throw new Error(`KV-cache step returned no logits for ${rows} rows`);
    return this.session.checkedLogits(logits);
  }
}

/** For graphs without a KV cache: every step runs the full sequences again and keeps the last position. */
export class RecomputeDecoder implements Decoder {
  readonly usesCache = false;
  private sequences: number[][] = [];

  constructor(private readonly session: ModelSession) {}

  async start(prompt: readonly number[], rows: number): Promise<Float32Array> {
    this.sequences = Array.from({ length: rows }, () => [...prompt]);
    const { logits, dims } = await this.session.forward([prompt]);
    const vocab = dims[2];
    return logits.slice((dims[1] - 1) * vocab, dims[1] * vocab);
  }

  async advance(parents: readonly number[], tokens: readonly number[]): Promise<Float32Array> {
    if (parents.length !== tokens.length) throw new Error('advance: parents and tokens differ in length');
    this.sequences = parents.map((p, r) => {
      const parent = this.sequences[p];
      if (!parent) throw new Error(`advance: parent row ${p} out of range`);
      return [...parent, tokens[r]!];
    });
    const { logits, dims } = await this.session.forward(this.sequences);
    const [rows, length, vocab] = dims;
    const last = new Float32Array(rows * vocab);
    for (let r = 0; r < rows; r++) last.set(logits.subarray((r * length + length - 1) * vocab, (r * length + length) * vocab), r * vocab);
    return last;
  }
}
