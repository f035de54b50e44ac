import { constrainedMemory } from 'node:process';
import { freemem } from 'node:os';
import type { ModelProto, TensorProto } from 'onnx-buf';
import type { ModelConfig } from './folder.js';
import { GraphMapError, mapGraph } from './graph-map.js';
import { readOnnxModel } from './onnx-codec.js';
import { segmentGraph, type GraphSegment } from './segments.js';

/**
 * Share of the available memory the default budget allows. The rest is headroom: the streamed path and the pruned
 * write run on the page cache (weights are read ahead of the session that needs them), other processes keep running,
 * and the estimate itself is within about 15% of the measured peaks.
 */
export const DEFAULT_BUDGET_FRACTION = 0.75;

/** Memory of node + onnxruntime + the tokenizer before any weight loads (measured: about 105 MiB on the fixtures). */
export const RUNTIME_BYTES = 128 * 2 ** 20;

/** Which way the measure stage runs: one whole-model session, or one decoder layer's session at a time. */
export type MeasurePath = 'whole' | 'streamed';

/** {@link estimateWorkingSet}'s answer, in bytes. */
export interface WorkingSetEstimate {
  /** Peak of one whole-model onnxruntime session on CPU: every weight as float32, plus one batch's captures and logits. */
  whole: number;
  /**
   * Peak of the streamed path: the largest segment's weights as float32, plus every sequence's residual streams and
   * one layer's captures; null when the graph cannot be cut into layers (control flow).
   */
  streamed: number | null;
  /** Bytes each token of the run's sequences adds to the streamed peak (chunk documents by it to fit a budget). */
  streamedPerToken: number;
  /** Bytes of the weights as stored. */
  weights: number;
  /** The segment that sets the streamed peak and its float32 weight bytes; null when the graph cannot be cut. */
  largestSegment: {
    /** `prefix`, `layer N` or `suffix`. */
    name: string;
    /** Its weights as float32, bytes. */
    bytes: number;
  } | null;
}

/** The token counts a run will push through the model (default: none, the weights alone). */
export interface Workload {
  /** Tokens of every sequence together (the streamed path keeps each one's residual stream). */
  tokens: number;
  /** Tokens of the largest batch one whole-model forward takes. */
  batchTokens: number;
  /** Whether the run needs logits (behaviour pairs, eval): the streamed path then also runs the suffix. Default true. */
  logits?: boolean;
}

/**
 * How much memory each measure path needs for the model at `onnxPath` with `workload`. onnxruntime's CPU provider
 * computes in float32 and, for an fp16/bf16 graph, keeps float32 copies of the weights, so every weight counts 4
 * bytes per element; initializers that a Transpose or Cast turns into another constant (a tied lm_head) count twice.
 * Reads the graph, not the weights.
 * @throws {@link OnnxFormatError}, {@link GraphMapError} naming the file.
 */
export function estimateWorkingSet(
  onnxPath: string,
  config: Pick<ModelConfig, 'vocabSize'>,
  workload: Workload = { tokens: 0, batchTokens: 0 },
  model: ModelProto = readOnnxModel(onnxPath),
): WorkingSetEstimate {
  const map = mapGraph(model, onnxPath);
  const segments = cutOrNull(() => segmentGraph(model, map, onnxPath));
  const graph = model.graph!;
  const all: GraphSegment = { name: 'model', index: -2, nodes: graph.node, inputs: [], outputs: [], initializers: graph.initializer };
  const weights = graph.initializer.reduce((sum, t) => sum + storedBytes(t), 0);
  const largestSegment = segments
    ? [segments.prefix, ...segments.layers, ...(workload.logits === false ? [] : [segments.suffix])].map((segment) => ({ name: segment.name, bytes: float32Bytes(segment) })).reduce((a, b) => (b.bytes > a.bytes ? b : a))
    : null;
  const hidden = map.layers[0]!.hiddenSize;
  // One layer's captures: three tensors of MLP width (gate, up, product) and three of hidden width, float32.
  const layerCaptures = 4 * 3 * (Math.max(...map.layers.map((l) => l.intermediateSize)) + hidden);
  // Per token, one whole-model forward holds every layer's captures and the logits; the streamed path holds, for every
  // sequence at once, the residual stream going in and out of a layer, that layer's captures, and the suffix's logits.
  const streamedPerToken = 2 * 4 * hidden + layerCaptures + (workload.logits === false ? 0 : 4 * config.vocabSize);
  return {
    whole: RUNTIME_BYTES + float32Bytes(all) + workload.batchTokens * (map.layers.length * layerCaptures + 4 * config.vocabSize),
    streamed: largestSegment ? RUNTIME_BYTES + largestSegment.bytes + workload.tokens * streamedPerToken : null,
    streamedPerToken,
    weights,
    largestSegment,
  };
}

/**
 * The default memory budget: {@link DEFAULT_BUDGET_FRACTION} of the memory available now (the smaller of the
 * system's available memory and the cgroup limit, when one is set).
 */
export function defaultMemoryBudget(): number {
  const limit = constrainedMemory?.() ?? 0;
  const available = limit > 0 ? Math.min(limit, freemem()) : freemem();
  return Math.floor(available * DEFAULT_BUDGET_FRACTION);
}

/**
 * The measure path for an estimate: `streamed` when forced, else the whole model when its working set fits
 * `memoryBudget` bytes (default {@link defaultMemoryBudget}) or the graph cannot be cut, else streamed.
 */
export function chooseMeasurePath(estimate: WorkingSetEstimate, options: { streamed?: boolean; memoryBudget?: number } = {}): MeasurePath {
  if (options.streamed) return 'streamed';
  if (estimate.streamed === null) return 'whole';
  return estimate.whole <= (options.memoryBudget ?? defaultMemoryBudget()) ? 'whole' : 'streamed';
}

/** The cut, or null for a graph that cannot be cut into layers (the whole-model path still runs it). */
function cutOrNull<T>(cut: () => T): T | null {
  try {
    return cut();
  } catch (error) {
    if (error instanceof GraphMapError) return null;
    throw error;
  }
}

/** Bytes of an initializer as stored; 0 for non-float tensors' (shapes, indices: negligible next to the weights). */
function storedBytes(tensor: TensorProto): number {
  const elements = tensor.dims.reduce((a, b) => a * Number(b), 1);
  return elements * (ELEMENT_BYTES[tensor.dataType] ?? 0);
}

/** Float32 bytes of a segment's float initializers, counting those a Transpose or Cast folds into a second constant twice. */
function float32Bytes(segment: GraphSegment): number {
  const floats = new Map(segment.initializers.filter((t) => ELEMENT_BYTES[t.dataType] !== undefined && FLOAT_TYPES.has(t.dataType)).map((t) => [t.name, t]));
  let bytes = 0;
  for (const t of floats.values()) bytes += 4 * t.dims.reduce((a, b) => a * Number(b), 1);
  for (const node of segment.nodes) {
    const folded = (node.opType === 'Transpose' || node.opType === 'Cast') && node.input.length === 1 ? floats.get(node.input[0]!) : undefined;
    if (folded) bytes += 4 * folded.dims.reduce((a, b) => a * Number(b), 1);
  }
  return bytes;
}

/** ONNX element type → bytes per element (float types and the integers graphs store as constants). */
const ELEMENT_BYTES: Record<number, number> = { 1: 4, 10: 2, 16: 2, 11: 8, 6: 4, 7: 8, 9: 1, 2: 1, 3: 1 };
const FLOAT_TYPES = new Set([1, 10, 16, 11]);
