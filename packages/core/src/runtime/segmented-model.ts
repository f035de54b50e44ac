import { mkdtempSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ModelProto } from 'onnx-buf';
import type { ModelConfig } from '../model/folder.js';
import { mapGraph, type ActivationKey, type GraphMap } from '../model/graph-map.js';
import { checkExternalData, encodeOnnxModel, ExternalDataWriter, externalLocation, readOnnxModel } from '../model/onnx-codec.js';
import { segmentGraph, segmentModel, type GraphSegment, type GraphSegments } from '../model/segments.js';
import { addCaptureOutputs, checkCapture, type CapturedActivations } from './capture.js';
import { requireFinite } from './finite.js';
import { addNeuronMaskInputs, neuronMaskFeeds, type LayerRows } from './neuron-masks.js';
import { decoderFeeds, openOrtSession, ortSessionOptions, pastInputNames, tensorToFloat32, type DecoderInputs, type ForwardResult, type SessionDevice } from './session.js';

/** Options of {@link SegmentedModel.open}. */
export interface SegmentedModelOptions {
  /** Tensors captured in every layer (default none). */
  keys?: readonly ActivationKey[];
  /** onnxruntime intra-op threads; default: ORT's choice. */
  threads?: number;
  /** KV head count / head dim when the graph leaves them symbolic. */
  config?: Pick<ModelConfig, 'numKeyValueHeads' | 'headDim'>;
  /**
   * Execution provider of every segment's session (default cpu). `cuda` holds one segment's weights on the GPU at a
   * time; without the CUDA provider libraries it falls back to CPU, saying so once through `onFallback`.
   */
  device?: SessionDevice;
  /** Called once with the reason when `cuda` was asked for but CPU is used. Default: a line on stderr. */
  onFallback?: (message: string) => void;
  /** Hand on NaN/±Inf captures and logits instead of refusing them (the CLI's `--allow-nonfinite`). Default false. */
  allowNonfinite?: boolean;
  /**
   * One-row neuron masks (and mean replacements) per layer, multiplying the GLU product through
   * {@link addNeuronMaskInputs}, made from the graph's map once it is read: the segments then compute the model as
   * pruned, without a pruned copy. Default none.
   */
  neuronMasks?: (map: GraphMap) => {
    /** One row per layer multiplying the GLU product (0 at pruned neurons); a missing layer is all ones. */
    masks: LayerRows;
    /** One row per layer added after the mask (the mean at mean-replaced neurons); absent: no replacement inputs. */
    replacements?: LayerRows;
  };
}

/** What one {@link SegmentedModel.run} hands back as the segments come out. */
export interface SegmentHandlers {
  /** After layer `layer` ran for every sequence: its captured tensors, one map per sequence (input order). */
  onLayer?: (layer: number, captured: CapturedActivations[]) => Promise<void> | void;
  /** Float32 logits [T, V] of one sequence (index in input order); without it the suffix is not run. */
  onLogits?: (sequence: number, logits: Float32Array, vocab: number) => void;
  /** Float32 residual stream [T, H] of one sequence after the last layer (the final norm's input). */
  onHidden?: (sequence: number, hidden: Float32Array, width: number) => void;
}

/** Initializers at least this large move to the temp weights file of a graph with embedded weights. */
const EXTERNALIZE_BYTES = 1024;
/** Read-ahead chunk: the bytes are only pulled into the page cache, so one small buffer serves every read. */
const READ_AHEAD_CHUNK = 8 << 20;

/** onnxruntime-node tensor type → ONNX element type, to declare a segment's inputs. */
const ONNX_ELEM_TYPES: Record<string, number> = {
  float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11, uint32: 12, uint64: 13,
};

/**
 * A decoder model run one segment at a time ({@link segmentGraph}): the prefix, then each decoder layer, then the
 * suffix, with one onnxruntime session alive at a time, and only the residual stream and the tensors later layers
 * share kept between them. Weights stay where they are: external data is read by offset from the original file;
 * a graph with embedded weights has them written once to a temp file, removed by {@link close}.
 */
export class SegmentedModel {
  private constructor(
    /** The ONNX file. */
    readonly onnxPath: string,
    /** Its graph map. */
    readonly map: GraphMap,
    /** The decoded graph, with capture outputs added (and weights pointing at the temp file when embedded). */
    private readonly model: ModelProto,
    /** The cut. */
    readonly segments: GraphSegments,
    /** Per layer: capture key (`gate_proj_layer_2`) → segment output name. */
    private readonly capturesByLayer: ReadonlyMap<string, string>[],
    private readonly inputs: DecoderInputs,
    /** Folder the segments' external data locations are relative to. */
    readonly weightsDir: string,
    /** The temp folder holding embedded weights, if any. */
    readonly tempDir: string | undefined,
    private readonly threads: number | undefined,
    /** Where the segments run; becomes `cpu` after the first segment's CUDA provider failed to load. */
    private device: SessionDevice,
    private readonly onFallback: ((message: string) => void) | undefined,
    private readonly allowNonfinite: boolean,
    /** Feeds every batch gets besides the decoder's (the neuron masks). */
    private readonly extraFeeds: Readonly<Record<string, ort.Tensor>>,
  ) {}

  /** Why the segments run on CPU although `cuda` was asked for; undefined otherwise. */
  fallbackReason: string | undefined;

  /**
   * Maps and cuts the graph at `onnxPath`; for embedded weights, writes them to a temp file. Opens no session.
   * @throws {@link OnnxFormatError} or {@link GraphMapError} naming the file.
   */
  static open(onnxPath: string, options: SegmentedModelOptions = {}): SegmentedModel {
    const model = readOnnxModel(onnxPath);
    checkExternalData(model, onnxPath);
    const map = mapGraph(model, onnxPath);
    const captures = options.keys && options.keys.length > 0 ? addCaptureOutputs(model, map, undefined, options.keys) : new Map<string, string>();
    const masked = options.neuronMasks?.(map);
    // The mask inputs are graph inputs: the cut feeds each one (or its Cast) to its layer's segment.
    const extraFeeds = masked
      ? neuronMaskFeeds(map, addNeuronMaskInputs(model, map, onnxPath, masked.replacements !== undefined), 1, masked.masks, masked.replacements)
      : {};
    const segments = segmentGraph(model, map, onnxPath, [...new Set(captures.values())]);
    const capturesByLayer = map.layers.map((layer) => {
      const own = new Map<string, string>();
      for (const key of options.keys ?? []) own.set(`${key}_layer_${layer.index}`, captures.get(`${key}_layer_${layer.index}`)!);
      return own;
    });
    const graph = model.graph!;
    let weightsDir = dirname(resolve(onnxPath));
    let tempDir: string | undefined;
    if (!graph.initializer.some((t) => externalLocation(t))) {
      // Embedded weights: one copy on disk instead of every segment carrying its bytes through protobuf.
      tempDir = mkdtempSync(join(tmpdir(), 'fairprune-segments-'));
      weightsDir = tempDir;
      const writer = new ExternalDataWriter(join(tempDir, 'weights.bin'), 'weights.bin');
      try {
        for (const tensor of graph.initializer) {
          if (tensor.rawData.byteLength < EXTERNALIZE_BYTES) continue;
          const start = writer.begin();
          writer.append(tensor.rawData);
          writer.finish(tensor, start);
        }
      } catch (error) {
        rmSync(tempDir, { recursive: true, force: true });
        throw error;
      } finally {
        writer.close();
      }
    }
    const inputs = decoderInputsOf(segments, onnxPath, options.config);
    return new SegmentedModel(
      resolve(onnxPath), map, model, segments, capturesByLayer, inputs, weightsDir, tempDir, options.threads, options.device ?? 'cpu', options.onFallback,
      options.allowNonfinite ?? false, extraFeeds,
    );
  }

  /**
   * Runs `sequences` (token ids, BOS included) through every segment; sequences of equal length share a batch.
   * Captures reach `onLayer` layer by layer, so no more than one layer's captures are held at a time.
   */
  async run(sequences: readonly (readonly number[])[], handlers: SegmentHandlers): Promise<void> {
    const groups = new Map<number, number[]>();
    sequences.forEach((ids, index) => groups.set(ids.length, [...(groups.get(ids.length) ?? []), index]));
    const batches = [...groups.values()].map((indices) => ({
      indices,
      live: new Map(Object.entries({ ...decoderFeeds(indices.map((i) => sequences[i]!), this.inputs), ...this.extraFeeds })),
    }));
    const order = [this.segments.prefix, ...this.segments.layers, ...(handlers.onLogits ? [this.segments.suffix] : [])];
    for (let k = 0; k < order.length; k++) {
      const segment = order[k]!;
      const session = await this.openSession(segment, batches[0]!.live, batches.length);
      // The next segment's weights come into the page cache while this one computes. Only a cache warm-up: a
      // failed read is reported by the next session's own load, so it is not an error here.
      const ahead = order[k + 1] ? this.readAhead(order[k + 1]!).catch(() => undefined) : Promise.resolve();
      const layer = segment.index >= 0 && segment.index < this.segments.layers.length ? segment.index : undefined;
      const captures = layer !== undefined ? this.capturesByLayer[layer]! : new Map<string, string>();
      const captured: CapturedActivations[] = sequences.map(() => new Map());
      try {
        for (const { indices, live } of batches) {
          const feeds: Record<string, ort.Tensor> = {};
          for (const name of segment.inputs) {
            const tensor = live.get(name);
            if (!tensor) throw new Error(`${this.onnxPath}: ${segment.name} reads "${name}", which no earlier segment kept`);
            feeds[name] = tensor;
          }
          const out = (await session.run(feeds, segment.outputs)) as Record<string, ort.Tensor>;
          for (const name of segment.outputs) {
            if ((this.segments.lastReader.get(name) ?? -Infinity) > segment.index) live.set(name, out[name]!);
          }
          for (const name of segment.inputs) {
            if ((this.segments.lastReader.get(name) ?? -Infinity) <= segment.index) live.delete(name);
          }
          for (const [key, output] of captures) {
            splitBatch(out[output]!, indices, (sequence, data, shape) => {
              if (!this.allowNonfinite) checkCapture(data, shape[1], key, output, sequence);
              captured[sequence]!.set(key, { data, shape });
            });
          }
          if (handlers.onHidden && segment === this.segments.layers.at(-1)) {
            splitBatch(live.get(this.segments.residual.at(-1)!)!, indices, (sequence, data, [, width]) => handlers.onHidden!(sequence, data, width));
          }
          if (segment === this.segments.suffix) {
            splitBatch(out[this.map.logits]!, indices, (sequence, data, [, vocab]) => {
              if (!this.allowNonfinite) requireFinite(data, vocab, `logits output "${this.map.logits}" of sequence ${sequence} (rows: positions; columns: vocabulary)`, '--allow-nonfinite');
              handlers.onLogits!(sequence, data, vocab);
            });
          }
        }
      } finally {
        await session.release();
        await ahead;
      }
      if (layer !== undefined && handlers.onLayer) await handlers.onLayer(layer, captured);
    }
  }

  /** Full forward of equal-length sequences → float32 logits [B, T, V], through every segment. */
  async forward(batch: readonly (readonly number[])[]): Promise<ForwardResult> {
    let logits: Float32Array | undefined;
    let vocab = 0;
    const t = batch[0]?.length ?? 0;
    if (batch.some((seq) => seq.length !== t)) throw new Error(`forward batches need equal lengths, got ${batch.map((s) => s.length).join(', ')}`);
    await this.run(batch, {
      onLogits: (sequence, data, width) => {
        vocab = width;
        logits ??= new Float32Array(batch.length * t * width);
        logits.set(data, sequence * t * width);
      },
    });
    return { logits: logits!, dims: [batch.length, t, vocab] };
  }

  /** Removes the temp weights file, if one was written. */
  close(): void {
    if (this.tempDir) rmSync(this.tempDir, { recursive: true, force: true });
  }

  private async openSession(segment: GraphSegment, live: ReadonlyMap<string, ort.Tensor>, runs: number): Promise<ort.InferenceSession> {
    const elemTypes = new Map<string, number>();
    for (const name of segment.inputs) {
      const tensor = live.get(name);
      const type = tensor ? ONNX_ELEM_TYPES[tensor.type] : undefined;
      if (type !== undefined) elemTypes.set(name, type);
    }
    const options = ortSessionOptions({
      externalDataDir: this.weightsDir,
      // One batch set per segment: pre-packing would cost more than it saves.
      prepackWeights: false,
      // onnxruntime's CPU provider computes fp16/bf16 MatMuls in float32 through Casts of the weights. Folding them
      // at creation ('all') copies each converted weight twice more: measured on the 8B-shaped fp16 model, 0.7 s per
      // layer to create and 0.3 s per run, against 0.55 s per run unfolded ('basic'). One or two runs: unfolded.
      ...(this.map.activationDtype !== 'f32' && this.device === 'cpu' && runs <= 2 ? { graphOptimizationLevel: 'basic' as const } : {}),
      ...(this.threads !== undefined ? { threads: this.threads } : {}),
    });
    const bytes = encodeOnnxModel(segmentModel(this.model, this.segments, segment, elemTypes));
    const opened = await openOrtSession(bytes, options, this.device, `${segment.name} of ${this.onnxPath}`, this.onFallback);
    // One fallback message per run: the other segments go straight to CPU.
    if (opened.fallbackReason) [this.device, this.fallbackReason] = ['cpu', opened.fallbackReason];
    return opened.session;
  }

  /**
   * Reads the segment's external weight bytes once, so onnxruntime finds them in the page cache. onnxruntime-node
   * creates and runs sessions synchronously on this thread, so every chunk is queued at once: the thread pool reads
   * while a session blocks (reads awaited one by one would advance one chunk per block). The bytes are discarded, so
   * the chunks share one buffer.
   */
  private async readAhead(segment: GraphSegment): Promise<void> {
    const buffer = Buffer.allocUnsafe(READ_AHEAD_CHUNK);
    const files = new Map<string, { offset: number; length: number }[]>();
    for (const tensor of segment.initializers) {
      const external = externalLocation(tensor);
      if (!external || external.length === undefined) continue;
      const path = join(this.weightsDir, external.location);
      files.set(path, [...(files.get(path) ?? []), { offset: external.offset, length: external.length }]);
    }
    const handles: FileHandle[] = [];
    try {
      for (const path of files.keys()) handles.push(await open(path, 'r'));
      const reads: Promise<unknown>[] = [];
      [...files.values()].forEach((ranges, f) => {
        for (const { offset, length } of ranges) {
          for (let done = 0; done < length; done += READ_AHEAD_CHUNK) {
            reads.push(handles[f]!.read(buffer, 0, Math.min(READ_AHEAD_CHUNK, length - done), offset + done));
          }
        }
      });
      await Promise.all(reads);
    } finally {
      await Promise.all(handles.map((handle) => handle.close()));
    }
  }
}

/** Hands each sequence its [T, width] float32 rows of a batch output [B, T, …]. */
function splitBatch(tensor: ort.Tensor, indices: readonly number[], take: (sequence: number, data: Float32Array, shape: [number, number]) => void): void {
  const dims = tensor.dims as number[];
  const t = dims[1]!;
  const width = dims.slice(2).reduce((x, y) => x * y, 1);
  const all = tensorToFloat32(tensor);
  indices.forEach((sequence, b) => take(sequence, all.subarray(b * t * width, (b + 1) * t * width), [t, width]));
}

/** The graph inputs the feeds must provide, with the KV past shapes from the declared inputs (or the config). */
function decoderInputsOf(segments: GraphSegments, where: string, config: SegmentedModelOptions['config']): DecoderInputs {
  const inputs = segments.graphInputs;
  const { pastKeyNames, pastValueNames } = pastInputNames([...inputs.keys()]);
  let kv: DecoderInputs['kv'];
  if (pastKeyNames.length > 0) {
    const type = inputs.get(pastKeyNames[0]!)!.type?.value;
    const tensorType = type?.case === 'tensorType' ? type.value : undefined;
    const dim = (i: number) => {
      const d = tensorType?.shape?.dim[i]?.value;
      return d?.case === 'dimValue' ? Number(d.value) : undefined;
    };
    const numKvHeads = dim(1) ?? config?.numKeyValueHeads;
    const headDim = dim(3) ?? config?.headDim;
    if (numKvHeads === undefined || headDim === undefined) {
      throw new Error(`${where}: KV-cache input ${pastKeyNames[0]} has symbolic kv heads/head dim and no config was given`);
    }
    kv = { numKvHeads, headDim, dtype: tensorType?.elemType === 10 ? 'float16' : 'float32', pastKeyNames, pastValueNames };
  }
  return { needsAttentionMask: inputs.has('attention_mask'), needsPositionIds: inputs.has('position_ids'), kv };
}
