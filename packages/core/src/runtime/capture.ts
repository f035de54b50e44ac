import { dirname, resolve } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { AttributeProtoSchema, AttributeProto_AttributeType, NodeProtoSchema, ValueInfoProtoSchema, type ModelProto } from 'onnx-buf';
import { ACTIVATION_KEYS, mapGraph, type ActivationKey, type GraphMap } from '../model/graph-map.js';
import { checkExternalData, encodeOnnxModel, graphCopy, readOnnxModel } from '../model/onnx-codec.js';
import type * as ort from 'onnxruntime-node';
import type { NeuronSelection } from '../model/neurons.js';
import type { PruneMode } from '../prune/plan.js';
import { requireFinite } from './finite.js';
import { PRUNED_HOOK_TYPES, parseActivationKey } from '../bias/metrics.js';
import { addNeuronMaskInputs, neuronMaskFeeds, pruningMasks, type NeuronMaskInputs } from './neuron-masks.js';
import { ModelSession, tensorToFloat32, type ForwardResult, type ModelSessionOptions } from './session.js';

/** One captured activation of one prompt. */
export interface CapturedTensor {
  /** Row-major [T, width] float32. */
  data: Float32Array;
  /** Shape of `data`: token positions T, then values per position. */
  shape: [number, number];
}

/** Keyed `${key}_layer_${i}` exactly as the fixtures' reference activations (e.g. `glu_product_layer_2`). */
export type CapturedActivations = Map<string, CapturedTensor>;

/** Options of {@link ActivationCapture.create}: session options plus which tensors to capture. */
export interface ActivationCaptureOptions extends ModelSessionOptions {
  /** Which layers (default all). */
  layers?: readonly number[];
  /** Which tensors (default all seven keys). */
  keys?: readonly ActivationKey[];
  /** The model at `onnxPath` when the caller has decoded (and checked) it already; it is not modified. */
  model?: ModelProto;
  /**
   * Also add the per-layer neuron mask inputs ({@link addNeuronMaskInputs}; with `replacement`, the additive ones too),
   * so {@link ActivationCapture.simulatePruning} can measure a pruned model on this session. Default: none.
   */
  neuronMasks?: {
    /** Also the additive replacement inputs (mean compensation). */
    replacement: boolean;
  };
}

/** A pruning the capture session simulates ({@link ActivationCapture.simulatePruning}). */
export interface SimulatedPruning {
  /** Pruned neurons per layer. */
  selection: NeuronSelection;
  /** `remove` drops the neurons' columns from the captured MLP-width tensors; `zero` sets them to 0. */
  mode: PruneMode;
  /** With mean compensation: each layer's mean GLU product per neuron, replacing the pruned neurons' product. */
  means?: readonly Float32Array[];
}

/** Captured types with one value per MLP neuron: pruning removes or zeroes the pruned neurons' columns there. */
const NEURON_TYPES: ReadonlySet<string> = new Set([...PRUNED_HOOK_TYPES, 'glu_product']);

/**
 * One prompt's captures as the written pruned model gives them: in the tensors with one value per MLP neuron (gate
 * and up projections, GLU product), the pruned neurons' columns dropped (`remove`) or zeroed (`zero`). Mutates `set`.
 */
export function asWritten(set: CapturedActivations, selection: NeuronSelection, mode: PruneMode): void {
  for (const [key, { data, shape }] of set) {
    const { type, layer } = parseActivationKey(key);
    const pruned = selection.get(layer);
    if (!pruned || pruned.length === 0 || !NEURON_TYPES.has(type)) continue;
    const [rows, width] = shape;
    if (mode === 'zero') {
      for (let r = 0; r < rows; r++) for (const n of pruned) data[r * width + n] = 0;
      continue;
    }
    const gone = new Set(pruned);
    const kept = Array.from({ length: width }, (_, n) => n).filter((n) => !gone.has(n));
    const out = new Float32Array(rows * kept.length);
    for (let r = 0; r < rows; r++) kept.forEach((n, k) => (out[r * kept.length + k] = data[r * width + n]!));
    set.set(key, { data: out, shape: [rows, kept.length] });
  }
}

/**
 * A session over a copy of the model whose mapped tensors are extra graph outputs (through Cast to float32 for
 * f16/bf16 models). Create once, capture many prompts.
 */
export class ActivationCapture {
  private constructor(
    /** The session over the modified graph. */
    readonly session: ModelSession,
    /** The graph map of the original model. */
    readonly map: GraphMap,
    /** capture key → graph output name. */
    readonly outputs: ReadonlyMap<string, string>,
    /** The neuron mask inputs, when the session was opened with them. */
    private readonly maskInputs: NeuronMaskInputs | undefined,
  ) {
    this.maskFeeds = maskInputs ? neuronMaskFeeds(map, maskInputs, 1) : {};
  }

  /** The mask (and replacement) feeds every run gets: all ones (and zeros) until {@link simulatePruning}. */
  private maskFeeds: Record<string, ort.Tensor>;
  /** The pruning simulated, if any. */
  private simulated: SimulatedPruning | undefined;

  /**
   * Maps the graph at `onnxPath`, adds the requested tensors as outputs and opens a session over the result.
   * @throws {@link OnnxFormatError} or {@link GraphMapError} naming the file, or onnxruntime's load error.
   */
  static async create(onnxPath: string, options: ActivationCaptureOptions = {}): Promise<ActivationCapture> {
    // The caller's decode serves weight reads and surgery too: the outputs are added to a copy of its graph.
    const model = options.model ? graphCopy(options.model) : readOnnxModel(onnxPath);
    if (!options.model) checkExternalData(model, onnxPath);
    const map = mapGraph(model, onnxPath);
    const outputs = addCaptureOutputs(model, map, options.layers, options.keys ?? ACTIVATION_KEYS);
    const masks = options.neuronMasks ? addNeuronMaskInputs(model, map, onnxPath, options.neuronMasks.replacement) : undefined;
    // Loaded from bytes, so ORT is told where the original external data lives.
    const { model: _decoded, neuronMasks: _masks, ...sessionOptions } = options;
    const session = await ModelSession.create(encodeOnnxModel(model), {
      ...sessionOptions,
      externalDataDir: dirname(resolve(onnxPath)),
      ...(masks ? { extraInputs: [...masks.masks, ...(masks.replacements ?? [])] } : {}),
    });
    return new ActivationCapture(session, map, outputs, masks);
  }

  /**
   * From now on, captures and forwards are those of the model pruned by `pruning`, or of the unpruned model again
   * (`undefined`): the pruned neurons' GLU products are masked to zero before the down projection (plus the
   * replacement values, for mean compensation), and their columns of the MLP-width captures are dropped (`remove`)
   * or zero (`zero`) — what the written model computes, without writing or loading it.
   * @throws when the session was opened without `neuronMasks` (or without their replacement inputs, when given).
   */
  simulatePruning(pruning: SimulatedPruning | undefined): void {
    if (!this.maskInputs) throw new Error('This capture session was opened without neuron mask inputs (neuronMasks), so it cannot simulate a pruning');
    const { masks, replacements } = pruning ? pruningMasks(this.map.layers.map((l) => l.intermediateSize), pruning.selection, pruning.means) : { masks: [] };
    this.maskFeeds = neuronMaskFeeds(this.map, this.maskInputs, 1, masks, replacements);
    this.simulated = pruning;
  }

  /** MLP width per layer, as the captures present it: the pruned widths while a removal is simulated. */
  get widths(): number[] {
    const removed = this.simulated?.mode === 'remove' ? this.simulated.selection : undefined;
    return this.map.layers.map((l) => l.intermediateSize - (removed?.get(l.index)?.length ?? 0));
  }

  /** Full forward of equal-length sequences → float32 logits [B, T, V], of the pruned model while one is simulated. */
  async forward(batch: readonly (readonly number[])[]): Promise<ForwardResult> {
    return this.session.forward(batch, this.maskFeeds);
  }

  /** Activations of one prompt (token ids, BOS included if the model expects it). */
  async capture(ids: readonly number[]): Promise<CapturedActivations> {
    return (await this.captureBatch([ids]))[0]!;
  }

  /** One result per prompt; prompts of equal length run as one batch. */
  async captureBatch(prompts: readonly (readonly number[])[]): Promise<CapturedActivations[]> {
    const results: CapturedActivations[] = new Array(prompts.length);
    const byLength = new Map<number, number[]>();
    prompts.forEach((p, i) => {
      const group = byLength.get(p.length);
      if (group) group.push(i);
      else byLength.set(p.length, [i]);
    });
    const fetches = [...new Set(this.outputs.values())];
    for (const indices of byLength.values()) {
      const out = await this.session.run({ ...this.session.initialFeeds(indices.map((i) => prompts[i]!)), ...this.maskFeeds }, fetches);
      indices.forEach((promptIndex, b) => {
        const captured: CapturedActivations = new Map();
        for (const [key, output] of this.outputs) {
          const tensor = out[output]!;
          const dims = tensor.dims as number[];
          const t = dims[1]!;
          const width = dims.slice(2).reduce((x, y) => x * y, 1);
          const all = tensorToFloat32(tensor);
          const data = all.slice(b * t * width, (b + 1) * t * width);
          if (!this.session.allowNonfinite) checkCapture(data, width, key, output, promptIndex);
          captured.set(key, { data, shape: [t, width] });
        }
        if (this.simulated) asWritten(captured, this.simulated.selection, this.simulated.mode);
        results[promptIndex] = captured;
      });
    }
    return results;
  }

  /** Frees the session (once: a second call does nothing). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.session.release();
  }

  private released = false;
}

/** Refuses NaN/±Inf in one captured output, naming the layer, component and graph tensor. */
export function checkCapture(values: Float32Array, width: number, key: string, output: string, prompt: number): void {
  const [, component, layer] = /^(.*)_layer_(\d+)$/.exec(key)!;
  const tensor = output.replace(/__fairprune_f32$/, '');
  requireFinite(values, width, `the activations of layer ${layer}, ${component} (graph tensor "${tensor}"), prompt ${prompt} (rows: token positions)`, '--allow-nonfinite');
}

/** Adds the mapped tensors as graph outputs; returns capture key → output name. Mutates `model`. */
export function addCaptureOutputs(
  model: ModelProto,
  map: GraphMap,
  layers: readonly number[] | undefined,
  keys: readonly ActivationKey[],
): Map<string, string> {
  const graph = model.graph!;
  const existing = new Set(graph.output.map((o) => o.name));
  const exposed = new Map<string, string>();
  const outputs = new Map<string, string>();
  const needsCast = map.activationDtype !== 'f32';
  for (const layer of map.layers) {
    if (layers && !layers.includes(layer.index)) continue;
    for (const key of keys) {
      const tensor = layer.tensors[key];
      let output = exposed.get(tensor);
      if (!output) {
        output = tensor;
        if (needsCast) {
          // ORT cannot return bf16, and f16 would need converting in JS anyway: expose a float32 copy.
          output = `${tensor}__fairprune_f32`;
          graph.node.push(
            create(NodeProtoSchema, {
              opType: 'Cast',
              name: `fairprune_capture_cast_${exposed.size}`,
              input: [tensor],
              output: [output],
              attribute: [create(AttributeProtoSchema, { name: 'to', type: AttributeProto_AttributeType.INT, i: 1n })],
            }),
          );
        }
        if (!existing.has(output)) graph.output.push(create(ValueInfoProtoSchema, { name: output }));
        exposed.set(tensor, output);
      }
      outputs.set(`${key}_layer_${layer.index}`, output);
    }
  }
  return outputs;
}
