import { existsSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import type { ModelProto } from 'onnx-buf';
import { describeJson, JsonInputError, jsonField, readJsonObject } from '../io/read-json.js';
import type { ModelFolder } from './folder.js';
import { mapGraph, type GraphMap, type LayerMap } from './graph-map.js';
import { TensorDataReader, checkExternalData, namingFile, OnnxFormatError, readOnnxModel, tensorByteLength, tensorDims, tensorDtype } from './onnx-codec.js';
import { parseHfMlpTensor } from './neurons.js';
import { SafetensorsFile, type SafetensorsEntry } from './safetensors.js';

/** What {@link validateModel} found: the parsed graph, its map, and the disagreements between the formats. */
export interface ModelValidation {
  /** The decoded ONNX model (reusable, so the graph is read once per command). */
  model: ModelProto;
  /** Its decoder layers, matched to config.json and safetensors by index. */
  map: GraphMap;
  /** config.json vs graph vs safetensors disagreements; `inspect` shows them, the writing commands refuse them. */
  findings: string[];
  /** The longest token sequence the model takes: `max_position_embeddings`, or the graph's fixed length if smaller. */
  contextLimit: number | undefined;
  /** What set {@link contextLimit}, for messages (`config.json max_position_embeddings`, the graph's input). */
  contextLimitSource: string | undefined;
}

/** The model's files disagree (see {@link ModelValidation.findings}) and `--allow-mismatch` was not given. */
export class ModelMismatchError extends Error {
  /** Always `'ModelMismatchError'`. */
  override name = 'ModelMismatchError';
}

/** The input checks an output records: whether mismatches were allowed, and which were found. */
export interface InputChecks {
  /** `--allow-mismatch` was given. */
  allowMismatch: boolean;
  /** The findings the run proceeded with (empty when the files agree). */
  mismatches: string[];
}

/**
 * Reads and cross-checks a model folder before any long work: the ONNX graph (external data present and long
 * enough, inline data as long as the dims say, every config layer's MLP recognised), every safetensors shard per the
 * spec, the shard index, and config.json vs graph vs safetensors — layer count, hidden and MLP widths (per-layer
 * widths of a pruned model are fine when every format agrees), every expected MLP tensor present with the graph's
 * shape and a float dtype. Layers are matched by index: graph layer i with `layers.i.` tensors.
 * @throws {@link OnnxFormatError}, {@link GraphMapError}, {@link SafetensorsError} or {@link JsonInputError} for a
 *   malformed file (always fatal); disagreements between well-formed files are returned as `findings`.
 */
export function validateModel(folder: ModelFolder, onnxPath: string): ModelValidation {
  const model = readOnnxModel(onnxPath);
  checkExternalData(model, onnxPath);
  namingFile(onnxPath, () => checkInlineData(model, onnxPath));
  const map = mapGraph(model, onnxPath);
  const config = folder.config;
  const configPath = join(folder.dir, 'config.json');
  const findings: string[] = [];
  if (map.layers.length !== config.numHiddenLayers) {
    findings.push(`${configPath} says num_hidden_layers ${config.numHiddenLayers}, ${onnxPath} has ${map.layers.length} decoder layers`);
  }
  const hidden = new Set(map.layers.map((l) => l.hiddenSize));
  if (hidden.size !== 1 || !hidden.has(config.hiddenSize)) {
    findings.push(`${configPath} says hidden_size ${config.hiddenSize}, ${onnxPath} has MLP outputs of width ${[...hidden].join(', ')}`);
  }
  const widths = map.layers.map((l) => l.intermediateSize);
  const perLayer = config.raw['fairprune_intermediate_sizes'];
  const declared = Array.isArray(perLayer) ? perLayer : widths.map(() => config.intermediateSize);
  const differing = widths.flatMap((w, i) => (w === declared[i] ? [] : [`layer ${i}: ${w} (config ${String(declared[i])})`]));
  if (differing.length > 0) {
    const what = Array.isArray(perLayer) ? 'fairprune_intermediate_sizes' : `intermediate_size ${config.intermediateSize}`;
    findings.push(`${configPath} ${what} disagrees with the MLP widths of ${onnxPath}: ${differing.join(', ')}`);
  }
  const logitsShape = model.graph!.output.find((o) => o.name === map.logits);
  const vocab = fixedDims(logitsShape)?.at(-1);
  if (vocab !== undefined && vocab !== config.vocabSize) {
    findings.push(`${configPath} says vocab_size ${config.vocabSize}, ${onnxPath} output "${map.logits}" has ${vocab} logits`);
  }
  if (folder.safetensorsFiles.length > 0) findings.push(...checkSafetensors(folder, map.layers, config.numHiddenLayers, config.hiddenSize));
  const limit = contextLimitOf(model, config.maxPositionEmbeddings, onnxPath);
  return { model, map, findings, ...limit };
}

/**
 * Refuses a model whose files disagree unless `allowMismatch`, before any long work.
 * @throws {@link ModelMismatchError} listing every finding and naming the flag that proceeds anyway.
 */
export function requireConsistentModel(validation: ModelValidation, allowMismatch: boolean): InputChecks {
  if (validation.findings.length > 0 && !allowMismatch) {
    throw new ModelMismatchError(
      `The model's files disagree:\n  ${validation.findings.join('\n  ')}\n` +
        'Fix the folder, or pass --allow-mismatch to proceed anyway (the output records that you did).',
    );
  }
  return { allowMismatch, mismatches: validation.findings };
}

/** Inline float initializers must hold exactly dims × element size bytes: a short one would be read past its end. */
function checkInlineData(model: ModelProto, onnxPath: string): void {
  const reader = new TensorDataReader(dirname(onnxPath));
  try {
    for (const tensor of model.graph!.initializer) {
      if (!tensorDtype(tensor)) continue;
      const dims = tensorDims(tensor);
      if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw new OnnxFormatError(`${onnxPath}: initializer "${tensor.name}" has invalid dims [${dims.join(', ')}]`);
      }
      const expected = tensorByteLength(tensor);
      const actual = reader.byteLength(tensor);
      if (actual !== expected) {
        throw new OnnxFormatError(`${onnxPath}: initializer "${tensor.name}" [${dims.join(', ')}] needs ${expected} bytes of data, holds ${actual}`);
      }
    }
  } finally {
    reader.close();
  }
}

type ValueInfo = NonNullable<ModelProto['graph']>['input'][number];

/** The dims of a graph input/output, undefined where a dim is symbolic (or the type is not a tensor). */
function fixedDims(info: ValueInfo | undefined): (number | undefined)[] | undefined {
  const type = info?.type?.value;
  if (!type || type.case !== 'tensorType') return undefined;
  return type.value.shape?.dim.map((d) => (d.value.case === 'dimValue' ? Number(d.value.value) : undefined));
}

function contextLimitOf(
  model: ModelProto,
  maxPositions: number | undefined,
  onnxPath: string,
): Pick<ModelValidation, 'contextLimit' | 'contextLimitSource'> {
  const input = model.graph!.input.find((i) => i.name === 'input_ids');
  const sequence = fixedDims(input)?.[1];
  if (sequence !== undefined && sequence > 0 && (maxPositions === undefined || sequence < maxPositions)) {
    return { contextLimit: sequence, contextLimitSource: `the fixed sequence length of input_ids in ${onnxPath}` };
  }
  if (maxPositions !== undefined) return { contextLimit: maxPositions, contextLimitSource: 'config.json max_position_embeddings' };
  return { contextLimit: undefined, contextLimitSource: undefined };
}

const HF_LAYER = /(?:^|\.)layers\.(\d+)\./;
const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

/** Every shard per the spec (errors), then each config layer's MLP tensors against the graph's layer of that index. */
function checkSafetensors(folder: ModelFolder, layers: readonly LayerMap[], numLayers: number, hiddenSize: number): string[] {
  const findings: string[] = [];
  const tensors = new Map<string, { file: string; entry: SafetensorsEntry }>();
  for (const path of folder.safetensorsFiles) {
    const file = new SafetensorsFile(path); // validates the header and byte ranges, or throws naming the tensor
    file.close();
    for (const entry of file.entries.values()) {
      const other = tensors.get(entry.name);
      if (other) findings.push(`tensor "${entry.name}" is in both ${other.file} and ${path}`);
      tensors.set(entry.name, { file: path, entry });
    }
  }
  const indexPath = join(folder.dir, 'model.safetensors.index.json');
  const index = existsSync(indexPath) ? readIndex(indexPath) : undefined;
  if (index) {
    for (const [name, shard] of Object.entries(index)) {
      const found = tensors.get(name);
      if (!found) findings.push(`${indexPath} lists tensor "${name}" in ${shard}, but no shard holds it`);
      else if (basename(found.file) !== shard) findings.push(`${indexPath} lists tensor "${name}" in ${shard}, but it is in ${basename(found.file)}`);
    }
  }
  const where = folder.safetensorsFiles.map((f) => relative(folder.dir, f)).join(', ');
  // One pass over the names: `layer.projection` → tensor, so the per-layer checks are lookups.
  const mlpTensors = new Map<string, [string, SafetensorsEntry]>();
  for (const [name, { entry }] of tensors) {
    const layer = HF_LAYER.exec(name);
    if (layer && Number(layer[1]) >= numLayers) findings.push(`${where} has tensor "${name}" of layer ${layer[1]}, config.json has ${numLayers} layers`);
    const mlp = parseHfMlpTensor(name);
    if (mlp?.kind === 'weight') mlpTensors.set(`${mlp.layer}.${mlp.projection}`, [name, entry]);
  }
  // A config claiming more layers than the graph has is a finding already; checking past the graph's layers would
  // only repeat it (and a hostile count would loop for ever).
  for (let i = 0; i < Math.min(numLayers, layers.length); i++) {
    const width = layers[i]!.intermediateSize;
    const fused = mlpTensors.get(`${i}.gate_up_proj`);
    const expected: [string, number, number][] = fused
      ? [['gate_up_proj', 2 * width, hiddenSize]]
      : [
          ['gate_proj', width, hiddenSize],
          ['up_proj', width, hiddenSize],
        ];
    expected.push(['down_proj', hiddenSize, width]);
    for (const [projection, rows, cols] of expected) {
      const found = mlpTensors.get(`${i}.${projection}`);
      if (!found) {
        findings.push(`${where} has no layers.${i}.mlp.${projection}.weight (layer ${i} of ${numLayers} in config.json)`);
        continue;
      }
      const [name, entry] = found;
      if (!FLOAT_DTYPES.has(entry.dtype)) findings.push(`${where}: "${name}" is ${entry.dtype}, expected F32, F16 or BF16`);
      const shape = entry.shape;
      if (shape.length !== 2 || shape[0] !== rows || shape[1] !== cols) {
        findings.push(`${where}: "${name}" is [${shape.join(', ')}], the graph's layer ${i} needs [${rows}, ${cols}]`);
      }
    }
  }
  return findings;
}

/** `weight_map` of a shard index: tensor name → shard file name. */
function readIndex(path: string): Record<string, string> {
  const index = readJsonObject(path);
  const map = jsonField(index, 'weight_map', 'object', path, true);
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string') throw new JsonInputError(`${path}: weight_map entry "${name}" must be a file name, found ${describeJson(shard)}`);
  }
  return map as Record<string, string>;
}
