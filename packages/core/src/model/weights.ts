import { dirname } from 'node:path';
import type { ModelProto, TensorProto } from 'onnx-buf';
import { bytesPerElement, type WeightDType } from './dtype.js';
import { mapGraph, type GraphMap, type WeightInfo } from './graph-map.js';
import { TensorDataReader, readOnnxModel } from './onnx-codec.js';
import { SafetensorsFile } from './safetensors.js';

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
 * reads one layer's matrices into memory. Call close().
 * @throws (constructor) {@link OnnxFormatError} or {@link GraphMapError} naming the file.
 */
export class OnnxWeights {
  /** The graph map the layers are looked up in. */
  readonly map: GraphMap;
  private readonly reader: TensorDataReader;
  private readonly initializers: Map<string, TensorProto>;

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

  /** Gate and up of one layer, each with exactly intermediateSize neurons (a fused Phi-3 gate_up is split). */
  layerMlp(layer: number): LayerMlpMatrices {
    const info = this.map.layers[layer];
    if (!info) throw new Error(`${this.path}: no layer ${layer} (model has ${this.map.layers.length})`);
    const gate = this.projection(info.gate, 'output');
    const up = this.projection(info.up, 'output');
    if (gate.neuronAxis !== up.neuronAxis) throw new Error(`${this.path}: layer ${layer} gate and up weights have different layouts`);
    return { gate: gate.matrix, up: up.matrix, neuronAxis: gate.neuronAxis };
  }

  /** The down projection of one layer; its neurons are on the input axis. */
  down(layer: number): {
    /** down_proj weight as stored. */
    matrix: WeightMatrix;
    /** Axis that indexes the MLP neurons (the down projection's inputs). */
    neuronAxis: 'rows' | 'cols';
  } {
    const info = this.map.layers[layer];
    if (!info) throw new Error(`${this.path}: no layer ${layer}`);
    return this.projection(info.down, 'input');
  }

  /** Closes the external data files. */
  close(): void {
    this.reader.close();
  }

  private projection(weight: WeightInfo, role: 'input' | 'output'): { matrix: WeightMatrix; neuronAxis: 'rows' | 'cols' } {
    const tensor = this.initializers.get(weight.name)!;
    const [rows, cols] = [weight.shape[0]!, weight.shape[1]!];
    const neuronAxis = (role === 'output') === (weight.layout === 'in_out') ? 'cols' : 'rows';
    const data = this.reader.read(tensor);
    const matrix: WeightMatrix = { data, rows, cols, dtype: weight.dtype };
    return { matrix: weight.fusedHalf === undefined ? matrix : fusedHalf(matrix, neuronAxis, weight.fusedHalf), neuronAxis };
  }
}

/** One half of a fused [.., 2I] matrix along the neuron axis: a view for rows, a copy for columns. */
function fusedHalf(matrix: WeightMatrix, axis: 'rows' | 'cols', half: 0 | 1): WeightMatrix {
  const size = bytesPerElement(matrix.dtype);
  if (axis === 'rows') {
    const rows = matrix.rows / 2;
    const bytes = rows * matrix.cols * size;
    return { ...matrix, rows, data: matrix.data.subarray(half * bytes, (half + 1) * bytes) };
  }
  const cols = matrix.cols / 2;
  const out = new Uint8Array(matrix.rows * cols * size);
  for (let r = 0; r < matrix.rows; r++) {
    const start = (r * matrix.cols + half * cols) * size;
    out.set(matrix.data.subarray(start, start + cols * size), r * cols * size);
  }
  return { ...matrix, cols, data: out };
}

const SAFETENSORS_DTYPES: Record<string, WeightDType> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

/** gate/up weights from HF safetensors shards ([out, in]: neurons are rows). Call close(). */
export class SafetensorsWeights {
  private readonly files: SafetensorsFile[];

  constructor(paths: readonly string[]) {
    this.files = paths.map((p) => new SafetensorsFile(p));
  }

  /**
   * Gate and up of one layer, found by HF tensor names (`layers.{i}.mlp.gate_proj.weight`, or a fused `gate_up_proj`).
   * @throws when the layer's weights are missing or not 2-D F32/F16/BF16, naming the files.
   */
  layerMlp(layer: number): LayerMlpMatrices {
    const fused = this.find(new RegExp(`(^|\\.)layers\\.${layer}\\.mlp\\.gate_up_proj\\.weight$`));
    if (fused) {
      const whole = this.matrix(fused);
      return { gate: fusedHalf(whole, 'rows', 0), up: fusedHalf(whole, 'rows', 1), neuronAxis: 'rows' };
    }
    const gate = this.find(new RegExp(`(^|\\.)layers\\.${layer}\\.mlp\\.gate_proj\\.weight$`));
    const up = this.find(new RegExp(`(^|\\.)layers\\.${layer}\\.mlp\\.up_proj\\.weight$`));
    if (!gate || !up) throw new Error(`No layers.${layer}.mlp.gate_proj/up_proj weights in ${this.files.map((f) => f.path).join(', ')}`);
    return { gate: this.matrix(gate), up: this.matrix(up), neuronAxis: 'rows' };
  }

  /** Closes the shard files. */
  close(): void {
    for (const f of this.files) f.close();
  }

  private find(pattern: RegExp): { file: SafetensorsFile; name: string } | undefined {
    for (const file of this.files) for (const name of file.entries.keys()) if (pattern.test(name)) return { file, name };
    return undefined;
  }

  private matrix({ file, name }: { file: SafetensorsFile; name: string }): WeightMatrix {
    const entry = file.entry(name);
    const dtype = SAFETENSORS_DTYPES[entry.dtype];
    if (!dtype || entry.shape.length !== 2) throw new Error(`${file.path}: "${name}" is ${entry.dtype} [${entry.shape}], expected a 2-D F32/F16/BF16 matrix`);
    return { data: file.read(name), rows: entry.shape[0]!, cols: entry.shape[1]!, dtype };
  }
}
