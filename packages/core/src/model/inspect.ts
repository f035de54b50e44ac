import { relative } from 'node:path';
import { openModelFolder, requireOnnxPath, type ModelConfig } from './folder.js';
import { mapGraph, type LayerTensors, type WeightInfo } from './graph-map.js';
import { checkExternalData, readOnnxModel } from './onnx-codec.js';

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
  /** Disagreements between config.json and the graph. */
  warnings: string[];
}

/**
 * What fairprune sees in a model folder: config, the mapped decoder layers and their weights. Reads no weight data,
 * but checks that external data files exist and are long enough.
 * @param options.onnxFile  ONNX file relative to the folder (default `onnx/model.onnx`, else `model.onnx`).
 * @throws {@link ModelFolderError}, {@link OnnxFormatError} or {@link GraphMapError} naming the file at fault.
 */
export function inspectModel(dir: string, options: { onnxFile?: string } = {}): ModelInspection {
  const folder = openModelFolder(dir, options);
  const onnxPath = requireOnnxPath(folder);
  const model = readOnnxModel(onnxPath);
  checkExternalData(model, onnxPath);
  const map = mapGraph(model, onnxPath);
  const c = folder.config;
  const warnings: string[] = [];
  if (map.layers.length !== c.numHiddenLayers) {
    warnings.push(`config.json says ${c.numHiddenLayers} layers, the graph has ${map.layers.length} GLU MLPs`);
  }
  const widths = new Set(map.layers.map((l) => l.intermediateSize));
  if (!widths.has(c.intermediateSize) || widths.size > 1) {
    warnings.push(`config.json intermediate_size ${c.intermediateSize}, graph MLP widths ${[...widths].join(', ')}`);
  }
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
