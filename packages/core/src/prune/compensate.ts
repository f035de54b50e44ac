/**
 * `--compensate mean`: a removed neuron's mean contribution (its mean activation over calibration prompts × its
 * down_proj column) becomes a bias on the MLP output, so removal shifts the residual stream by what the neuron did
 * on average only in its variation, not in its offset.
 */
import { create } from '@bufbuild/protobuf';
import { NodeProtoSchema, TensorProtoSchema, type ModelProto } from 'onnx-buf';
import { decodeToFloat32, encodeFromFloat32, onnxFromDtype } from '../model/dtype.js';
import type { GraphMap } from '../model/graph-map.js';
import type { NeuronSelection } from '../model/neurons.js';
import type { ContinuationTokenizer } from '../bias/behaviour.js';
import type { OnnxWeights } from '../model/weights.js';
import type { ActivationCapture } from '../runtime/capture.js';

/**
 * Each layer's mean GLU product (the down_proj input) per neuron over every position of the calibration texts
 * (tokenized with the model's special tokens).
 * @param capture  A capture session that exposes `glu_product` of every layer.
 * @throws when no calibration text has a token.
 */
export async function meanActivations(capture: ActivationCapture, tokenizer: ContinuationTokenizer, texts: readonly string[]): Promise<Float32Array[]> {
  const prompts = texts.map((text) => tokenizer.encode(text)).filter((ids) => ids.length > 0);
  if (prompts.length === 0) throw new Error('Mean compensation needs calibration texts; none has a token');
  const sums = capture.map.layers.map((l) => new Float64Array(l.intermediateSize));
  let positions = 0;
  for (const captured of await capture.captureBatch(prompts)) {
    capture.map.layers.forEach((layer, i) => {
      const tensor = captured.get(`glu_product_layer_${layer.index}`);
      if (!tensor) throw new Error(`The capture session does not expose glu_product_layer_${layer.index}`);
      const [t, width] = tensor.shape;
      for (let p = 0; p < t; p++) for (let n = 0; n < width; n++) sums[i]![n]! += tensor.data[p * width + n]!;
    });
    positions += captured.get(`glu_product_layer_${capture.map.layers[0]!.index}`)!.shape[0];
  }
  return sums.map((sum) => Float32Array.from(sum, (v) => v / positions));
}

/**
 * The MLP-output bias of each layer with removed neurons: b_h = Σ_{n ∈ removed} mean_n · W_down[h, n]. Layers without
 * removed neurons are left out.
 */
export function compensationBiases(weights: OnnxWeights, means: readonly Float32Array[], selection: NeuronSelection): Map<number, Float32Array> {
  const biases = new Map<number, Float32Array>();
  for (const [layer, neurons] of selection) {
    if (neurons.length === 0) continue;
    const { matrix, neuronAxis } = weights.down(layer);
    const values = decodeToFloat32(matrix.data, matrix.dtype);
    const hidden = neuronAxis === 'rows' ? matrix.cols : matrix.rows;
    const bias = new Float32Array(hidden);
    for (const n of neurons) {
      const m = means[layer]![n]!;
      for (let h = 0; h < hidden; h++) bias[h]! += m * values[neuronAxis === 'rows' ? n * matrix.cols + h : h * matrix.cols + n]!;
    }
    biases.set(layer, bias);
  }
  return biases;
}

/**
 * Adds `bias[layer]` to each listed layer's down_proj output: an initializer in the activation dtype and an `Add`
 * whose output keeps the down projection's tensor name, so every consumer reads the biased value. Mutates `model`.
 * @throws when a layer's down projection is not found (names the file and layer).
 */
export function addOnnxMlpBiases(model: ModelProto, map: GraphMap, biases: ReadonlyMap<number, Float32Array>, where: string): void {
  const graph = model.graph!;
  for (const [index, bias] of biases) {
    const layer = map.layers[index]!;
    const output = layer.tensors.down_proj;
    const at = graph.node.findIndex((n) => n.output[0] === output);
    if (at < 0) throw new Error(`${where}: layer ${index}: no node writes the down projection output ${output}`);
    if (bias.length !== layer.hiddenSize) throw new Error(`${where}: layer ${index}: bias has ${bias.length} values, the MLP output ${layer.hiddenSize}`);
    const raw = `${output}__fairprune_unbiased`;
    const name = `fairprune_mlp_bias_${index}`;
    graph.node[at]!.output[0] = raw;
    graph.initializer.push(
      create(TensorProtoSchema, { name, dataType: onnxFromDtype(map.activationDtype), dims: [BigInt(bias.length)], rawData: new Uint8Array(encodeFromFloat32(bias, map.activationDtype)) }),
    );
    graph.node.splice(at + 1, 0, create(NodeProtoSchema, { opType: 'Add', name: `fairprune_mlp_bias_add_${index}`, input: [raw, name], output: [output] }));
  }
}

/** HF architectures whose config can carry `mlp_bias` (gate/up/down biases in the MLP): Llama's. */
export const MLP_BIAS_MODEL_TYPES: readonly string[] = ['llama'];
