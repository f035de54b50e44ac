import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { ARTIFACTS } from '../io/artifacts.js';
import { openOutput } from '../io/output.js';
import { jsonField, readJsonObject } from '../io/read-json.js';
import { openModelFolder } from '../model/folder.js';
import { SafetensorsFile } from '../model/safetensors.js';
import { mapGraph, type GraphMap } from '../model/graph-map.js';
import { TensorDataReader, checkExternalData, externalLocation, readOnnxModel, tensorByteLength, tensorDtype } from '../model/onnx-codec.js';
import {
  SurgeryError,
  fixGraphAfterRemoval,
  normalizeSelection,
  onnxWeightEdits,
  pruneSafetensorsFile,
  writeOnnxModelStreamed,
} from './surgery.js';
import type { NeuronSelection } from '../model/neurons.js';
import type { PruneMode } from './plan.js';
import { MLP_BIAS_MODEL_TYPES, addOnnxMlpBiases } from './compensate.js';

/** Options of {@link writePrunedFolder}. */
export interface WritePrunedFolderOptions {
  /** Neurons to prune per layer; indices must lie in the layer's width, and `remove` must keep at least one. */
  selection: NeuronSelection;
  /** Remove the neurons (smaller model) or zero their weights (same shapes). */
  mode: PruneMode;
  /** ONNX files to prune, relative to the folder. Default: the folder's ONNX file (`onnx/model.onnx`, else `model.onnx`). */
  onnxFiles?: readonly string[];
  /** Prune the safetensors weights too (default: when the folder has them). */
  safetensors?: boolean;
  /** Replace an existing output folder that an earlier fairprune run wrote (anything else is refused). */
  force?: boolean;
  /** Write ONNX tensor data to an external file. Default: when the source has external data or over 1 GiB of weights. */
  externalData?: boolean;
  /** Progress lines (the CLI prints them to stderr). */
  onProgress?: (message: string) => void;
  /**
   * A bias added to these layers' MLP outputs (mean compensation): an `Add` after down_proj in the ONNX graphs and,
   * in safetensors, down_proj biases with zero gate/up biases and `mlp_bias: true` (Llama-family configs only).
   */
  mlpBiases?: ReadonlyMap<number, Float32Array>;
}

/** What {@link writePrunedFolder} wrote. */
export interface PrunedFolderResult {
  /** Absolute path of the written folder. */
  outputDir: string;
  /** Pruned ONNX files, relative to the folder. */
  onnxFiles: string[];
  /** Pruned safetensors files, relative to the folder. */
  safetensorsFiles: string[];
  /** MLP width per layer after pruning. */
  intermediateSizes: number[];
  /** ONNX files of the input that were not pruned and therefore not copied. */
  skippedOnnxFiles: string[];
}

const LARGE_MODEL_BYTES = 2 ** 30;

/**
 * Writes a pruned copy of a model folder: ONNX graphs and safetensors pruned, config/tokenizer/generation files
 * copied (config.json with the new width). It is written on the output protocol ({@link openOutput}): under a
 * temporary sibling folder, fsynced and renamed to `outputDir` at the end, with a lock against a second writer; an
 * existing `outputDir` must be empty, or (with `force`) an earlier fairprune output. The input folder is only read.
 * @throws {@link SurgeryError} when `outputDir` overlaps the input, the selection is invalid, or the folder has no
 *   weights to prune; {@link OutputError} when `outputDir` cannot be written or replaced;
 *   {@link OnnxFormatError} / {@link GraphMapError} for bad models.
 */
export function writePrunedFolder(inputDir: string, outputDir: string, options: WritePrunedFolderOptions): PrunedFolderResult {
  const output = resolve(outputDir);
  checkOutputOutsideInput(inputDir, output);
  const pending = openOutput(output, { kind: 'dir', command: 'writePrunedFolder', force: options.force ?? false });
  let result: Omit<PrunedFolderResult, 'outputDir'>;
  try {
    result = writePrunedModel(inputDir, pending.tempPath, options);
  } catch (error) {
    throw pending.fail(error);
  }
  pending.commit();
  return { outputDir: output, ...result };
}

/** Refuses an output folder that is the input, inside it, or contains it (checked before any work). */
export function checkOutputOutsideInput(inputDir: string, outputDir: string): void {
  refuseOverlap(realpathSync(resolve(inputDir)), resolve(outputDir));
}

/**
 * Writes the pruned model into `dir`, an existing folder that nothing else writes (an output's temp folder: the
 * caller commits it, after adding its own files).
 */
export function writePrunedModel(inputDir: string, dir: string, options: Omit<WritePrunedFolderOptions, 'force'>): Omit<PrunedFolderResult, 'outputDir'> {
  const input = realpathSync(resolve(inputDir));
  const progress = options.onProgress ?? (() => {});
  const folder = openModelFolder(input, options.onnxFiles?.[0] !== undefined ? { onnxFile: options.onnxFiles[0] } : {});
  const onnxFiles = options.onnxFiles ?? (folder.onnxPath ? [relative(input, folder.onnxPath)] : []);
  const safetensorsFiles = options.safetensors === false ? [] : folder.safetensorsFiles.map((f) => basename(f));
  if (onnxFiles.length === 0 && safetensorsFiles.length === 0) throw new SurgeryError(`${input} has no ONNX or safetensors weights to prune`);

  const maps = onnxFiles.map((file) => {
    const path = join(input, file);
    const model = readOnnxModel(path);
    checkExternalData(model, path);
    return { file, path, model, map: mapGraph(model, path) };
  });
  const widths = maps[0]?.map.layers.map((l) => l.intermediateSize) ?? Array<number>(folder.config.numHiddenLayers).fill(folder.config.intermediateSize);
  for (const { path, map } of maps) checkSameWidths(path, map, widths);
  const selection = normalizeSelection(options.selection, widths, options.mode);
  const newWidths = widths.map((w, i) => (options.mode === 'remove' ? w - (selection.get(i)?.length ?? 0) : w));
  const uniform = newWidths.every((w) => w === newWidths[0]);
  if (options.mode === 'remove' && !uniform && safetensorsFiles.length > 0) {
    throw new SurgeryError(
      `Removing a different number of neurons per layer (${newWidths.join(', ')} kept) cannot be expressed in safetensors: ` +
        'HF config.json has one intermediate_size for all layers. Use mode "zero" (same shapes, zeroed weights), ' +
        'prune the same count in every layer, or prune only the ONNX weights (safetensors: false / --no-safetensors).',
    );
  }

  const mlpBiases = options.mlpBiases && options.mlpBiases.size > 0 ? options.mlpBiases : undefined;
  if (mlpBiases && safetensorsFiles.length > 0 && !MLP_BIAS_MODEL_TYPES.includes(folder.config.modelType)) {
    throw new SurgeryError(
      `${join(input, 'config.json')}: model_type "${folder.config.modelType}" has no mlp_bias setting, so Hugging Face would not load ` +
        `the compensation biases from safetensors (only ${MLP_BIAS_MODEL_TYPES.join(', ')} can carry them). ` +
        'Write only the ONNX model (safetensors: false / --no-safetensors), or do not compensate.',
    );
  }

  copySupportFiles(input, dir, options.mode === 'remove', newWidths, uniform, mlpBiases !== undefined && safetensorsFiles.length > 0);
  for (const { file, path, model, map } of maps) {
    progress(`writing ${file}`);
    const edits = onnxWeightEdits(map, selection, options.mode);
    if (options.mode === 'remove') fixGraphAfterRemoval(model, map, selection);
    if (mlpBiases) addOnnxMlpBiases(model, map, mlpBiases, path);
    const sourceExternal = model.graph!.initializer.some((t) => externalLocation(t) !== undefined);
    const weightBytes = model.graph!.initializer.reduce((n, t) => n + (tensorDtype(t) ? tensorByteLength(t) : 0), 0);
    const externalData = options.externalData ?? (sourceExternal || weightBytes > LARGE_MODEL_BYTES);
    const target = join(dir, file);
    mkdirSync(dirname(target), { recursive: true });
    const reader = new TensorDataReader(dirname(path));
    try {
      writeOnnxModelStreamed(model, reader, target, edits, { externalData });
    } finally {
      reader.close();
    }
  }
  for (const file of safetensorsFiles) {
    progress(`writing ${file}`);
    pruneSafetensorsFile(join(input, file), join(dir, file), selection, options.mode, mlpBiases);
  }
  rewriteSafetensorsIndex(dir);
  return {
    onnxFiles: [...onnxFiles],
    safetensorsFiles,
    intermediateSizes: newWidths,
    skippedOnnxFiles: folder.onnxFiles.filter((f) => !onnxFiles.includes(f)),
  };
}

function refuseOverlap(input: string, output: string): void {
  const outputReal = existsSync(output) ? realpathSync(output) : join(realpathSync(existingParent(output)), relative(existingParent(output), output));
  const inside = (child: string, parent: string) => child === parent || child.startsWith(parent + sep);
  if (inside(outputReal, input)) {
    throw new SurgeryError(`Output folder ${output} is the input folder or inside it; the input model folder is never written to`);
  }
  if (inside(input, outputReal)) {
    throw new SurgeryError(`Output folder ${output} contains the input folder ${input}; replacing it would delete the input`);
  }
}

function existingParent(path: string): string {
  let current = path;
  while (!existsSync(current)) current = dirname(current);
  return current;
}

function checkSameWidths(path: string, map: GraphMap, widths: number[]): void {
  const own = map.layers.map((l) => l.intermediateSize);
  if (own.join() !== widths.join()) {
    throw new SurgeryError(`${path} has MLP widths [${own.join(', ')}], other ONNX files have [${widths.join(', ')}]`);
  }
}

const WEIGHT_FILE = /\.(safetensors|onnx|onnx_data|onnx\.data|bin|pt|pth|gguf|h5|msgpack)$|\.onnx_data_\d+$/;

/** What a fairprune run wrote about the input model (when it is itself a pruned folder): not true of the new one. */
const RUN_FILES = new Set<string>([
  ARTIFACTS.plan,
  ARTIFACTS.biasBefore,
  ARTIFACTS.biasAfter,
  ARTIFACTS.biasReport,
  ARTIFACTS.neuronScores,
  ARTIFACTS.tokenActivations,
  ARTIFACTS.marker,
]);

/** Copies config/tokenizer/generation files; config.json gets the new intermediate_size after a uniform removal. */
function copySupportFiles(input: string, temp: string, removed: boolean, widths: number[], uniform: boolean, mlpBias: boolean): void {
  for (const name of readdirSync(input)) {
    const path = join(input, name);
    if (!statSync(path).isFile() || WEIGHT_FILE.test(name) || RUN_FILES.has(name)) continue;
    if (name === 'config.json' && (removed || mlpBias)) {
      const config = readJsonObject(path);
      const text = jsonField(config, 'text_config', 'object', path) ?? config;
      if (removed && uniform) text['intermediate_size'] = widths[0];
      else if (removed) config['fairprune_intermediate_sizes'] = widths;
      if (mlpBias) text['mlp_bias'] = true;
      writeFileSync(join(temp, name), JSON.stringify(config, null, 2) + '\n');
      continue;
    }
    copyFileSync(path, join(temp, name));
  }
}

/** Shard indexes keep their weight_map (names do not change); total_size (tensor bytes, as HF counts) is recomputed. */
function rewriteSafetensorsIndex(dir: string): void {
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (!existsSync(indexPath)) return;
  const index = readJsonObject(indexPath);
  const weightMap = jsonField(index, 'weight_map', 'object', indexPath, true);
  const shards = new Set(Object.values(weightMap));
  let total = 0;
  for (const shard of shards) {
    if (typeof shard !== 'string' || !existsSync(join(dir, shard))) continue;
    const file = new SafetensorsFile(join(dir, shard));
    for (const entry of file.entries.values()) {
      total += entry.end - entry.begin;
      // Compensation biases are new tensors; the index must name their shard.
      weightMap[entry.name] = shard;
    }
    file.close();
  }
  index['metadata'] = { ...jsonField(index, 'metadata', 'object', indexPath), total_size: total };
  writeFileSync(indexPath, JSON.stringify(index, null, 2) + '\n');
}
