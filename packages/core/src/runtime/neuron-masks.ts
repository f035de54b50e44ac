import { dirname, resolve } from 'node:path';
import { create } from '@bufbuild/protobuf';
import * as ort from 'onnxruntime-node';
import { AttributeProtoSchema, AttributeProto_AttributeType, NodeProtoSchema, ValueInfoProtoSchema, type ModelProto, type NodeProto } from 'onnx-buf';
import { ONNX_FLOAT, onnxFromDtype } from '../model/dtype.js';
import { mapGraph, type GraphMap } from '../model/graph-map.js';
import { checkExternalData, encodeOnnxModel, readOnnxModel } from '../model/onnx-codec.js';
import type { NeuronSelection } from '../model/neurons.js';
import { ModelSession, type ForwardResult, type ModelSessionOptions } from './session.js';

/** Options of {@link NeuronMaskedModel.create}. */
export interface NeuronMaskedModelOptions extends ModelSessionOptions {
  /** Also add one additive input per layer (`x·mask + replacement`), e.g. for mean-replacement. Default false. */
  replacement?: boolean;
}

/** Graph input names of the per-layer mask (and replacement) inputs, index = decoder layer. */
export interface NeuronMaskInputs {
  /** float32 [rows, 1, I] multiplied into the GLU product before down_proj. */
  masks: string[];
  /** float32 [rows, 1, I] added after the mask; absent unless asked for. */
  replacements: string[] | undefined;
}

/**
 * Per layer, `rows` × I float32 values (row-major [rows, 1, I]); `rows` is 1 (broadcast over the batch) or the batch
 * size (one mask per batch row). A missing layer means all ones (mask) or zeros (replacement).
 */
export type LayerRows = readonly (Float32Array | undefined)[];

/**
 * Adds to `model` one float32 input per layer, shape [rows, 1, I], that multiplies the GLU product (the down_proj
 * input) — through a Cast for f16/bf16 graphs — and, with `replacement`, a second one added after it. Mutates `model`'s
 * graph lists only (nodes are replaced, not edited), so it may be a `graphCopy` of a decoded model.
 * @throws when a layer's down projection cannot be found by its output tensor (names the file and layer).
 */
export function addNeuronMaskInputs(model: ModelProto, map: GraphMap, where: string, replacement: boolean): NeuronMaskInputs {
  const graph = model.graph!;
  const computeType = onnxFromDtype(map.activationDtype);
  const masks: string[] = [];
  const replacements: string[] = [];
  const floatInput = (name: string, width: number) =>
    create(ValueInfoProtoSchema, {
      name,
      type: {
        value: {
          case: 'tensorType',
          value: { elemType: ONNX_FLOAT, shape: { dim: [{ value: { case: 'dimParam', value: 'mask_rows' } }, { value: { case: 'dimValue', value: 1n } }, { value: { case: 'dimValue', value: BigInt(width) } }] } },
        },
      },
    });
  const node = (opType: string, name: string, input: string[], output: string, castTo?: number): NodeProto =>
    create(NodeProtoSchema, {
      opType,
      name,
      input,
      output: [output],
      attribute: castTo === undefined ? [] : [create(AttributeProtoSchema, { name: 'to', type: AttributeProto_AttributeType.INT, i: BigInt(castTo) })],
    });
  // In the compute dtype: a Cast for graphs that do not compute in float32.
  const inCompute = (input: string, added: NodeProto[]): string => {
    if (computeType === ONNX_FLOAT) return input;
    added.push(node('Cast', `${input}__cast`, [input], `${input}__compute`, computeType));
    return `${input}__compute`;
  };
  for (const layer of map.layers) {
    const downIndex = graph.node.findIndex((n) => n.output[0] === layer.tensors.down_proj);
    const down = graph.node[downIndex];
    if (!down || down.input[0] !== layer.tensors.glu_product) {
      throw new Error(`${where}: layer ${layer.index}: no down projection reading ${layer.tensors.glu_product} found to mask`);
    }
    const mask = `fairprune_neuron_mask_${layer.index}`;
    graph.input.push(floatInput(mask, layer.intermediateSize));
    masks.push(mask);
    const added: NodeProto[] = [];
    let current = `${layer.tensors.glu_product}__fairprune_masked`;
    added.push(node('Mul', `fairprune_mask_mul_${layer.index}`, [layer.tensors.glu_product, inCompute(mask, added)], current));
    if (replacement) {
      const add = `fairprune_neuron_replacement_${layer.index}`;
      graph.input.push(floatInput(add, layer.intermediateSize));
      replacements.push(add);
      const replaced = `${layer.tensors.glu_product}__fairprune_replaced`;
      added.push(node('Add', `fairprune_mask_add_${layer.index}`, [current, inCompute(add, added)], replaced));
      current = replaced;
    }
    // Replaced, not edited: a graph copy ({@link graphCopy}) shares its nodes with the decoded original.
    graph.node[downIndex] = { ...down, input: [current, ...down.input.slice(1)] };
    // Nodes stay in topological order: the new ones go right before the down projection.
    graph.node.splice(downIndex, 0, ...added);
  }
  return { masks, replacements: replacement ? replacements : undefined };
}

/**
 * One open session over a copy of the model with per-layer neuron masks (see {@link addNeuronMaskInputs}): every batch
 * row can carry its own mask, so many pruned (or mean-replaced) variants run in one forward without writing a model.
 * A mask of zeros on neurons S gives the logits of the model with S removed.
 */
export class NeuronMaskedModel {
  private constructor(
    /** The session over the modified graph. */
    readonly session: ModelSession,
    /** The graph map of the original model. */
    readonly map: GraphMap,
    /** The added input names. */
    readonly inputs: NeuronMaskInputs,
  ) {}

  /**
   * Maps the graph at `onnxPath`, adds the mask inputs and opens a session over the result.
   * @throws {@link OnnxFormatError} or {@link GraphMapError} naming the file, or onnxruntime's load error.
   */
  static async create(onnxPath: string, options: NeuronMaskedModelOptions = {}): Promise<NeuronMaskedModel> {
    const model = readOnnxModel(onnxPath);
    checkExternalData(model, onnxPath);
    const map = mapGraph(model, onnxPath);
    const inputs = addNeuronMaskInputs(model, map, onnxPath, options.replacement ?? false);
    const session = await ModelSession.create(encodeOnnxModel(model), {
      ...options,
      externalDataDir: dirname(resolve(onnxPath)),
      extraInputs: [...inputs.masks, ...(inputs.replacements ?? [])],
    });
    return new NeuronMaskedModel(session, map, inputs);
  }

  /** Layer widths I, index = layer. */
  get widths(): number[] {
    return this.map.layers.map((l) => l.intermediateSize);
  }

  /**
   * The mask (and replacement) feeds for a batch of `batchRows` rows.
   * @throws when a layer's values are neither I nor batchRows × I long, or replacements are given to a model opened without them.
   */
  feeds(batchRows: number, masks: LayerRows = [], replacements?: LayerRows): Record<string, ort.Tensor> {
    return neuronMaskFeeds(this.map, this.inputs, batchRows, masks, replacements);
  }

  /** Full forward of equal-length sequences with the given masks → float32 logits [B, T, V]. */
  async forward(batch: readonly (readonly number[])[], masks: LayerRows = [], replacements?: LayerRows): Promise<ForwardResult> {
    return this.session.forward(batch, this.feeds(batch.length, masks, replacements));
  }

  /** Frees the session. */
  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * A pruning as mask feeds: per layer, one-row masks (0 at the pruned neurons) and, with `means` (mean compensation),
 * the replacements (the neuron's mean where it is pruned, 0 elsewhere); untouched layers are left out.
 * @throws when `means` covers another number of layers.
 */
export function pruningMasks(widths: readonly number[], selection: NeuronSelection, means?: readonly Float32Array[]): { masks: LayerRows; replacements?: LayerRows } {
  const masks = zeroMasks(widths, selection);
  if (!means) return { masks };
  if (means.length !== widths.length) throw new Error(`${means.length} layers of calibration means for a model of ${widths.length} layers`);
  const replacements = widths.map((width, layer) => {
    const neurons = selection.get(layer);
    if (!neurons || neurons.length === 0) return undefined;
    const values = new Float32Array(width);
    for (const n of neurons) values[n] = means[layer]![n]!;
    return values;
  });
  return { masks, replacements };
}

/** Per-layer one-row masks with the given neurons zeroed (layer → neuron indices); untouched layers stay all ones. */
export function zeroMasks(widths: readonly number[], selection: NeuronSelection): (Float32Array | undefined)[] {
  return widths.map((width, layer) => {
    const neurons = selection.get(layer);
    if (!neurons || neurons.length === 0) return undefined;
    const mask = new Float32Array(width).fill(1);
    for (const n of neurons) mask[n] = 0;
    return mask;
  });
}

/**
 * The feeds of the inputs {@link addNeuronMaskInputs} added, for a batch of `batchRows` rows (see {@link LayerRows}).
 * @throws when a layer's values are neither I nor batchRows × I long, or replacements are given to a graph without them.
 */
export function neuronMaskFeeds(map: GraphMap, inputs: NeuronMaskInputs, batchRows: number, masks: LayerRows = [], replacements?: LayerRows): Record<string, ort.Tensor> {
  if (replacements && !inputs.replacements) throw new Error('Replacement values given, but the masked model was opened without replacement inputs');
  const feeds: Record<string, ort.Tensor> = {};
  const fill = (names: string[], values: LayerRows, kind: string, neutral: number) =>
    map.layers.forEach((layer, i) => {
      const width = layer.intermediateSize;
      const given = values[i];
      if (given && given.length !== width && given.length !== batchRows * width) {
        throw new Error(`Layer ${i} ${kind} has ${given.length} values; expected ${width} (one row) or ${batchRows} × ${width}`);
      }
      const data = given ?? new Float32Array(width).fill(neutral);
      feeds[names[i]!] = new ort.Tensor('float32', data, [data.length / width, 1, width]);
    });
  fill(inputs.masks, masks, 'mask', 1);
  if (inputs.replacements) fill(inputs.replacements, replacements ?? [], 'replacement', 0);
  return feeds;
}
