#!/usr/bin/env node
// Generates a Llama-3.2-1B-shaped ONNX model folder with random weights, for benchmarking the model layer.
//   node tools/synthetic-model/generate.mjs --out /tmp/fp-llama1b-f32 [--dtype f32|f16] [--layers 16]
// Shape: hidden 2048, intermediate 8192, 32 heads / 8 KV heads (dim 64), vocab 128256, tied embeddings (lm_head is a
// Transpose of the embedding, as torch.export writes it). Weights go to onnx/model.onnx_data, streamed tensor by tensor.
// Attention is causal multi-head with GQA but without RoPE: the graph only has to be the right size and shape.
// Needs the built core package: npx tsc -b packages/core/tsconfig.lib.json
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { create } from '@bufbuild/protobuf';
import {
  AttributeProtoSchema, AttributeProto_AttributeType, GraphProtoSchema, ModelProtoSchema, NodeProtoSchema,
  OperatorSetIdProtoSchema, TensorProtoSchema, TensorShapeProtoSchema, TensorShapeProto_DimensionSchema,
  TypeProtoSchema, TypeProto_TensorSchema, ValueInfoProtoSchema,
} from 'onnx-buf';
import { ExternalDataWriter, encodeOnnxModel, f32ToF16 } from '@fairprune/core';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    out: { type: 'string' },
    dtype: { type: 'string', default: 'f32' },
    layers: { type: 'string', default: '16' },
    hidden: { type: 'string', default: '2048' },
    intermediate: { type: 'string', default: '8192' },
    vocab: { type: 'string', default: '128256' },
    tokenizer: { type: 'string', default: join(here, '../../fixtures/llama3-tokenizer') },
  },
});
if (!args.out) throw new Error('--out <folder> is required');
if (existsSync(args.out)) throw new Error(`${args.out} exists; remove it first`);
const dtype = args.dtype;
if (dtype !== 'f32' && dtype !== 'f16') throw new Error('--dtype must be f32 or f16');
const L = Number(args.layers), H = Number(args.hidden), I = Number(args.intermediate), V = Number(args.vocab);
const HEADS = 32, KV = 8, D = H / HEADS;
const F32 = 1, F16 = 10, I64 = 7;
const W = dtype === 'f16' ? F16 : F32; // weight / activation element type

mkdirSync(join(args.out, 'onnx'), { recursive: true });
const writer = new ExternalDataWriter(join(args.out, 'onnx/model.onnx_data'), 'model.onnx_data', 4096);
const initializers = [];
const nodes = [];
let seed = 0x9e3779b9;

/** Streams a random [rows, cols] weight (uniform ±scale) into the external data file. */
function randomWeight(name, dims, scale) {
  const tensor = create(TensorProtoSchema, { name, dataType: W, dims: dims.map(BigInt) });
  const total = dims.reduce((a, b) => a * b, 1);
  const start = writer.begin();
  const chunk = 1 << 22;
  for (let done = 0; done < total; done += chunk) {
    const n = Math.min(chunk, total - done);
    const out = W === F16 ? new Uint16Array(n) : new Float32Array(n);
    for (let i = 0; i < n; i++) {
      seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
      const v = ((seed >>> 0) / 4294967296 - 0.5) * 2 * scale;
      out[i] = W === F16 ? f32ToF16(v) : v;
    }
    writer.append(new Uint8Array(out.buffer));
  }
  writer.finish(tensor, start);
  initializers.push(tensor);
  return name;
}

function constant(name, dataType, dims, values) {
  const t = create(TensorProtoSchema, { name, dataType, dims: dims.map(BigInt) });
  if (dataType === I64) t.int64Data = values.map(BigInt);
  else if (dataType === F16) t.int32Data = values.map(f32ToF16);
  else t.floatData = values;
  initializers.push(t);
  return name;
}

const attr = (name, value) =>
  typeof value === 'number'
    ? create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(value) })
    : create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: value.map(BigInt) });
let counter = 0;
function op(opType, inputs, attrs = {}, name) {
  const output = name ?? `t${counter++}_${opType}`;
  nodes.push(create(NodeProtoSchema, {
    opType, name: `node_${output}`, input: inputs, output: [output],
    attribute: Object.entries(attrs).map(([k, v]) => attr(k, v)),
  }));
  return output;
}

// shared constants
const two = constant('c_two', F32, [], [2]);
const eps = constant('c_eps', F32, [], [1e-5]);
const one = constant('c_one', F32, [], [1]);
const negBig = constant('c_neg', F32, [], [-1e9]);
const attnScale = constant('c_scale', W, [], [1 / Math.sqrt(D)]);
const shapeHeads = constant('c_shape_q', I64, [4], [0, 0, HEADS, D]);
const shapeKv = constant('c_shape_kv', I64, [4], [0, 0, KV, D]);
const expandGroups = constant('c_expand', I64, [5], [1, 1, HEADS / KV, 1, 1]);
const shapeMerged = constant('c_shape_merge', I64, [4], [0, HEADS, -1, D]);
const shapeOut = constant('c_shape_out', I64, [3], [0, 0, H]);
const axis2 = constant('c_axis2', I64, [1], [2]);
const idx1 = constant('c_idx1', I64, [1], [1]);

function rmsNorm(x, layerName) {
  const weight = constant(`${layerName}.weight`, F32, [H], new Array(H).fill(1));
  const x32 = W === F32 ? x : op('Cast', [x], { to: F32 });
  const mean = op('ReduceMean', [op('Pow', [x32, two])], { axes: [-1], keepdims: 1 });
  const normed = op('Mul', [op('Div', [x32, op('Sqrt', [op('Add', [mean, eps])])]), weight]);
  return W === F32 ? normed : op('Cast', [normed], { to: W });
}

// causal mask [T, T]: 0 on and below the diagonal, -1e9 above
const embedName = randomWeight('model.embed_tokens.weight', [V, H], 0.02);
let hidden = op('Gather', [embedName, 'input_ids']);
const seqLen = op('Gather', [op('Shape', ['input_ids']), idx1], { axis: 0 });
const square = op('ConstantOfShape', [op('Concat', [seqLen, seqLen], { axis: 0 })], {});
const causal = op('Mul', [op('Sub', [one, op('Trilu', [square], { upper: 0 })]), negBig]);
const mask = W === F32 ? causal : op('Cast', [causal], { to: W });

for (let l = 0; l < L; l++) {
  const p = `model.layers.${l}`;
  const xn = rmsNorm(hidden, `${p}.input_layernorm`);
  const q = op('Transpose', [op('Reshape', [op('MatMul', [xn, randomWeight(`${p}.self_attn.q_proj`, [H, H], 0.02)]), shapeHeads])], { perm: [0, 2, 1, 3] });
  const kvHeads = (w) =>
    op('Reshape', [op('Expand', [op('Unsqueeze', [op('Transpose', [op('Reshape', [op('MatMul', [xn, w]), shapeKv])], { perm: [0, 2, 1, 3] }), axis2]), expandGroups]), shapeMerged]);
  const k = kvHeads(randomWeight(`${p}.self_attn.k_proj`, [H, KV * D], 0.02));
  const v = kvHeads(randomWeight(`${p}.self_attn.v_proj`, [H, KV * D], 0.02));
  const scores = op('Add', [op('Mul', [op('MatMul', [q, op('Transpose', [k], { perm: [0, 1, 3, 2] })]), attnScale]), mask]);
  const probs = W === F32 ? op('Softmax', [scores], { axis: -1 }) : op('Cast', [op('Softmax', [op('Cast', [scores], { to: F32 })], { axis: -1 })], { to: W });
  const context = op('Reshape', [op('Transpose', [op('MatMul', [probs, v])], { perm: [0, 2, 1, 3] }), shapeOut]);
  const attention = op('MatMul', [context, randomWeight(`${p}.self_attn.o_proj`, [H, H], 0.02)]);
  hidden = op('Add', [hidden, attention]);
  const hn = rmsNorm(hidden, `${p}.post_attention_layernorm`);
  const gate = op('MatMul', [hn, randomWeight(`${p}.mlp.gate_proj`, [H, I], 0.02)]);
  const act = op('Mul', [gate, op('Sigmoid', [gate])]);
  const glu = op('Mul', [act, op('MatMul', [hn, randomWeight(`${p}.mlp.up_proj`, [H, I], 0.02)])]);
  hidden = op('Add', [hidden, op('MatMul', [glu, randomWeight(`${p}.mlp.down_proj`, [I, H], 0.02)])]);
  process.stderr.write(`layer ${l + 1}/${L} written\n`);
}
const final = rmsNorm(hidden, 'model.norm');
op('MatMul', [final, op('Transpose', [embedName], { perm: [1, 0] })], {}, 'logits');
writer.close();

const dim = (v) => create(TensorShapeProto_DimensionSchema, typeof v === 'number' ? { value: { case: 'dimValue', value: BigInt(v) } } : { value: { case: 'dimParam', value: v } });
const valueInfo = (name, elemType, dims) =>
  create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, { value: { case: 'tensorType', value: create(TypeProto_TensorSchema, { elemType, shape: create(TensorShapeProtoSchema, { dim: dims.map(dim) }) }) } }),
  });
const graph = create(GraphProtoSchema, {
  name: 'synthetic_llama',
  node: nodes,
  initializer: initializers,
  input: [valueInfo('input_ids', I64, ['batch', 'sequence']), valueInfo('attention_mask', I64, ['batch', 'sequence'])],
  output: [valueInfo('logits', W, ['batch', 'sequence', V])],
});
const model = create(ModelProtoSchema, {
  irVersion: 8n,
  producerName: 'fairprune-synthetic-model',
  opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 17n })],
  graph,
});
writeFileSync(join(args.out, 'onnx/model.onnx'), encodeOnnxModel(model));

const config = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: H, intermediate_size: I, num_hidden_layers: L,
  num_attention_heads: HEADS, num_key_value_heads: KV, head_dim: D, vocab_size: V, bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009], tie_word_embeddings: true, hidden_act: 'silu', rms_norm_eps: 1e-5,
  torch_dtype: dtype === 'f16' ? 'float16' : 'float32', max_position_embeddings: 131072,
};
writeFileSync(join(args.out, 'config.json'), JSON.stringify(config, null, 2) + '\n');
writeFileSync(join(args.out, 'generation_config.json'), JSON.stringify({ bos_token_id: 128000, eos_token_id: [128001, 128008, 128009] }, null, 2) + '\n');
for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(args.tokenizer, f), join(args.out, f));
process.stderr.write(`wrote ${args.out} (${dtype}, ${L} layers)\n`);
