import { existsSync, readdirSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { JsonInputError, jsonField, readJsonObject, type JsonObject } from '../io/read-json.js';
import { loadTokenizer, type TextTokenizer } from './tokenizer.js';

/** The config.json fields the pipeline reads. Everything else stays available in `raw`. */
export interface ModelConfig {
  /** `model_type` (e.g. `llama`, `gemma3_text`); `unknown` when absent. */
  modelType: string;
  /** `architectures` (e.g. `["LlamaForCausalLM"]`); empty when absent. */
  architectures: string[];
  /** `hidden_size`: width of the residual stream. */
  hiddenSize: number;
  /** `intermediate_size`: MLP expansion width (neurons per layer) as published, before any pruning. */
  intermediateSize: number;
  /** `num_hidden_layers`: decoder layers. */
  numHiddenLayers: number;
  /** `num_attention_heads`. */
  numAttentionHeads: number;
  /** `num_key_value_heads`; defaults to `numAttentionHeads` (no grouped-query attention). */
  numKeyValueHeads: number;
  /** `head_dim`; defaults to `hiddenSize / numAttentionHeads`. */
  headDim: number;
  /** `vocab_size`. */
  vocabSize: number;
  /** `max_position_embeddings`: the longest sequence the model was trained for, if given. */
  maxPositionEmbeddings: number | undefined;
  /** `bos_token_id`, if given. */
  bosTokenId: number | undefined;
  /** `eos_token_id` as a list (configs give one id or several). */
  eosTokenIds: number[];
  /** `pad_token_id`, if given. */
  padTokenId: number | undefined;
  /** `tie_word_embeddings`: the LM head shares the embedding matrix. */
  tieWordEmbeddings: boolean;
  /** The parsed config.json as written. */
  raw: Record<string, unknown>;
}

/** An opened model folder: its parsed config, a lazily loaded tokenizer, and the weight files found. */
export interface ModelFolder {
  /** Absolute path of the folder. */
  dir: string;
  /** The parsed `config.json`. */
  config: ModelConfig;
  /** Loaded on first access (building a 128k-vocab BPE takes about a second); load errors name the file. */
  readonly tokenizer: TextTokenizer;
  /** Absolute path of the chosen ONNX file (may not exist when only safetensors are published). */
  onnxPath: string | undefined;
  /** Every `.onnx` file under the folder, relative paths. */
  onnxFiles: string[];
  /** Safetensors shards, absolute paths, in name order. */
  safetensorsFiles: string[];
}

/** Options of {@link openModelFolder}. */
export interface OpenModelFolderOptions {
  /** ONNX file relative to the folder (the CLI's `--onnx-file`). Default: `onnx/model.onnx`, else `model.onnx`, else the folder's only `.onnx` file. */
  onnxFile?: string;
  /**
   * The tokenizer to use instead of loading the folder's `tokenizer.json`: for a folder whose tokenizer files are a
   * copy of another's (a pruned model), so one run loads the tokenizer once.
   */
  tokenizer?: TextTokenizer;
}

/** A model folder, its `config.json` or its ONNX file is missing or unreadable; the message names the path. */
export class ModelFolderError extends Error {
  /** Always `'ModelFolderError'`. */
  override name = 'ModelFolderError';
}

/**
 * Opens a Hugging Face-style model folder: reads config.json, checks tokenizer.json exists (it is parsed on first use
 * of `tokenizer`), lists the ONNX and safetensors files. Reads no weights.
 * @throws {@link ModelFolderError} when the folder, config.json or tokenizer.json is missing, a required config field
 *   is missing, or `options.onnxFile` does not exist or lies outside the folder.
 */
export function openModelFolder(dir: string, options: OpenModelFolderOptions = {}): ModelFolder {
  const absDir = resolve(dir);
  if (!existsSync(absDir) || !statSync(absDir).isDirectory()) {
    throw new ModelFolderError(`Model folder not found: ${absDir}`);
  }
  const config = readModelConfig(join(absDir, 'config.json'));
  if (!existsSync(join(absDir, 'tokenizer.json'))) throw new ModelFolderError(`Tokenizer file not found: ${join(absDir, 'tokenizer.json')}`);
  const onnxFiles = listOnnxFiles(absDir);
  const onnxPath = chooseOnnxFile(absDir, options.onnxFile, onnxFiles);
  const safetensorsFiles = readdirSync(absDir)
    .filter((f) => f.endsWith('.safetensors'))
    .sort()
    .map((f) => join(absDir, f));
  let tokenizer = options.tokenizer;
  return {
    dir: absDir,
    config,
    get tokenizer() {
      tokenizer ??= loadTokenizer(absDir);
      return tokenizer;
    },
    onnxPath,
    onnxFiles,
    safetensorsFiles,
  };
}

/**
 * Parses config.json; a missing or mistyped field (null, a string, an array, a fraction where a count belongs) is an
 * error naming the file and field.
 */
export function readModelConfig(path: string): ModelConfig {
  if (!existsSync(path)) throw new ModelFolderError(`config.json not found: ${path}`);
  try {
    return parseModelConfig(readJsonObject(path), path);
  } catch (error) {
    if (error instanceof JsonInputError) throw new ModelFolderError(error.message);
    throw error;
  }
}

function parseModelConfig(raw: JsonObject, path: string): ModelConfig {
  // Multimodal configs (Gemma 3) nest the decoder under text_config.
  const nested = jsonField(raw, 'text_config', 'object', path);
  const text: JsonObject = nested ? { ...raw, ...nested } : raw;
  const where = nested ? `${path} (text_config)` : path;
  const count = (key: string): number => jsonField(text, key, 'positive integer', where, true);
  const optionalId = (key: string): number | undefined => jsonField(text, key, 'integer', where);
  const hiddenSize = count('hidden_size');
  const numAttentionHeads = count('num_attention_heads');
  const eos = text['eos_token_id'];
  const eosTokenIds = Array.isArray(eos) ? eos : eos === undefined || eos === null ? [] : [eos];
  if (!eosTokenIds.every((id) => Number.isSafeInteger(id))) {
    throw new ModelFolderError(`${where}: field "eos_token_id" must be an integer or a list of integers, found ${JSON.stringify(eos)}`);
  }
  const architectures = jsonField(raw, 'architectures', 'array', path) ?? [];
  if (!architectures.every((a) => typeof a === 'string')) throw new ModelFolderError(`${path}: field "architectures" must be a list of strings`);
  return {
    modelType: jsonField(text, 'model_type', 'string', where) ?? 'unknown',
    architectures: architectures as string[],
    hiddenSize,
    intermediateSize: count('intermediate_size'),
    numHiddenLayers: count('num_hidden_layers'),
    numAttentionHeads,
    numKeyValueHeads: jsonField(text, 'num_key_value_heads', 'positive integer', where) ?? numAttentionHeads,
    headDim: jsonField(text, 'head_dim', 'positive integer', where) ?? hiddenSize / numAttentionHeads,
    vocabSize: count('vocab_size'),
    maxPositionEmbeddings: jsonField(text, 'max_position_embeddings', 'positive integer', where),
    bosTokenId: optionalId('bos_token_id'),
    eosTokenIds: eosTokenIds as number[],
    padTokenId: optionalId('pad_token_id'),
    tieWordEmbeddings: jsonField(text, 'tie_word_embeddings', 'boolean', where) ?? false,
    raw,
  };
}

function listOnnxFiles(dir: string): string[] {
  const found: string[] = [];
  for (const sub of ['.', 'onnx']) {
    const full = join(dir, sub);
    if (!existsSync(full) || !statSync(full).isDirectory()) continue;
    for (const f of readdirSync(full)) if (f.endsWith('.onnx')) found.push(sub === '.' ? f : `${sub}/${f}`);
  }
  return found.sort();
}

function chooseOnnxFile(dir: string, onnxFile: string | undefined, onnxFiles: readonly string[]): string | undefined {
  if (onnxFile !== undefined) {
    const path = isAbsolute(onnxFile) ? onnxFile : join(dir, onnxFile);
    if (relative(dir, path).startsWith('..')) {
      throw new ModelFolderError(`--onnx-file must lie inside the model folder ${dir}: ${onnxFile}`);
    }
    if (!existsSync(path)) throw new ModelFolderError(`ONNX file not found: ${path}`);
    return path;
  }
  for (const candidate of ['onnx/model.onnx', 'model.onnx']) {
    const path = join(dir, candidate);
    if (existsSync(path)) return path;
  }
  // A folder with a single graph under another name (model_kv.onnx, decoder_model_merged.onnx, a pruned copy that
  // kept its input's name) needs no --onnx-file.
  return onnxFiles.length === 1 ? join(dir, onnxFiles[0]!) : undefined;
}

/**
 * The ONNX path of a folder, for the steps that need one.
 * @throws {@link ModelFolderError} when the folder has no default ONNX file; the message lists the `.onnx` files found.
 */
export function requireOnnxPath(folder: ModelFolder): string {
  if (folder.onnxPath !== undefined) return folder.onnxPath;
  const found = folder.onnxFiles.length > 0 ? `found: ${folder.onnxFiles.join(', ')}; pass --onnx-file` : 'no .onnx file found';
  throw new ModelFolderError(`No onnx/model.onnx or model.onnx, and not a single .onnx file, in ${folder.dir} (${found})`);
}
