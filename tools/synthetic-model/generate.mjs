#!/usr/bin/env node
// Generates a Llama-shaped ONNX model folder with random weights, for benchmarking the model layer.
//   node tools/synthetic-model/generate.mjs --out /tmp/fp-llama1b-f32 [--shape 1b|3b|8b] [--dtype f32|f16] [--layers 16]
// Shapes (--layers/--hidden/--intermediate/--heads/--kv-heads/--vocab/--tied override one field):
//   1b  Llama-3.2-1B:  16 layers, hidden 2048, MLP 8192,  32 heads / 8 KV (dim 64),  tied embeddings
//   3b  Llama-3.2-3B:  28 layers, hidden 3072, MLP 8192,  24 heads / 8 KV (dim 128), tied embeddings
//   8b  Llama-3.1-8B:  32 layers, hidden 4096, MLP 14336, 32 heads / 8 KV (dim 128), separate lm_head
// all with vocab 128256. Tied: lm_head is a Transpose of the embedding, as torch.export writes it. Weights go to
// onnx/model.onnx_data, streamed tensor by tensor.
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
    shape: { type: 'string', default: '1b' },
    dtype: { type: 'string', default: 'f32' },
    layers: { type: 'string' },
    hidden: { type: 'string' },
    intermediate: { type: 'string' },
    heads: { type: 'string' },
    'kv-heads': { type: 'string' },
    vocab: { type: 'string' },
    tied: { type: 'string' },
    tokenizer: { type: 'string', default: join(here, '../../fixtures/llama3-tokenizer') },
  },
});
if (!args.out) throw new Error('--out <folder> is required');
if (existsSync(args.out)) throw new Error(`${args.out} exists; remove it first`);
const dtype = args.dtype;
if (dtype !== 'f32' && dtype !== 'f16') throw new Error('--dtype must be f32 or f16');
const SHAPES = {
  '1b': { layers: 16, hidden: 2048, intermediate: 8192, heads: 32, 'kv-heads': 8, vocab: 128256, tied: 'true' },
  '3b': { layers: 28, hidden: 3072, intermediate: 8192, heads: 24, 'kv-heads': 8, vocab: 128256, tied: 'true' },
  '8b': { layers: 32, hidden: 4096, intermediate: 14336, heads: 32, 'kv-heads': 8, vocab: 128256, tied: 'false' },
};
const preset = SHAPES[args.shape];
if (!preset) throw new Error(`--shape must be one of ${Object.keys(SHAPES).join(', ')}, got ${args.shape}`);
const pick = (key) => args[key] ?? String(preset[key]);
const L = Number(pick('layers')), H = Number(pick('hidden')), I = Number(pick('intermediate')), V = Number(pick('vocab'));
const HEADS = Number(pick('heads')), KV = Number(pick('kv-heads')), D = H / HEADS;
const tied = pick('tied') === 'true';
if (!Number.isInteger(D) || HEADS % KV !== 0) throw new Error(`--hidden ${H} must split into --heads ${HEADS}, a multiple of --kv-heads ${KV}`);
const F32 = 1, F16 = 10, I64 = 7;
const W = dtype === 'f16' ? F16 : F32; // weight / activation element type

mkdirSync(join(args.out, 'onnx'), { recursive: true });
const writer = new ExternalDataWriter(join(args.out, 'onnx/model.onnx_data'), 'model.onnx_data', 4096);
const initializers = [];
const nodes = [];
let seed = 0x9e3779b9;

const f16Tables = new Map();
function f16Table(scale) {
  let table = f16Tables.get(scale);
  if (!table) {
    table = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) table[i] = f32ToF16(((i + 0.5) / 65536 - 0.5) * 2 * scale);
    f16Tables.set(scale, table);
  }
  return table;
}

/** Streams a random [rows, cols] weight (uniform ±scale) into the external data file. */
function randomWeight(name, dims, scale) {
  const tensor = create(TensorProtoSchema, { name, dataType: W, dims: dims.map(BigInt) });
  const total = dims.reduce((a, b) => a * b, 1);
  const start = writer.begin();
  const chunk = 1 << 22;
  // fp16: each 32-bit draw gives two 16-bit indices into a table of 65536 uniform values, already in fp16 (converting
  // every value made generating the 8B shape take 20 minutes).
  const table = W === F16 ? f16Table(scale) : undefined;
  for (let done = 0; done < total; done += chunk) {
    const n = Math.min(chunk, total - done);
    const out = W === F16 ? new Uint16Array(n) : new Float32Array(n);
    for (let i = 0; i < n; i++) {
      seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
      if (table) {
        out[i] = table[seed & 0xffff];
        if (++i < n) out[i] = table[seed >>> 16];
      } else out[i] = ((seed >>> 0) / 4294967296 - 0.5) * 2 * scale;
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
  typeof value === 'object' && !Array.isArray(value)
    ? create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.TENSOR, t: value })
    : typeof value === 'number'
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
// ConstantOfShape fills with 0 unless given a value: ones, so that Trilu keeps the lower triangle (with zeros the mask
// hid every position, which fp32 survives as uniform attention and fp16 turns into NaN).
const square = op('ConstantOfShape', [op('Concat', [seqLen, seqLen], { axis: 0 })], { value: create(TensorProtoSchema, { dataType: F32, dims: [1n], floatData: [1] }) });
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
const lmHead = tied ? op('Transpose', [embedName], { perm: [1, 0] }) : randomWeight('lm_head.weight', [H, V], 0.02);
op('MatMul', [final, lmHead], {}, 'logits');
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
  eos_token_id: [128001, 128008, 128009], tie_word_embeddings: tied, hidden_act: 'silu', rms_norm_eps: 1e-5,
  torch_dtype: dtype === 'f16' ? 'float16' : 'float32', max_position_embeddings: 131072,
};
writeFileSync(join(args.out, 'config.json'), JSON.stringify(config, null, 2) + '\n');
writeFileSync(join(args.out, 'generation_config.json'), JSON.stringify({ bos_token_id: 128000, eos_token_id: [128001, 128008, 128009] }, null, 2) + '\n');
for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(args.tokenizer, f), join(args.out, f));
process.stderr.write(`wrote ${args.out} (${args.shape} shape, ${dtype}, ${L} layers)\n`);
