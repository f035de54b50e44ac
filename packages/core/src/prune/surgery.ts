import { writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { TensorProtoSchema, TensorProto_DataLocation, type ModelProto, type NodeProto, type TensorProto } from 'onnx-buf';
import { bytesPerElement, encodeFromFloat32, type WeightDType } from '../model/dtype.js';
import type { GraphMap, LayerMap, WeightInfo } from '../model/graph-map.js';
import { fusedGateUpIndices, neuronAxis, neuronEdit, parseHfMlpTensor, type NeuronRole, type NeuronSelection } from '../model/neurons.js';
import {
  ExternalDataWriter,
  OnnxFormatError,
  TensorDataReader,
  encodeOnnxModel,
  externalLocation,
  tensorDtype,
} from '../model/onnx-codec.js';
import { SafetensorsFile, safetensorsElementBytes, writeSafetensors, type SafetensorsOutput } from '../model/safetensors.js';
import type { PruneMode } from './plan.js';
import { ScratchBuffer } from '../model/scratch-buffer.js';
import { editedShape, streamBytes, streamEditedMatrix, type MatrixEdit } from './surgery-matrix.js';



/** A pruned folder cannot be written: invalid selection, output overlapping the input, unsupported weight sharing; names the file or layer. */
export class SurgeryError extends Error {
  /** Always `'SurgeryError'`. */
  override name = 'SurgeryError';
}

/** Validates a selection against the layer widths; returns sorted unique indices per layer (empty layers dropped). */
export function normalizeSelection(selection: NeuronSelection, intermediateSizes: readonly number[], mode: PruneMode): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const [layer, neurons] of selection) {
    const width = intermediateSizes[layer];
    if (!Number.isInteger(layer) || width === undefined) {
      throw new SurgeryError(`Selection names layer ${layer}, but the model has layers 0..${intermediateSizes.length - 1}`);
    }
    const unique = [...new Set(neurons)].sort((a, b) => a - b);
    const bad = unique.find((n) => !Number.isInteger(n) || n < 0 || n >= width);
    if (bad !== undefined) throw new SurgeryError(`Layer ${layer}: neuron index ${bad} is outside 0..${width - 1}`);
    if (mode === 'remove' && unique.length >= width) {
      throw new SurgeryError(`Layer ${layer}: removing all ${width} neurons would leave an empty MLP; keep at least one`);
    }
    if (unique.length > 0) out.set(layer, unique);
  }
  return out;
}

/** The row/column edit pruning `neurons` means for one weight, given where its neurons lie. */
function weightEdit(weight: WeightInfo, neurons: readonly number[], role: NeuronRole, mode: PruneMode): MatrixEdit {
  const [rows, cols] = weight.shape.length === 1 ? [1, weight.shape[0]!] : [weight.shape[0]!, weight.shape[1]!];
  const axis = neuronAxis(weight.layout, role, weight.shape.length);
  const indices = weight.fusedHalf !== undefined ? fusedGateUpIndices(neurons, axis === 'cols' ? cols : rows) : neurons;
  return neuronEdit({ rows, cols, elementBytes: bytesPerElement(weight.dtype) }, axis, indices, mode);
}

/** Per-initializer edits for an ONNX model, keyed by initializer name. */
export function onnxWeightEdits(map: GraphMap, selection: Map<number, number[]>, mode: PruneMode): Map<string, MatrixEdit> {
  const edits = new Map<string, MatrixEdit>();
  const add = (weight: WeightInfo, edit: MatrixEdit, layer: number) => {
    if (edits.has(weight.name) && !(weight.fusedHalf !== undefined)) {
      throw new SurgeryError(`Initializer "${weight.name}" is shared by more than one projection (layer ${layer}); cannot prune it per layer`);
    }
    edits.set(weight.name, edit);
  };
  for (const [index, neurons] of selection) {
    const layer = map.layers[index]!;
    add(layer.gate, weightEdit(layer.gate, neurons, 'output', mode), index);
    if (!layer.fusedGateUp) add(layer.up, weightEdit(layer.up, neurons, 'output', mode), index);
    add(layer.down, weightEdit(layer.down, neurons, 'input', mode), index);
  }
  return edits;
}

/**
 * Removal changes widths inside each MLP: updates value_info shapes and integer constants (Reshape shapes,
 * Slice bounds, Split sizes) that carry the old width, copying constants instead of editing shared ones.
 */
export function fixGraphAfterRemoval(model: ModelProto, map: GraphMap, selection: Map<number, number[]>): void {
  const graph = model.graph!;
  const initializers = new Map(graph.initializer.map((t) => [t.name, t]));
  const consumers = new Map<string, NodeProto[]>();
  for (const node of graph.node) for (const input of node.input) consumers.set(input, [...(consumers.get(input) ?? []), node]);
  const valueInfo = new Map(graph.valueInfo.map((v) => [v.name, v]));
  const constantNodes = new Map<string, NodeProto>();
  for (const node of graph.node) if (node.opType === 'Constant') constantNodes.set(node.output[0] ?? '', node);

  for (const [index, neurons] of selection) {
    const layer = map.layers[index]!;
    const oldWidth = layer.intermediateSize;
    const newWidth = oldWidth - neurons.length;
    const widths = new Map([[oldWidth, newWidth], [2 * oldWidth, 2 * newWidth]]);
    for (const node of mlpRegion(graph.node, consumers, layer)) {
      for (const output of node.output) {
        const dims = valueInfo.get(output)?.type?.value.case === 'tensorType' ? valueInfo.get(output)!.type!.value.value : undefined;
        const shapeDims = dims && 'shape' in dims ? dims.shape?.dim : undefined;
        const last = shapeDims?.[shapeDims.length - 1];
        if (last?.value.case === 'dimValue') {
          const replaced = widths.get(Number(last.value.value));
          if (replaced !== undefined) last.value.value = BigInt(replaced);
        }
      }
      if (!['Reshape', 'Slice', 'Split', 'Expand'].includes(node.opType)) continue;
      node.input.forEach((input, slot) => {
        if (slot === 0) return;
        const source = initializers.get(input) ?? constantNodes.get(input)?.attribute.find((a) => a.name === 'value')?.t;
        const values = source ? readInts(source) : undefined;
        if (!values || !values.some((v) => widths.has(v))) return;
        const name = `${input}__fairprune_layer${index}`;
        if (!initializers.has(name)) {
          const copy = create(TensorProtoSchema, {
            name,
            dataType: 7,
            dims: source!.dims,
            int64Data: values.map((v) => BigInt(widths.get(v) ?? v)),
          });
          graph.initializer.push(copy);
          initializers.set(name, copy);
        }
        node.input[slot] = name;
      });
    }
  }
}

/** Nodes between a layer's gate/up projections and its down projection (the intermediate-width region). */
function mlpRegion(nodes: NodeProto[], consumers: Map<string, NodeProto[]>, layer: LayerMap): Set<NodeProto> {
  const byName = new Map(nodes.filter((n) => n.name).map((n) => [n.name, n]));
  const starts = [layer.nodes.gate, layer.nodes.up].map((n) => byName.get(n)).filter((n) => n !== undefined);
  const region = new Set<NodeProto>(starts);
  const stack = starts.flatMap((n) => n.output);
  // The down projection ends the region; everything it feeds has the hidden width again.
  const stopAt = layer.tensors.down_proj;
  while (stack.length > 0) {
    const tensor = stack.pop()!;
    if (tensor === stopAt) continue;
    for (const node of consumers.get(tensor) ?? []) {
      if (region.has(node) || node.output.includes(stopAt)) continue;
      region.add(node);
      stack.push(...node.output);
    }
  }
  return region;
}

function readInts(tensor: TensorProto): number[] | undefined {
  if (tensor.int64Data.length > 0) return tensor.int64Data.map(Number);
  if (tensor.int32Data.length > 0 && tensor.dataType === 6) return [...tensor.int32Data];
  if (tensor.rawData.byteLength > 0 && (tensor.dataType === 7 || tensor.dataType === 6)) {
    const view = new DataView(tensor.rawData.buffer, tensor.rawData.byteOffset, tensor.rawData.byteLength);
    const size = tensor.dataType === 7 ? 8 : 4;
    return Array.from({ length: tensor.rawData.byteLength / size }, (_, i) =>
      size === 8 ? Number(view.getBigInt64(i * 8, true)) : view.getInt32(i * 4, true),
    );
  }
  return undefined;
}

export interface WriteOnnxOptions {
  /** Put tensor data in `<file>_data` next to the .onnx (required over 2 GiB). */
  externalData: boolean;
}

/** Tensors smaller than this stay inline even in external-data output (as onnx's own saver does). */
const INLINE_THRESHOLD_BYTES = 1024;

/**
 * Writes `model` to `outPath`, streaming every initializer from `reader` through its edit (if any). With external
 * data, tensors go one by one into one data file at aligned offsets and the .onnx stays small.
 * Mutates `model`'s initializers (dims and data location).
 */
export function writeOnnxModelStreamed(
  model: ModelProto,
  reader: TensorDataReader,
  outPath: string,
  edits: ReadonlyMap<string, MatrixEdit>,
  options: WriteOnnxOptions,
): void {
  const location = `${basename(outPath)}_data`;
  const writer = options.externalData ? new ExternalDataWriter(`${dirname(outPath)}/${location}`, location) : undefined;
  const [input, output] = [new ScratchBuffer(), new ScratchBuffer()];
  try {
    for (const tensor of model.graph!.initializer) {
      const edit = edits.get(tensor.name);
      const external = externalLocation(tensor) !== undefined;
      if (!edit && !external && (!writer || tensor.rawData.byteLength < INLINE_THRESHOLD_BYTES)) continue;
      if (edit && !tensorDtype(tensor)) throw new OnnxFormatError(`Cannot edit "${tensor.name}": not a f32/f16/bf16 tensor`);
      // inline output keeps every chunk, so only external output may reuse the read buffer
      const read = (start: number, length: number) => reader.read(tensor, start, length, writer ? (n) => input.get(n) : undefined);
      const chunks = edit ? streamEditedMatrix(read, edit, output) : streamBytes(read, reader.byteLength(tensor));
      if (edit) {
        const [rows, cols] = editedShape(edit);
        tensor.dims = tensor.dims.length === 1 ? [BigInt(cols)] : [BigInt(rows), BigInt(cols)];
      }
      if (writer) {
        const start = writer.begin();
        for (const chunk of chunks) writer.append(chunk);
        writer.finish(tensor, start);
      } else {
        // edited chunks share one buffer: copy each before the next is made
        const parts: Uint8Array[] = [];
        for (const chunk of chunks) parts.push(edit ? chunk.slice() : chunk);
        const data = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
        let offset = 0;
        for (const p of parts) {
          data.set(p, offset);
          offset += p.byteLength;
        }
        tensor.rawData = data;
        tensor.floatData = [];
        tensor.int32Data = [];
        tensor.externalData = [];
        tensor.dataLocation = TensorProto_DataLocation.DEFAULT;
      }
    }
  } finally {
    writer?.close();
  }
  writeFileSync(outPath, encodeOnnxModel(model), { flag: 'wx' });
}

/**
 * Streams a safetensors file to `outPath` with the selected neurons removed or zeroed (HF [out, in] layout:
 * gate/up rows, down columns; fused gate_up rows i and I+i). With `mlpBiases`, each listed layer gets
 * `mlp.down_proj.bias` and zero `gate_proj` / `up_proj` biases (HF `mlp_bias: true`), next to its down_proj weight.
 */
export function pruneSafetensorsFile(
  srcPath: string,
  outPath: string,
  selection: Map<number, number[]>,
  mode: PruneMode,
  mlpBiases?: ReadonlyMap<number, Float32Array>,
): void {
  const source = new SafetensorsFile(srcPath);
  const [input, output] = [new ScratchBuffer(), new ScratchBuffer()];
  try {
    const outputs: SafetensorsOutput[] = [];
    for (const entry of [...source.entries.values()].sort((a, b) => a.begin - b.begin)) {
      const read = (start: number, length: number) => source.read(entry.name, start, length, (n) => input.get(n));
      const mlp = parseHfMlpTensor(entry.name);
      const bias = mlp?.projection === 'down_proj' && mlp.kind === 'weight' ? mlpBiases?.get(mlp.layer) : undefined;
      if (bias) outputs.push(...mlpBiasOutputs(entry.name, entry.dtype, entry.shape, bias, mode === 'remove' ? (selection.get(mlp!.layer)?.length ?? 0) : 0, srcPath));
      const neurons = mlp ? selection.get(mlp.layer) : undefined;
      if (!mlp || !neurons || (mlp.projection === 'down_proj' && mlp.kind === 'bias')) {
        outputs.push({ name: entry.name, dtype: entry.dtype, shape: entry.shape, chunks: () => streamBytes(read, entry.end - entry.begin) });
        continue;
      }
      const elementBytes = safetensorsElementBytes(entry.dtype)!;
      const isMatrix = entry.shape.length === 2;
      const [rows, cols] = isMatrix ? [entry.shape[0]!, entry.shape[1]!] : [1, entry.shape[0]!];
      // HF [out, in]: produced neurons are rows (or the entries of a bias), consumed neurons are columns.
      const axis = neuronAxis('out_in', mlp.projection === 'down_proj' ? 'input' : 'output', entry.shape.length);
      const span = axis === 'rows' ? rows : cols;
      const indices = mlp.projection === 'gate_up_proj' ? fusedGateUpIndices(neurons, span) : neurons;
      if (indices.some((i) => i >= span)) {
        throw new SurgeryError(`${srcPath}: tensor "${entry.name}" [${entry.shape}] is too small for neuron ${Math.max(...neurons)}`);
      }
      const edit = neuronEdit({ rows, cols, elementBytes }, axis, indices, mode);
      const [newRows, newCols] = editedShape(edit);
      outputs.push({
        name: entry.name,
        dtype: entry.dtype,
        shape: isMatrix ? [newRows, newCols] : [newCols],
        chunks: () => streamEditedMatrix(read, edit, output),
      });
    }
    writeSafetensors(outPath, outputs, source.metadata);
  } finally {
    source.close();
  }
}

const SAFETENSORS_DTYPES: Readonly<Record<string, WeightDType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

/** down_proj.bias (the given values) and zero gate_proj / up_proj biases of the width left after removing `removed`. */
function mlpBiasOutputs(downName: string, dtype: string, downShape: number[], bias: Float32Array, removed: number, where: string): SafetensorsOutput[] {
  const weightDtype = SAFETENSORS_DTYPES[dtype];
  const [hidden, width] = [downShape[0]!, downShape[1]! - removed];
  if (!weightDtype || downShape.length !== 2 || hidden !== bias.length) {
    throw new SurgeryError(`${where}: cannot add a bias next to "${downName}" (${dtype} [${downShape}]) for ${bias.length} outputs`);
  }
  const prefix = downName.slice(0, -'down_proj.weight'.length);
  const tensor = (name: string, values: Float32Array): SafetensorsOutput => {
    const bytes = encodeFromFloat32(values, weightDtype);
    return { name, dtype, shape: [values.length], chunks: () => [bytes] };
  };
  return [tensor(`${prefix}down_proj.bias`, bias), tensor(`${prefix}gate_proj.bias`, new Float32Array(width)), tensor(`${prefix}up_proj.bias`, new Float32Array(width))];
}
