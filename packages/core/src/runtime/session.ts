import './ort-env.js'; // before onnxruntime-node, which reads ORT_DISABLE_TELEMETRY when it loads
import * as ort from 'onnxruntime-node';
import type { ModelConfig } from '../model/folder.js';
import { f16ToF32 } from '../model/dtype.js';
import { requireFinite } from './finite.js';

/** onnxruntime execution provider. */
export type SessionDevice = 'cpu' | 'cuda';
/** Every {@link SessionDevice}, for option checks and UIs (the CLI's `--device` choices). */
export const SESSION_DEVICES: readonly SessionDevice[] = ['cpu', 'cuda'];

/** Options of {@link ModelSession.create}. */
export interface ModelSessionOptions {
  /** Execution provider. `cuda` falls back to CPU (with `onFallback` called) when the provider libraries are missing. */
  device?: SessionDevice;
  /** intra-op threads; default: ORT's choice. */
  threads?: number;
  /** onnxruntime graph optimisation level. Default `all`. */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Let onnxruntime pre-pack MatMul weights when the session opens (default true): faster forwards, but a slower
   * load and a second copy of the weights. A session that runs only a few forwards (bias analysis) opens faster
   * without it: on a Llama-3.2-1B-shaped fp32 model, 12 s instead of 40 s, at 3 s instead of 1 s per 16-token forward.
   */
  prepackWeights?: boolean;
  /** KV head count / head dim when the graph leaves them symbolic. */
  config?: Pick<ModelConfig, 'numKeyValueHeads' | 'headDim'>;
  /** Called with a one-line explanation when `cuda` was asked for but CPU is used. Default: print to stderr. */
  onFallback?: (message: string) => void;
  /** For a model given as bytes: the folder its external data locations are relative to (ORT reads the files). */
  externalDataDir?: string;
  /** Return NaN/±Inf logits and activations instead of refusing them (the CLI's `--allow-nonfinite`). Default false. */
  allowNonfinite?: boolean;
  /** Graph inputs beyond the decoder's own that the caller feeds itself (e.g. the per-layer neuron masks). */
  extraInputs?: readonly string[];
}

/** The KV-cache interface of a model in the optimum / transformers.js layout. */
export interface KvLayout {
  /** Layers with a past key/value pair. */
  numLayers: number;
  /** Key/value heads, from the graph, else from `ModelSessionOptions.config`. */
  numKvHeads: number;
  /** Head dimension, from the graph, else from `ModelSessionOptions.config`. */
  headDim: number;
  /** Element type of the past/present tensors. */
  dtype: 'float32' | 'float16';
  /** Per layer i: `past_key_values.i.key` / `.value` inputs and `present.i.key` / `.value` outputs. */
  pastKeyNames: string[];
  /** `past_key_values.i.value` input per layer. */
  pastValueNames: string[];
  /** `present.i.key` output per layer. */
  presentKeyNames: string[];
  /** `present.i.value` output per layer. */
  presentValueNames: string[];
}

/** Logits of {@link ModelSession.forward}. */
export interface ForwardResult {
  /** Row-major [B, T, V] float32 logits. */
  logits: Float32Array;
  /** Shape of `logits`: batch rows B, positions T, vocabulary size V. */
  dims: [number, number, number];
}

let logLevelSet = false;

/** One onnxruntime-node session over a decoder model, plain or KV-cache form. */
export class ModelSession {
  /** Graph input names. */
  readonly inputNames: readonly string[];
  /** Graph output names. */
  readonly outputNames: readonly string[];
  /** Present when the graph has past_key_values.* inputs. */
  readonly kv: KvLayout | undefined;
  /** The graph takes `position_ids` (fed as 0..T−1 from the past length). */
  readonly needsPositionIds: boolean;
  /** The graph takes `attention_mask` (fed as all ones: sequences are never padded). */
  readonly needsAttentionMask: boolean;
  /** Name of the logits output (`logits`, else the first output). */
  readonly logitsName: string;
  /** The sequence length input_ids is fixed to in the graph; undefined when symbolic (the usual export). */
  readonly fixedSequenceLength: number | undefined;
  /** Non-finite logits are returned instead of refused ({@link ModelSessionOptions.allowNonfinite}). */
  readonly allowNonfinite: boolean;

  private constructor(
    /** The underlying onnxruntime session, for raw access. */
    readonly ort: ort.InferenceSession,
    /** The execution provider actually used. */
    readonly device: SessionDevice,
    /** Why CPU is used although `cuda` was asked for. */
    readonly fallbackReason: string | undefined,
    options: ModelSessionOptions,
  ) {
    this.allowNonfinite = options.allowNonfinite ?? false;
    const ids = ort.inputMetadata.find((m) => m.name === 'input_ids');
    const length = ids?.isTensor ? ids.shape[1] : undefined;
    this.fixedSequenceLength = typeof length === 'number' && length > 0 ? length : undefined;
    this.inputNames = ort.inputNames;
    this.outputNames = ort.outputNames;
    this.needsPositionIds = this.inputNames.includes('position_ids');
    this.needsAttentionMask = this.inputNames.includes('attention_mask');
    this.logitsName = this.outputNames.includes('logits') ? 'logits' : this.outputNames[0]!;
    this.kv = detectKvLayout(ort, options.config);
    const known = new Set(['input_ids', 'attention_mask', 'position_ids', ...(this.kv?.pastKeyNames ?? []), ...(this.kv?.pastValueNames ?? []), ...(options.extraInputs ?? [])]);
    const unknown = this.inputNames.filter((name) => !known.has(name));
    if (!this.inputNames.includes('input_ids') || unknown.length > 0) {
      throw new Error(
        `Unsupported model inputs: ${this.inputNames.join(', ')} (expected input_ids, attention_mask, optional position_ids and past_key_values.{i}.key/value)`,
      );
    }
  }

  /**
   * Opens a model from a path (ORT reads external data itself) or from bytes.
   * @throws when onnxruntime cannot load the model (the message names the file), or the graph has inputs other than
   *   input_ids, attention_mask, position_ids and past_key_values.
   */
  static async create(model: string | Uint8Array, options: ModelSessionOptions = {}): Promise<ModelSession> {
    const where = typeof model === 'string' ? model : 'model bytes';
    const opened = await openOrtSession(model, ortSessionOptions(options), options.device ?? 'cpu', where, options.onFallback);
    return new ModelSession(opened.session, opened.device, opened.fallbackReason, options);
  }

  /** Raw run: feeds by input name; `fetches` limits the outputs returned. */
  async run(feeds: Record<string, ort.Tensor>, fetches?: readonly string[]): Promise<Record<string, ort.Tensor>> {
    const result = fetches ? await this.ort.run(feeds, [...fetches]) : await this.ort.run(feeds);
    return result as Record<string, ort.Tensor>;
  }

  /**
   * The feeds for a full forward of equal-length sequences from position 0: input_ids, attention_mask of ones,
   * position_ids 0..T-1 when the graph takes them, and an empty past for the KV form.
   */
  initialFeeds(batch: readonly (readonly number[])[]): Record<string, ort.Tensor> {
    return decoderFeeds(batch, this);
  }

  /** Zero-length past tensors [B, kvHeads, 0, headDim] for the first KV step. */
  emptyPast(batchSize: number): Record<string, ort.Tensor> {
    return this.kv ? emptyPastFeeds(this.kv, batchSize) : {};
  }

  /** Full forward from position 0 of equal-length sequences → float32 logits [B, T, V]; `extra` feeds the caller's own inputs. */
  async forward(batch: readonly (readonly number[])[], extra: Record<string, ort.Tensor> = {}): Promise<ForwardResult> {
    const out = await this.run({ ...this.initialFeeds(batch), ...extra }, [this.logitsName]);
    const logits = out[this.logitsName]!;
    const dims = logits.dims as number[];
    if (dims.length !== 3) throw new Error(`logits output "${this.logitsName}" has shape [${dims.join(', ')}], expected [B, T, V]`);
    return { logits: this.checkedLogits(logits), dims: [dims[0]!, dims[1]!, dims[2]!] };
  }

  /**
   * The float32 values of a logits output, refused when one is NaN or ±Infinity (unless `allowNonfinite`): a score,
   * an argmax or an accuracy computed from them would be meaningless.
   * @throws {@link NonFiniteError} naming the output and the row (batch × position) and vocabulary entry.
   */
  checkedLogits(tensor: ort.Tensor): Float32Array {
    const values = tensorToFloat32(tensor);
    if (!this.allowNonfinite) {
      requireFinite(values, tensor.dims.at(-1) ?? values.length, `logits output "${this.logitsName}" (rows: batch × position; columns: vocabulary)`);
    }
    return values;
  }

  /** Frees the onnxruntime session; the object cannot be used after. */
  async release(): Promise<void> {
    await this.ort.release();
  }
}

/** Which inputs a decoder graph takes, as {@link decoderFeeds} needs to know. */
export interface DecoderInputs {
  /** The graph takes `attention_mask`. */
  needsAttentionMask: boolean;
  /** The graph takes `position_ids`. */
  needsPositionIds: boolean;
  /** The past inputs of a KV-cache graph; undefined otherwise. */
  kv: Pick<KvLayout, 'numKvHeads' | 'headDim' | 'dtype' | 'pastKeyNames' | 'pastValueNames'> | undefined;
}

/**
 * Feeds for a full forward of equal-length sequences from position 0: input_ids, attention_mask of ones,
 * position_ids 0..T-1 when the graph takes them, and an empty past for the KV form.
 */
export function decoderFeeds(batch: readonly (readonly number[])[], inputs: DecoderInputs): Record<string, ort.Tensor> {
  const b = batch.length;
  const t = batch[0]?.length ?? 0;
  if (b === 0 || t === 0) throw new Error('forward needs at least one non-empty sequence');
  if (batch.some((seq) => seq.length !== t)) {
    throw new Error(`forward batches need equal lengths, got ${batch.map((s) => s.length).join(', ')}`);
  }
  const ids = new BigInt64Array(b * t);
  const positions = new BigInt64Array(b * t);
  batch.forEach((seq, i) =>
    seq.forEach((id, j) => {
      ids[i * t + j] = BigInt(id);
      positions[i * t + j] = BigInt(j);
    }),
  );
  const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', ids, [b, t]) };
  if (inputs.needsAttentionMask) feeds['attention_mask'] = new ort.Tensor('int64', new BigInt64Array(b * t).fill(1n), [b, t]);
  if (inputs.needsPositionIds) feeds['position_ids'] = new ort.Tensor('int64', positions, [b, t]);
  if (inputs.kv) Object.assign(feeds, emptyPastFeeds(inputs.kv, b));
  return feeds;
}

/** Zero-length past tensors [B, kvHeads, 0, headDim] for the first KV step. */
export function emptyPastFeeds(kv: NonNullable<DecoderInputs['kv']>, batchSize: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  const dims = [batchSize, kv.numKvHeads, 0, kv.headDim];
  for (const name of [...kv.pastKeyNames, ...kv.pastValueNames]) {
    feeds[name] = kv.dtype === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), dims) : new ort.Tensor('float32', new Float32Array(0), dims);
  }
  return feeds;
}

/** onnxruntime session options (threads, optimisation, prepacking, external data folder) of {@link ModelSessionOptions}. */
export function ortSessionOptions(options: ModelSessionOptions): ort.InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
    ...(options.threads !== undefined ? { intraOpNumThreads: options.threads } : {}),
    extra: {
      session: {
        intra_op: { allow_spinning: '0' },
        ...(options.prepackWeights === false ? { disable_prepacking: '1' } : {}),
        ...(options.externalDataDir !== undefined ? { model_external_initializers_file_folder_path: options.externalDataDir } : {}),
      },
    },
  };
}

/** float32 view (or converted copy for float16) of an ORT tensor's data. */
export function tensorToFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === 'float32') return tensor.data as Float32Array;
  if (tensor.type === 'float16') {
    const bits = tensor.data as Uint16Array;
    const out = new Float32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = f16ToF32(bits[i]!);
    return out;
  }
  throw new Error(`Expected a float32 or float16 tensor, got ${tensor.type}`);
}

/**
 * Opens an onnxruntime session on `device`. `cuda` falls back to CPU when the CUDA provider libraries are missing,
 * calling `onFallback` (default: a line on stderr) with the reason, which names the fix.
 * @throws naming `where` when onnxruntime cannot load the model on either provider.
 */
export async function openOrtSession(
  model: string | Uint8Array,
  base: ort.InferenceSession.SessionOptions,
  device: SessionDevice,
  where: string,
  onFallback: ((message: string) => void) | undefined,
): Promise<{ session: ort.InferenceSession; device: SessionDevice; fallbackReason: string | undefined }> {
  if (!logLevelSet) {
    // ORT prints a line on failed provider loads even when we handle the error; we report it ourselves.
    ort.env.logLevel = 'fatal';
    logLevelSet = true;
  }
  const open = (providers: ort.InferenceSession.ExecutionProviderConfig[]) =>
    typeof model === 'string'
      ? ort.InferenceSession.create(model, { ...base, executionProviders: providers })
      : ort.InferenceSession.create(model, { ...base, executionProviders: providers });
  if (device === 'cuda') {
    try {
      return { session: await open(['cuda', 'cpu']), device: 'cuda', fallbackReason: undefined };
    } catch (error) {
      const message = (error as Error).message;
      if (!/cuda|provider|shared library/i.test(message)) throw wrapOpenError(error, where);
      const reason =
        `CUDA execution provider unavailable (${message.split('\n')[0]}); running on CPU. ` +
        'Install the provider libraries with ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node, and CUDA 12 + cuDNN 9 on LD_LIBRARY_PATH.';
      (onFallback ?? ((m: string) => process.stderr.write(`fairprune: ${m}\n`)))(reason);
      try {
        return { session: await open(['cpu']), device: 'cpu', fallbackReason: reason };
      } catch (cpuError) {
        throw wrapOpenError(cpuError, where);
      }
    }
  }
  try {
    return { session: await open(['cpu']), device: 'cpu', fallbackReason: undefined };
  } catch (error) {
    throw wrapOpenError(error, where);
  }
}

function wrapOpenError(error: unknown, where: string): Error {
  return new Error(`onnxruntime could not load ${where}: ${(error as Error).message}`, { cause: error });
}

/** The `past_key_values.{i}.key` / `.value` inputs among `inputNames`, indexed by layer. */
export function pastInputNames(inputNames: readonly string[]): Pick<KvLayout, 'pastKeyNames' | 'pastValueNames'> {
  const pastKeyNames: string[] = [];
  const pastValueNames: string[] = [];
  for (const name of inputNames) {
    const match = /^past_key_values\.(\d+)\.(key|value)$/.exec(name);
    if (match) (match[2] === 'key' ? pastKeyNames : pastValueNames)[Number(match[1])] = name;
  }
  return { pastKeyNames, pastValueNames };
}

function detectKvLayout(session: ort.InferenceSession, config: ModelSessionOptions['config']): KvLayout | undefined {
  const { pastKeyNames, pastValueNames } = pastInputNames(session.inputNames);
  if (pastKeyNames.length === 0) return undefined;
  const numLayers = pastKeyNames.length;
  const presentKeyNames: string[] = [];
  const presentValueNames: string[] = [];
  for (let i = 0; i < numLayers; i++) {
    for (const [kind, list, past] of [['key', presentKeyNames, pastKeyNames], ['value', presentValueNames, pastValueNames]] as const) {
      const present = `present.${i}.${kind}`;
      if (!past[i]) throw new Error(`KV-cache model lacks input past_key_values.${i}.${kind}`);
      if (!session.outputNames.includes(present)) throw new Error(`KV-cache model lacks output ${present}`);
      list.push(present);
    }
  }
  const meta = session.inputMetadata.find((m) => m.name === pastKeyNames[0]);
  const shape = meta && meta.isTensor ? meta.shape : [];
  const type = meta && meta.isTensor ? meta.type : 'float32';
  const numKvHeads = typeof shape[1] === 'number' ? shape[1] : config?.numKeyValueHeads;
  const headDim = typeof shape[3] === 'number' ? shape[3] : config?.headDim;
  if (numKvHeads === undefined || headDim === undefined) {
    throw new Error(`KV-cache input ${pastKeyNames[0]} has symbolic kv heads/head dim and no config was given`);
  }
  if (type !== 'float32' && type !== 'float16') throw new Error(`KV-cache input ${pastKeyNames[0]} has unsupported type ${type}`);
  return { numLayers, numKvHeads, headDim, dtype: type, pastKeyNames, pastValueNames, presentKeyNames, presentValueNames };
}
