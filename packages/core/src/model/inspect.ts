import { relative } from 'node:path';
import { openModelFolder, requireOnnxPath, type ModelConfig } from './folder.js';
import type { LayerTensors, WeightInfo } from './graph-map.js';
import { validateModel } from './validate.js';

/** What {@link inspectModel} reports (the data behind `fairprune inspect --json`). */
export interface ModelInspection {
  /** Absolute path of the folder. */
  dir: string;
  /** `model_type` from config.json. */
  modelType: string;
  /** `architectures` from config.json. */
  architectures: string[];
  /** The ONNX file inspected, relative to the folder. */
  onnxFile: string;
  /** Every `.onnx` file in the folder and its `onnx/` subfolder, relative paths. */
  onnxFiles: string[];
  /** Safetensors shards, relative paths. */
  safetensorsFiles: string[];
  /** The config.json sizes that matter for pruning. */
  config: Pick<ModelConfig, 'hiddenSize' | 'intermediateSize' | 'numHiddenLayers' | 'numAttentionHeads' | 'numKeyValueHeads' | 'headDim' | 'vocabSize'>;
  /** Longest token sequence the model takes (max_position_embeddings, or the graph's fixed length); null when unknown. */
  contextLimit: number | null;
  /** MLP activation recognised in layer 0 (`silu`, `gelu_tanh`, `gelu`, …). */
  activation: string;
  /** Element type of the MLP activations in the graph (`f32`, `f16`, `bf16`). */
  activationDtype: string;
  /** Whether the graph takes past_key_values inputs. */
  kvCache: boolean;
  /** Name of the logits output. */
  logits: string;
  /** Every mapped decoder layer, in order. */
  layers: {
    /** Decoder layer index. */
    index: number;
    /** Neurons in this layer's MLP (the graph's width, which may differ from config.json after pruning). */
    intermediateSize: number;
    /** gate and up share one fused weight (Phi-3 `gate_up_proj`). */
    fusedGateUp: boolean;
    /** gate_proj weight. */
    gate: WeightInfo;
    /** up_proj weight. */
    up: WeightInfo;
    /** down_proj weight. */
    down: WeightInfo;
    /** Graph tensors activations can be captured at. */
    tensors: LayerTensors;
  }[];
  /** Disagreements between config.json, the graph and the safetensors ({@link validateModel}'s findings). */
  warnings: string[];
}

/**
 * What fairprune sees in a model folder: config, the mapped decoder layers and their weights, and where config.json,
 * the graph and the safetensors disagree (`warnings`). Reads no weight data, but validates every file's structure.
 * @param options.onnxFile  ONNX file relative to the folder (default `onnx/model.onnx`, else `model.onnx`).
 * @throws {@link ModelFolderError}, {@link OnnxFormatError}, {@link GraphMapError} or {@link SafetensorsError} naming
 *   the file at fault.
 */
export function inspectModel(dir: string, options: { onnxFile?: string } = {}): ModelInspection {
  const folder = openModelFolder(dir, options);
  const onnxPath = requireOnnxPath(folder);
  const { map, findings: warnings, contextLimit } = validateModel(folder, onnxPath);
  const c = folder.config;
  return {
    dir: folder.dir,
    modelType: c.modelType,
    architectures: c.architectures,
    onnxFile: relative(folder.dir, onnxPath),
    onnxFiles: folder.onnxFiles,
    safetensorsFiles: folder.safetensorsFiles.map((f) => relative(folder.dir, f)),
    config: {
      hiddenSize: c.hiddenSize,
      intermediateSize: c.intermediateSize,
      numHiddenLayers: c.numHiddenLayers,
      numAttentionHeads: c.numAttentionHeads,
      numKeyValueHeads: c.numKeyValueHeads,
      headDim: c.headDim,
      vocabSize: c.vocabSize,
    },
    contextLimit: contextLimit ?? null,
    activation: map.layers[0]!.activation,
    activationDtype: map.activationDtype,
    kvCache: map.kv !== undefined,
    logits: map.logits,
    layers: map.layers.map((l) => ({
      index: l.index,
      intermediateSize: l.intermediateSize,
      fusedGateUp: l.fusedGateUp,
      gate: l.gate,
      up: l.up,
      down: l.down,
      tensors: l.tensors,
    })),
    warnings,
  };
}
