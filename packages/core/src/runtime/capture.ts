import { dirname, resolve } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { AttributeProtoSchema, AttributeProto_AttributeType, NodeProtoSchema, ValueInfoProtoSchema, type ModelProto } from 'onnx-buf';
import { ACTIVATION_KEYS, mapGraph, type ActivationKey, type GraphMap } from '../model/graph-map.js';
import { checkExternalData, encodeOnnxModel, graphCopy, readOnnxModel } from '../model/onnx-codec.js';
import { requireFinite } from './finite.js';
import { ModelSession, tensorToFloat32, type ModelSessionOptions } from './session.js';

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
  ) {}

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
    // Loaded from bytes, so ORT is told where the original external data lives.
    const { model: _decoded, ...sessionOptions } = options;
    const session = await ModelSession.create(encodeOnnxModel(model), { ...sessionOptions, externalDataDir: dirname(resolve(onnxPath)) });
    return new ActivationCapture(session, map, outputs);
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
      const out = await this.session.run(this.session.initialFeeds(indices.map((i) => prompts[i]!)), fetches);
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
        results[promptIndex] = captured;
      });
    }
    return results;
  }

  /** Frees the session. */
  async release(): Promise<void> {
    await this.session.release();
  }
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
