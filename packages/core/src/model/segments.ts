import { create } from '@bufbuild/protobuf';
import {
  GraphProtoSchema,
  ModelProtoSchema,
  TypeProtoSchema,
  TypeProto_TensorSchema,
  ValueInfoProtoSchema,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from 'onnx-buf';
import { GraphMapError, type GraphMap } from './graph-map.js';

/**
 * One piece of a cut decoder graph: the prefix (index −1: embeddings, masks, rotary tables), one decoder layer
 * (index l), or the suffix (index = layer count: final norm, lm_head).
 */
export interface GraphSegment {
  /** `prefix`, `layer <l>` or `suffix`, for messages. */
  name: string;
  /** −1 for the prefix, the layer index, or the layer count for the suffix. */
  index: number;
  /** The segment's nodes in graph order, with copies of the constant-only nodes they read. */
  nodes: NodeProto[];
  /** Tensors the segment reads from earlier segments or from the graph's inputs. */
  inputs: string[];
  /** Tensors later segments read, the requested extra outputs produced here, and (suffix) the logits. */
  outputs: string[];
  /** Initializers the nodes read; external ones still point at their file and offset. */
  initializers: TensorProto[];
}

/** Result of {@link segmentGraph}. */
export interface GraphSegments {
  /** Embeddings and everything the layers share (masks, rotary tables, positions). */
  prefix: GraphSegment;
  /** One segment per decoder layer, in graph order. */
  layers: GraphSegment[];
  /** Final norm and lm_head. */
  suffix: GraphSegment;
  /** The residual stream entering layer l (index l), and entering the final norm (last entry). */
  residual: string[];
  /** For each tensor that crosses segments: the index of the last segment that reads it (when it can be freed). */
  lastReader: ReadonlyMap<string, number>;
  /** The graph's inputs (input_ids, attention_mask, …) as declared, for segments that read them. */
  graphInputs: ReadonlyMap<string, ValueInfoProto>;
}

/**
 * Cuts a decoder graph at its residual stream: the tensor each layer's attention residual Add reads from before the
 * layer, and each MLP residual Add's output. Every node goes to the segment of the latest residual stream it depends
 * on, so shared computations on the graph inputs (masks, rotary tables) land in the prefix once; nodes that read
 * only initializers are copied into each segment that uses them. `extraOutputs` (e.g. capture outputs) become
 * outputs of the segment producing them. `where` names the file in errors.
 * @throws {@link GraphMapError} when a layer's residual Adds cannot be found or the graph does not cut cleanly.
 */
export function segmentGraph(model: ModelProto, map: GraphMap, where: string, extraOutputs: readonly string[] = []): GraphSegments {
  const graph = model.graph!;
  const initializers = new Map(graph.initializer.map((t) => [t.name, t]));
  const graphInputs = new Map(graph.input.filter((i) => !initializers.has(i.name)).map((i) => [i.name, i]));
  for (const node of graph.node) {
    if (node.attribute.some((a) => a.g !== undefined || a.graphs.length > 0)) {
      throw new GraphMapError(`${where}: node ${node.name || node.opType} has a subgraph (${node.opType}); graphs with control flow cannot be cut into layers`);
    }
  }

  const producer = new Map<string, number>();
  graph.node.forEach((node, index) => {
    for (const output of node.output) producer.set(output, index);
  });
  // Dynamic: depends on a graph input. Everything else is computed from initializers alone.
  const dynamic = new Set<string>(graphInputs.keys());
  const dynamicNode = graph.node.map((node) => {
    const isDynamic = node.input.some((input) => dynamic.has(input));
    if (isDynamic) for (const output of node.output) dynamic.add(output);
    return isDynamic;
  });

  /** The first Add after `from` that joins a tensor computed from `from` with one that is not: the residual Add. */
  const residualAdd = (from: string, what: string, layer: number): { other: string; output: string; node: number } => {
    const reached = new Set([from]);
    const start = producer.get(from) ?? -1;
    for (let index = start + 1; index < graph.node.length && index < start + 512; index++) {
      const node = graph.node[index]!;
      if (!node.input.some((input) => reached.has(input))) continue;
      if (node.opType === 'Add' && node.input.length === 2 && node.input.every((input) => dynamic.has(input))) {
        const other = node.input.find((input) => !reached.has(input));
        if (other !== undefined) return { other, output: node.output[0]!, node: index };
      }
      for (const output of node.output) reached.add(output);
    }
    throw new GraphMapError(`${where}: layer ${layer}: no residual Add found after the ${what} "${from}"`);
  };

  const numLayers = map.layers.length;
  const attentionAdds = map.layers.map((layer) => residualAdd(layer.tensors.attention_output, 'attention output', layer.index));
  const mlpAdds = map.layers.map((layer) => residualAdd(layer.tensors.mlp_output, 'MLP output', layer.index));
  const residual = [attentionAdds[0]!.other, ...mlpAdds.map((add) => add.output)];

  // A tensor's segment: the latest residual stream it depends on (−1: graph inputs only).
  const level = new Map<string, number>();
  for (const name of graphInputs.keys()) level.set(name, -1);
  const nodeLevel = graph.node.map((node, index) => {
    if (!dynamicNode[index]) return undefined;
    const own = Math.max(-1, ...node.input.filter((input) => dynamic.has(input)).map((input) => level.get(input)!));
    for (const output of node.output) {
      const stream = residual.indexOf(output);
      level.set(output, stream >= 0 ? stream : own);
    }
    return own;
  });

  const check = (tensor: string, expected: number, what: string) => {
    const found = level.get(tensor);
    if (found !== expected) {
      throw new GraphMapError(
        `${where}: ${what} "${tensor}" is computed in segment ${found === undefined ? '(none: constant)' : found} (expected ${expected}); ` +
          'the graph does not cut into layers at its residual stream',
      );
    }
  };
  map.layers.forEach((layer, l) => {
    for (const key of ['input_norm', 'gate_proj', 'up_proj', 'glu_product', 'mlp_output'] as const) check(layer.tensors[key], l, `layer ${l} ${key}`);
    if (nodeLevel[mlpAdds[l]!.node] !== l) throw new GraphMapError(`${where}: layer ${l}: its MLP residual Add reads tensors of later layers`);
  });
  check(map.logits, numLayers, 'logits');

  // The segment computing a tensor (a residual stream is computed by the segment before the one it feeds).
  const producedIn = (tensor: string): number | undefined => {
    const p = producer.get(tensor);
    return p === undefined ? (graphInputs.has(tensor) ? -1 : undefined) : nodeLevel[p];
  };
  // Readers per crossing tensor, so the runner can free it after its last one.
  const lastReader = new Map<string, number>();
  graph.node.forEach((node, index) => {
    const reader = nodeLevel[index];
    if (reader === undefined) return;
    for (const input of node.input) {
      if (!dynamic.has(input) || producedIn(input) === reader) continue;
      lastReader.set(input, Math.max(reader, lastReader.get(input) ?? -Infinity));
    }
  });

  for (const extra of extraOutputs) {
    if (level.get(extra) === undefined) throw new GraphMapError(`${where}: requested output "${extra}" is not computed from the graph inputs`);
  }
  const requested = new Set([...extraOutputs, map.logits]);
  const build = (index: number, name: string): GraphSegment => {
    const own = new Set<number>();
    graph.node.forEach((_, i) => {
      if (nodeLevel[i] === index) own.add(i);
    });
    // Nodes computed from initializers alone (shape constants, a weight's Transpose or Cast) are pure: each segment
    // that reads one gets its own copy.
    const pending = [...own];
    while (pending.length > 0) {
      for (const input of graph.node[pending.pop()!]!.input) {
        const p = producer.get(input);
        if (p !== undefined && !dynamicNode[p] && !own.has(p)) {
          own.add(p);
          pending.push(p);
        }
      }
    }
    const nodes = [...own].sort((x, y) => x - y).map((i) => graph.node[i]!);
    const produced = new Set(nodes.flatMap((n) => n.output));
    const inputs = [...new Set(nodes.flatMap((n) => n.input).filter((t) => dynamic.has(t) && !produced.has(t)))];
    const outputs = [...produced].filter((t) => (lastReader.get(t) ?? -Infinity) > index || (requested.has(t) && producedIn(t) === index));
    const used = new Set(nodes.flatMap((n) => n.input));
    return { name, index, nodes, inputs, outputs, initializers: graph.initializer.filter((t) => used.has(t.name)) };
  };
  return {
    prefix: build(-1, 'prefix'),
    layers: map.layers.map((_, l) => build(l, `layer ${l}`)),
    suffix: build(numLayers, 'suffix'),
    residual,
    lastReader,
    graphInputs,
  };
}

/**
 * A standalone model of one segment: its nodes and initializers (external ones keep their location and offset,
 * so no weight is copied) with the original opsets. `elemTypes` gives the ONNX element type of each input that
 * is not a graph input (exporters rarely record intermediate types, so the caller takes them from the tensors).
 */
export function segmentModel(model: ModelProto, segments: GraphSegments, segment: GraphSegment, elemTypes: ReadonlyMap<string, number>): ModelProto {
  const input = segment.inputs.map((name) => {
    const declared = segments.graphInputs.get(name);
    if (declared) return declared;
    const elemType = elemTypes.get(name);
    if (elemType === undefined) throw new Error(`${segment.name}: no element type known for input "${name}"`);
    return create(ValueInfoProtoSchema, {
      name,
      type: create(TypeProtoSchema, { value: { case: 'tensorType', value: create(TypeProto_TensorSchema, { elemType }) } }),
    });
  });
  return create(ModelProtoSchema, {
    irVersion: model.irVersion,
    opsetImport: model.opsetImport,
    producerName: 'fairprune-segment',
    graph: create(GraphProtoSchema, {
      name: `${model.graph?.name ?? 'graph'}_${segment.name.replace(' ', '_')}`,
      node: segment.nodes,
      initializer: segment.initializers,
      input,
      output: segment.outputs.map((name) => create(ValueInfoProtoSchema, { name })),
    }),
  });
}
