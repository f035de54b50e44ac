import { dirname } from 'node:path';
import type { ModelProto, TensorProto } from 'onnx-buf';
import { bytesPerElement, type WeightDType } from './dtype.js';
import { mapGraph, type GraphMap, type WeightInfo } from './graph-map.js';
import { neuronAxis, parseHfMlpTensor, type MlpProjection } from './neurons.js';
import { TensorDataReader, readOnnxModel } from './onnx-codec.js';
import { SafetensorsFile } from './safetensors.js';
import { ScratchBuffer } from './scratch-buffer.js';

/** Structurally the native scan's MatrixView: raw little-endian bytes (any offset), row-major. */
export interface WeightMatrix {
  /** rows × cols little-endian elements of `dtype`, row-major. */
  data: Uint8Array;
  /** First dimension as stored. */
  rows: number;
  /** Second dimension as stored. */
  cols: number;
  /** Element type of `data`. */
  dtype: WeightDType;
}

/** A layer's gate and up weights as stored, and the axis holding the neurons ('cols' for ONNX [in, out], 'rows' for HF [out, in]). */
export interface LayerMlpMatrices {
  /** gate_proj weight (one half of a fused gate_up weight). */
  gate: WeightMatrix;
  /** up_proj weight (the other half of a fused gate_up weight). */
  up: WeightMatrix;
  /** Axis of both matrices that indexes the MLP neurons. */
  neuronAxis: 'rows' | 'cols';
}

/**
 * gate/up/down weights of a mapped ONNX model, read by fd for external data (so files past 2 GiB work); each call
 * reads one layer's matrices into read buffers that the next call of the same method reuses (one allocation for all
 * layers), so use or copy them before asking for the next layer. Call close().
 * @throws (constructor) {@link OnnxFormatError} or {@link GraphMapError} naming the file.
 */
export class OnnxWeights {
  /** The graph map the layers are looked up in. */
  readonly map: GraphMap;
  private readonly reader: TensorDataReader;
  private readonly initializers: Map<string, TensorProto>;
  private readonly buffers = { gate: new ScratchBuffer(), up: new ScratchBuffer(), fused: new ScratchBuffer(), down: new ScratchBuffer() };

  constructor(
    /** The .onnx file; external data is read relative to its folder. */
    readonly path: string,
    /** The decoded model, when the caller has already read it. */
    readonly model: ModelProto = readOnnxModel(path),
  ) {
    this.map = mapGraph(model, path);
    this.reader = new TensorDataReader(dirname(path));
    this.initializers = new Map(model.graph!.initializer.map((t) => [t.name, t]));
  }

  /** Gate and up of one layer, each with exactly intermediateSize neurons (a fused Phi-3 gate_up is read once and
   *  split). Valid until the next layerMlp call. */
  layerMlp(layer: number): LayerMlpMatrices {
    const info = this.map.layers[layer];
    if (!info) throw new Error(`${this.path}: no layer ${layer} (model has ${this.map.layers.length})`);
    const gateAxis = neuronAxis(info.gate.layout, 'output');
    if (gateAxis !== neuronAxis(info.up.layout, 'output')) throw new Error(`${this.path}: layer ${layer} gate and up weights have different layouts`);
    if (info.fusedGateUp) {
      const whole = this.matrix(info.gate, this.buffers.fused);
      return {
        gate: fusedHalf(whole, gateAxis, info.gate.fusedHalf ?? 0, this.buffers.gate),
        up: fusedHalf(whole, gateAxis, info.up.fusedHalf ?? 1, this.buffers.up),
        neuronAxis: gateAxis,
      };
    }
    return { gate: this.matrix(info.gate, this.buffers.gate), up: this.matrix(info.up, this.buffers.up), neuronAxis: gateAxis };
  }

  /** The down projection of one layer; its neurons are on the input axis. Valid until the next down call. */
  down(layer: number): {
    /** down_proj weight as stored. */
    matrix: WeightMatrix;
    /** Axis that indexes the MLP neurons (the down projection's inputs). */
    neuronAxis: 'rows' | 'cols';
  } {
    const info = this.map.layers[layer];
    if (!info) throw new Error(`${this.path}: no layer ${layer}`);
    return { matrix: this.matrix(info.down, this.buffers.down), neuronAxis: neuronAxis(info.down.layout, 'input') };
  }

  /** Closes the external data files. */
  close(): void {
    this.reader.close();
  }

  /** The whole initializer as stored (both halves of a fused one), external bytes read into `buffer`. */
  private matrix(weight: WeightInfo, buffer: ScratchBuffer): WeightMatrix {
    const tensor = this.initializers.get(weight.name)!;
    const data = this.reader.read(tensor, 0, undefined, (n) => buffer.get(n));
    return { data, rows: weight.shape[0]!, cols: weight.shape[1]!, dtype: weight.dtype };
  }
}

/** One half of a fused [.., 2I] matrix along the neuron axis: a view for rows, a copy (into `buffer`, else fresh) for columns. */
function fusedHalf(matrix: WeightMatrix, axis: 'rows' | 'cols', half: 0 | 1, buffer?: ScratchBuffer): WeightMatrix {
  const size = bytesPerElement(matrix.dtype);
  if (axis === 'rows') {
    const rows = matrix.rows / 2;
    const bytes = rows * matrix.cols * size;
    return { ...matrix, rows, data: matrix.data.subarray(half * bytes, (half + 1) * bytes) };
  }
  const cols = matrix.cols / 2;
  const out = buffer ? buffer.get(matrix.rows * cols * size) : new Uint8Array(matrix.rows * cols * size);
  for (let r = 0; r < matrix.rows; r++) {
    const start = (r * matrix.cols + half * cols) * size;
    out.set(matrix.data.subarray(start, start + cols * size), r * cols * size);
  }
  return { ...matrix, cols, data: out };
}

const SAFETENSORS_DTYPES: Record<string, WeightDType> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

/** gate/up weights from HF safetensors shards ([out, in]: neurons are rows), read into buffers the next layerMlp call
 *  reuses. Call close(). */
export class SafetensorsWeights {
  private readonly files: SafetensorsFile[];
  private readonly buffers = { gate: new ScratchBuffer(), up: new ScratchBuffer() };

  constructor(paths: readonly string[]) {
    this.files = paths.map((p) => new SafetensorsFile(p));
  }

  /**
   * Gate and up of one layer, found by HF tensor names (`layers.{i}.mlp.gate_proj.weight`, or a fused `gate_up_proj`);
   * valid until the next layerMlp call.
   * @throws when the layer's weights are missing or not 2-D F32/F16/BF16, naming the files.
   */
  layerMlp(layer: number): LayerMlpMatrices {
    const fused = this.find(layer, 'gate_up_proj');
    if (fused) {
      const whole = this.matrix(fused, this.buffers.gate);
      return { gate: fusedHalf(whole, 'rows', 0), up: fusedHalf(whole, 'rows', 1), neuronAxis: 'rows' };
    }
    const gate = this.find(layer, 'gate_proj');
    const up = this.find(layer, 'up_proj');
    if (!gate || !up) throw new Error(`No layers.${layer}.mlp.gate_proj/up_proj weights in ${this.files.map((f) => f.path).join(', ')}`);
    return { gate: this.matrix(gate, this.buffers.gate), up: this.matrix(up, this.buffers.up), neuronAxis: 'rows' };
  }

  /** Closes the shard files. */
  close(): void {
    for (const f of this.files) f.close();
  }

  private find(layer: number, projection: MlpProjection): { file: SafetensorsFile; name: string } | undefined {
    for (const file of this.files) {
      for (const name of file.entries.keys()) {
        const mlp = parseHfMlpTensor(name);
        if (mlp && mlp.layer === layer && mlp.projection === projection && mlp.kind === 'weight') return { file, name };
      }
    }
    return undefined;
  }

  private matrix({ file, name }: { file: SafetensorsFile; name: string }, buffer: ScratchBuffer): WeightMatrix {
    const entry = file.entry(name);
    const dtype = SAFETENSORS_DTYPES[entry.dtype];
    if (!dtype || entry.shape.length !== 2) throw new Error(`${file.path}: "${name}" is ${entry.dtype} [${entry.shape}], expected a 2-D F32/F16/BF16 matrix`);
    return { data: file.read(name, 0, undefined, (n) => buffer.get(n)), rows: entry.shape[0]!, cols: entry.shape[1]!, dtype };
  }
}
