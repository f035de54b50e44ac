import type { ModelProto, NodeProto, TensorProto } from 'onnx-buf';
import { tensorDims, tensorDtype } from './onnx-codec.js';
import { dtypeFromOnnx, type WeightDType } from './dtype.js';

/** 'in_out': MatMul B as stored by ONNX exporters ([in, out], neurons are columns); 'out_in': HF layout (Transpose/Gemm transB). */
export type WeightLayout = 'in_out' | 'out_in';

/** One projection weight of a mapped layer, as stored in the graph. */
export interface WeightInfo {
  /** Initializer name. */
  name: string;
  /** Element type of the stored initializer (before any Cast in the graph). */
  dtype: WeightDType;
  /** Stored shape of the initializer. */
  shape: number[];
  /** Which axis of `shape` holds the output neurons. */
  layout: WeightLayout;
  /** Fused gate_up weight (Phi-3): which half of the output axis this projection is (0 = first). */
  fusedHalf?: 0 | 1;
}

/** Graph tensor names per decoder layer, keyed as the fixtures' reference activations. */
export interface LayerTensors {
  /** Output of the layer's input norm (the tensor the q/k/v projections read). */
  input_norm: string;
  /** Output of the attention output projection (o_proj). */
  attention_output: string;
  /** gate_proj output, before the activation. */
  gate_proj: string;
  /** up_proj output. */
  up_proj: string;
  /** act(gate) · up: the down_proj input, one value per MLP neuron. */
  glu_product: string;
  /** down_proj output. */
  down_proj: string;
  /** The MLP's output; the same tensor as `down_proj` (optiPfair hooks both names). */
  mlp_output: string;
}

/** A capturable tensor kind of a layer: a key of {@link LayerTensors}. */
export type ActivationKey = keyof LayerTensors;
export const ACTIVATION_KEYS: readonly ActivationKey[] = [
  'input_norm', 'attention_output', 'gate_proj', 'up_proj', 'glu_product', 'down_proj', 'mlp_output',
];

/** One decoder layer as found in the graph: its GLU MLP weights and nodes, and the tensors to capture. */
export interface LayerMap {
  /** Decoder layer index (order of the down projections in the graph). */
  index: number;
  /** Graph tensor names of this layer's activations. */
  tensors: LayerTensors;
  /** gate_proj weight. */
  gate: WeightInfo;
  /** up_proj weight (the same initializer as `gate` when fused). */
  up: WeightInfo;
  /** down_proj weight. */
  down: WeightInfo;
  /** Node names of the projections (gate and up are the same node when fused). */
  nodes: {
    /** gate_proj MatMul/Gemm. */
    gate: string;
    /** up_proj MatMul/Gemm. */
    up: string;
    /** down_proj MatMul/Gemm. */
    down: string;
    /** Attention output projection (o_proj). */
    attentionOutput: string;
  };
  /** Slice/Split nodes splitting a fused gate_up output (Phi-3), empty otherwise. */
  fusedSplitNodes: string[];
  /** gate and up are the two halves of one fused weight (Phi-3 `gate_up_proj`). */
  fusedGateUp: boolean;
  /** 'silu' | 'gelu_tanh' | 'gelu' | … as recognised from the activation ops. */
  activation: string;
  /** MLP neurons (down_proj input width). */
  intermediateSize: number;
  /** Residual width (down_proj output width). */
  hiddenSize: number;
}

/** Result of {@link mapGraph}: every decoder layer's MLP and the graph's logits and KV-cache interface. */
export interface GraphMap {
  /** Decoder layers in graph order. */
  layers: LayerMap[];
  /** Name of the logits output (`logits`, else the first output). */
  logits: string;
  /** Element type of the MLP activations (f16 models give f16 intermediates; a Cast after the weight changes it). */
  activationDtype: WeightDType;
  /** The KV-cache inputs and outputs; undefined for a graph without past_key_values inputs. */
  kv:
    | {
        /** `past_key_values.{i}.key` / `.value` inputs. */
        pastInputs: string[];
        /** `present.{i}.key` / `.value` outputs. */
        presentOutputs: string[];
      }
    | undefined;
}

/** The graph has no recognisable GLU MLP (e.g. GPT-2-style or quantized MatMulNBits graphs) or inconsistent widths; names the file. */
export class GraphMapError extends Error {
  /** Always `'GraphMapError'`. */
  override name = 'GraphMapError';
}

const NONLINEAR_OPS = new Set(['Sigmoid', 'Tanh', 'Erf', 'Gelu', 'FastGelu', 'QuickGelu', 'BiasGelu', 'Relu', 'Softplus', 'Silu', 'Swish', 'HardSigmoid', 'HardSwish', 'Elu', 'Selu', 'Mish']);
const ELEMENTWISE_OPS = new Set([...NONLINEAR_OPS, 'Mul', 'Add', 'Sub', 'Div', 'Pow', 'Cast', 'Neg', 'Sqrt', 'Identity']);

interface WeightSource {
  weight: TensorProto;
  transposed: boolean;
  /** ONNX type a Cast between initializer and MatMul converts to. */
  castTo: number | undefined;
}

interface WeightMatMul {
  node: NodeProto;
  index: number;
  input: string;
  output: string;
  weight: TensorProto;
  layout: WeightLayout;
  /** Element type of the MatMul's output. */
  computeDtype: WeightDType;
}

interface ProjectionSource {
  matmul: WeightMatMul;
  /** Slice/Split splitting a fused projection, and which half this tensor is. */
  split?: { node: NodeProto; half: 0 | 1 };
}

/**
 * Finds, by graph structure rather than node names (exporters name nodes differently), the GLU MLP and attention
 * tensors of every decoder layer. `where` names the file in errors. Phases: index the graph, find the MatMuls that
 * read a weight, find each GLU MLP (a down projection reading act(gate)·up), then give each MLP its layer's attention
 * and check that every layer was mapped.
 * @throws {@link GraphMapError} when no GLU MLP is found or a layer's widths disagree.
 */
export function mapGraph(model: ModelProto, where: string): GraphMap {
  const graph = model.graph;
  if (!graph) throw new GraphMapError(`${where}: no graph`);
  const index = indexGraph(graph.node, graph.initializer);
  const weightMatMuls = findWeightMatMuls(index);
  const mlps = findMlps(index, weightMatMuls);
  if (mlps.length === 0) throw new GraphMapError(describeMissingGlu(model, where, weightMatMuls));
  mlps.sort((x, y) => x.down.index - y.down.index);
  const windowSizes: number[] = [];
  const layers = mlps.map((mlp, i) => layerOf(mlp, i, i === 0 ? -1 : mlps[i - 1]!.down.index, weightMatMuls, windowSizes, where));

  checkEveryLayerMapped(graph.node, mlps.map((m) => m.down.index), windowSizes, weightMatMuls, index.isConstant, index.producer, where);
  checkLayerNames(layers, where);
  const outputs = graph.output.map((o) => o.name);
  const logits = outputs.includes('logits') ? 'logits' : outputs[0];
  if (!logits) throw new GraphMapError(`${where}: graph has no outputs`);
  const pastInputs = graph.input.map((i) => i.name).filter((n) => /^past_key_values\.\d+\.(key|value)$/.test(n));
  const presentOutputs = outputs.filter((n) => /^present\.\d+\.(key|value)$/.test(n));
  return {
    layers,
    logits,
    activationDtype: mlps[0]!.down.computeDtype,
    kv: pastInputs.length > 0 ? { pastInputs, presentOutputs } : undefined,
  };
}

/** Lookups over one graph: initializers by name, the node producing each tensor. */
interface GraphIndex {
  /** The graph's nodes, in order. */
  nodes: readonly NodeProto[];
  initializers: Map<string, TensorProto>;
  producer: Map<string, { node: NodeProto; index: number; slot: number }>;
  /** An empty input, an initializer or a Constant's output. */
  isConstant: (name: string) => boolean;
  /** The MatMuls reading a weight, by output tensor (filled by {@link findWeightMatMuls}). */
  weightMatMulByOutput: Map<string, WeightMatMul>;
}

function indexGraph(nodes: readonly NodeProto[], initializerList: readonly TensorProto[]): GraphIndex {
  const initializers = new Map(initializerList.map((t) => [t.name, t]));
  const producer = new Map<string, { node: NodeProto; index: number; slot: number }>();
  nodes.forEach((node, index) => node.output.forEach((name, slot) => producer.set(name, { node, index, slot })));
  const isConstant = (name: string): boolean => name === '' || initializers.has(name) || producer.get(name)?.node.opType === 'Constant';
  return { nodes, initializers, producer, isConstant, weightMatMulByOutput: new Map() };
}

/** The initializer behind a MatMul B input, seen through a Transpose and/or a Cast (weights stored as bf16/f16). */
function weightOf(g: GraphIndex, name: string, transposed = false, castTo?: number): WeightSource | undefined {
  const direct = g.initializers.get(name);
  if (direct) return { weight: direct, transposed, castTo };
  const p = g.producer.get(name);
  if (p?.node.opType === 'Transpose' && !transposed) return weightOf(g, p.node.input[0] ?? '', true, castTo);
  if (p?.node.opType === 'Cast' && castTo === undefined) {
    const to = p.node.attribute.find((a) => a.name === 'to');
    return weightOf(g, p.node.input[0] ?? '', transposed, to ? Number(to.i) : undefined);
  }
  return undefined;
}

/** Every MatMul/Gemm whose B is a 2-D float weight, in graph order (also indexed by output in `g`). */
function findWeightMatMuls(g: GraphIndex): WeightMatMul[] {
  const weightMatMuls: WeightMatMul[] = [];
  g.nodes.forEach((node, index) => {
    if (node.opType !== 'MatMul' && node.opType !== 'Gemm') return;
    const w = weightOf(g, node.input[1] ?? '');
    if (!w || w.weight.dims.length !== 2 || !tensorDtype(w.weight)) return;
    const transB = node.opType === 'Gemm' && node.attribute.some((a) => a.name === 'transB' && a.i === 1n);
    const entry: WeightMatMul = {
      node, index, input: node.input[0] ?? '', output: node.output[0] ?? '', weight: w.weight,
      layout: w.transposed !== transB ? 'out_in' : 'in_out',
      computeDtype: (w.castTo !== undefined ? dtypeFromOnnx(w.castTo) : undefined) ?? tensorDtype(w.weight)!,
    };
    weightMatMuls.push(entry);
    g.weightMatMulByOutput.set(entry.output, entry);
  });
  return weightMatMuls;
}

function constantInt(g: GraphIndex, name: string): number | undefined {
  const tensor = g.initializers.get(name) ?? g.producer.get(name)?.node.attribute.find((a) => a.name === 'value')?.t;
  if (!tensor) return undefined;
  if (tensor.int64Data.length > 0) return Number(tensor.int64Data[0]);
  if (tensor.int32Data.length > 0) return tensor.int32Data[0];
  if (tensor.rawData.byteLength >= 8 && tensor.dataType === 7) {
    return Number(new DataView(tensor.rawData.buffer, tensor.rawData.byteOffset).getBigInt64(0, true));
  }
  if (tensor.rawData.byteLength >= 4 && tensor.dataType === 6) {
    return new DataView(tensor.rawData.buffer, tensor.rawData.byteOffset).getInt32(0, true);
  }
  return undefined;
}

/** The weight MatMul producing `name`, directly or as one half of a fused projection (Slice/Split). */
function projectionSource(g: GraphIndex, name: string): ProjectionSource | undefined {
  const direct = g.weightMatMulByOutput.get(name);
  if (direct) return { matmul: direct };
  const p = g.producer.get(name);
  if (!p || (p.node.opType !== 'Slice' && p.node.opType !== 'Split')) return undefined;
  const fused = g.weightMatMulByOutput.get(p.node.input[0] ?? '');
  if (!fused) return undefined;
  if (p.node.opType === 'Split') return { matmul: fused, split: { node: p.node, half: p.slot === 0 ? 0 : 1 } };
  // Slice: a constant start of 0 is the first half; anything else (constant or computed from the shape) the second.
  const start = constantInt(g, p.node.input[1] ?? '');
  return { matmul: fused, split: { node: p.node, half: start === 0 ? 0 : 1 } };
}

/** Walks back from `name` through elementwise ops; returns the single projection feeding it and the ops crossed. */
function activationSource(g: GraphIndex, name: string): { source: ProjectionSource; ops: string[]; tensor: string } | undefined {
  const ops: string[] = [];
  const leaves = new Set<string>();
  const stack = [name];
  const seen = new Set<string>();
  while (stack.length > 0) {
    const tensor = stack.pop()!;
    if (seen.has(tensor)) continue;
    seen.add(tensor);
    if (projectionSource(g, tensor)) {
      leaves.add(tensor);
      continue;
    }
    const p = g.producer.get(tensor);
    if (!p || !ELEMENTWISE_OPS.has(p.node.opType) || seen.size > 64) return undefined;
    ops.push(p.node.opType === 'Gelu' && p.node.attribute.some((a) => a.name === 'approximate' && new TextDecoder().decode(a.s) === 'tanh') ? 'GeluTanh' : p.node.opType);
    for (const input of p.node.input) if (!g.isConstant(input)) stack.push(input);
  }
  if (leaves.size !== 1 || !ops.some((op) => NONLINEAR_OPS.has(op) || op === 'GeluTanh')) return undefined;
  const tensor = [...leaves][0]!;
  return { source: projectionSource(g, tensor)!, ops, tensor };
}

/** One GLU MLP found in the graph. */
interface Mlp {
  gate: ProjectionSource;
  gateTensor: string;
  up: ProjectionSource;
  upTensor: string;
  down: WeightMatMul;
  product: string;
  ops: string[];
}

/** Every down projection reading Mul(act(gate), up), with its gate and up. */
function findMlps(g: GraphIndex, weightMatMuls: readonly WeightMatMul[]): Mlp[] {
  const mlps: Mlp[] = [];
  for (const down of weightMatMuls) {
    const p = g.producer.get(down.input);
    if (p?.node.opType !== 'Mul') continue;
    const [a, b] = [p.node.input[0] ?? '', p.node.input[1] ?? ''];
    if (g.isConstant(a) || g.isConstant(b)) continue;
    for (const [upTensor, actTensor] of [[a, b], [b, a]] as const) {
      const up = projectionSource(g, upTensor);
      const act = up ? activationSource(g, actTensor) : undefined;
      if (!up || !act || act.tensor === upTensor) continue;
      mlps.push({ gate: act.source, gateTensor: act.tensor, up, upTensor, down, product: down.input, ops: act.ops });
      break;
    }
  }
  return mlps;
}

/**
 * Layer `index`: its MLP, and the attention found among the weight MatMuls between the previous MLP's down projection
 * and this gate (the last of them is the output projection). Records the window's size for the coverage check.
 * @throws {@link GraphMapError} when no attention projections precede the MLP or the widths disagree.
 */
function layerOf(mlp: Mlp, index: number, previousDown: number, weightMatMuls: readonly WeightMatMul[], windowSizes: number[], where: string): LayerMap {
  const gateIndex = Math.min(mlp.gate.matmul.index, mlp.up.matmul.index);
  const window = weightMatMuls.filter((m) => m.index > previousDown && m.index < gateIndex);
  windowSizes.push(window.length);
  const attentionOut = window[window.length - 1];
  const projections = window.slice(0, -1);
  if (!attentionOut || projections.length === 0) {
    throw new GraphMapError(
      `${where}: layer ${index}: found the MLP (down projection ${describeNode(mlp.down.node)}) but no attention projections before it (${window.length} weight MatMuls between the previous MLP and this one)`,
    );
  }
  // The input norm output is the tensor the q/k/v (or fused qkv) projections read.
  const counts = new Map<string, number>();
  for (const m of projections) counts.set(m.input, (counts.get(m.input) ?? 0) + 1);
  const inputNorm = [...counts.entries()].sort((x, y) => y[1] - x[1])[0]![0];

  const gate = weightInfo(mlp.gate, where);
  const up = weightInfo(mlp.up, where);
  const down = weightInfo({ matmul: mlp.down }, where);
  const fused = mlp.gate.split !== undefined && mlp.gate.matmul === mlp.up.matmul;
  const [downIn, downOut] = down.layout === 'in_out' ? down.shape : [down.shape[1]!, down.shape[0]!];
  const gateOut = (gate.layout === 'in_out' ? gate.shape[1]! : gate.shape[0]!) / (fused ? 2 : 1);
  const upOut = (up.layout === 'in_out' ? up.shape[1]! : up.shape[0]!) / (fused ? 2 : 1);
  if (gateOut !== downIn || upOut !== downIn) {
    throw new GraphMapError(
      `${where}: layer ${index}: gate/up/down widths disagree (gate ${gate.name} [${gate.shape}], up ${up.name} [${up.shape}], down ${down.name} [${down.shape}])`,
    );
  }
  return {
    index,
    tensors: {
      input_norm: inputNorm,
      attention_output: attentionOut.output,
      gate_proj: mlp.gateTensor,
      up_proj: mlp.upTensor,
      glu_product: mlp.product,
      down_proj: mlp.down.output,
      mlp_output: mlp.down.output,
    },
    gate, up, down,
    nodes: { gate: mlp.gate.matmul.node.name, up: mlp.up.matmul.node.name, down: mlp.down.node.name, attentionOutput: attentionOut.node.name },
    fusedSplitNodes: fused ? [mlp.gate.split!.node.name, mlp.up.split!.node.name].filter((n, i, all) => all.indexOf(n) === i) : [],
    fusedGateUp: fused,
    activation: activationName(mlp.ops),
    intermediateSize: downIn!,
    hiddenSize: downOut!,
  };
}

/**
 * Every decoder layer holds the same number of weight MatMuls before its MLP (q/k/v/o, or qkv/o); a layer whose MLP
 * was not recognised leaves its projections in the next layer's window (or after the last MLP). That is an error
 * naming the layer, never a silent renumbering of the layers after it.
 */
function checkEveryLayerMapped(
  nodes: readonly NodeProto[],
  downIndices: readonly number[],
  windowSizes: readonly number[],
  weightMatMuls: readonly WeightMatMul[],
  isConstant: (name: string) => boolean,
  producer: ReadonlyMap<string, { node: NodeProto }>,
  where: string,
): void {
  const typical = Math.min(...windowSizes);
  const last = downIndices[downIndices.length - 1]!;
  // The LM head is the one weight MatMul expected after the last MLP.
  const trailing = weightMatMuls.filter((m) => m.index > last).length;
  const layer = windowSizes.findIndex((n) => n > typical);
  if (layer < 0 && trailing <= 1) return;
  const [from, to, count] = layer >= 0 ? [downIndices[layer - 1] ?? -1, downIndices[layer]!, windowSizes[layer]!] : [last, nodes.length, trailing];
  const missing = layer >= 0 ? layer : downIndices.length;
  const weighted = new Set(weightMatMuls.map((m) => m.node));
  /** The ops between a constant weight and a MatMul, when the MatMul's B input is computed from initializers only. */
  const constantPath = (name: string, depth: number): string[] | undefined => {
    if (isConstant(name)) return [];
    const p = producer.get(name);
    if (!p || depth > 8) return undefined;
    const ops = [p.node.opType];
    for (const input of p.node.input) {
      const before = constantPath(input, depth + 1);
      if (!before) return undefined;
      ops.push(...before);
    }
    return ops;
  };
  const found: string[] = [];
  for (let i = from + 1; i < to; i++) {
    const node = nodes[i]!;
    if ((node.opType !== 'MatMul' && node.opType !== 'Gemm') || weighted.has(node)) continue;
    const path = constantPath(node.input[1] ?? '', 0);
    if (path && path.length > 0) found.push(`${describeNode(node)} reads its weight through ${[...new Set(path)].join(' ← ')}`);
  }
  const opsUsed = new Set<string>();
  for (let i = from + 1; i < to; i++) if (!ELEMENTWISE_OPS.has(nodes[i]!.opType)) opsUsed.add(nodes[i]!.opType);
  throw new GraphMapError(
    `${where}: the MLP of decoder layer ${missing} was not recognised: ${count} weight MatMuls lie ` +
      `${layer >= 0 ? `before the next recognised MLP` : 'after the last recognised MLP'} where each layer has ${typical}` +
      `${layer >= 0 ? '' : ' (and the LM head 1)'}; ${found.length > 0 ? found.join('; ') : `ops there: ${[...opsUsed].join(', ')}`}. ` +
      'Layers are never renumbered around an unrecognised one; quantized or otherwise rewritten MLP weights are not supported.',
  );
}

/**
 * Layers are numbered by their order in the graph. Where an exporter put the layer number into the node or weight
 * names (`/model/layers.3/mlp/down_proj/MatMul`, `model.layers.3.mlp.down_proj.weight`), it must agree, so a graph whose
 * layers are out of order is refused rather than pruned on the wrong layers.
 */
function checkLayerNames(layers: readonly LayerMap[], where: string): void {
  for (const layer of layers) {
    for (const name of [layer.nodes.down, layer.down.name, layer.nodes.gate, layer.gate.name]) {
      const named = /(?:^|[./])layers[./](\d+)[./]/.exec(name)?.[1];
      if (named !== undefined && Number(named) !== layer.index) {
        throw new GraphMapError(`${where}: decoder layer ${layer.index} (in graph order) has its MLP in "${name}", named for layer ${named}; the graph's layer order disagrees with its names`);
      }
    }
  }
}

function weightInfo(source: ProjectionSource, where: string): WeightInfo {
  const tensor = source.matmul.weight;
  const dtype = tensorDtype(tensor);
  if (!dtype) throw new GraphMapError(`${where}: weight "${tensor.name}" has unsupported data type ${tensor.dataType}`);
  return {
    name: tensor.name,
    dtype,
    shape: tensorDims(tensor),
    layout: source.matmul.layout,
    ...(source.split ? { fusedHalf: source.split.half } : {}),
  };
}

function activationName(ops: string[]): string {
  if (ops.includes('Sigmoid') || ops.includes('Silu') || ops.includes('Swish')) return 'silu';
  if (ops.includes('Tanh') || ops.includes('GeluTanh') || ops.includes('FastGelu')) return 'gelu_tanh';
  if (ops.includes('Gelu') || ops.includes('Erf')) return 'gelu';
  return ops.filter((op) => op !== 'Mul' && op !== 'Add' && op !== 'Cast').join('+') || 'unknown';
}

function describeNode(node: NodeProto): string {
  return node.name ? `"${node.name}"` : `${node.opType} → ${node.output[0]}`;
}

function describeMissingGlu(model: ModelProto, where: string, weightMatMuls: WeightMatMul[]): string {
  const counts = new Map<string, number>();
  for (const node of model.graph?.node ?? []) counts.set(node.opType, (counts.get(node.opType) ?? 0) + 1);
  const notable = [...counts.entries()]
    .filter(([op]) => op !== 'Constant')
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([op, n]) => `${op}×${n}`)
    .join(', ');
  return (
    `${where}: no GLU MLP found (expected gate MatMul → activation → Mul ← up MatMul → down MatMul per layer). ` +
    `Found ${weightMatMuls.length} MatMul/Gemm with weight initializers and ops: ${notable}. ` +
    'GPT-2-style MLPs (one up projection, activation, down projection) and quantized MatMulNBits graphs are not supported.'
  );
}
