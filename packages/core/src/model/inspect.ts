import { relative } from 'node:path';
import { openModelFolder, requireOnnxPath, type ModelConfig } from './folder.js';
import { mapGraph, type LayerTensors, type WeightInfo } from './graph-map.js';
import { checkExternalData, readOnnxModel } from './onnx-codec.js';

export interface ModelInspection {
  dir: string;
  modelType: string;
  architectures: string[];
  /** The ONNX file inspected, relative to the folder. */
  onnxFile: string;
  onnxFiles: string[];
  safetensorsFiles: string[];
  config: Pick<ModelConfig, 'hiddenSize' | 'intermediateSize' | 'numHiddenLayers' | 'numAttentionHeads' | 'numKeyValueHeads' | 'headDim' | 'vocabSize'>;
  activation: string;
  activationDtype: string;
  kvCache: boolean;
  logits: string;
  layers: { index: number; intermediateSize: number; fusedGateUp: boolean; gate: WeightInfo; up: WeightInfo; down: WeightInfo; tensors: LayerTensors }[];
  /** Disagreements between config.json and the graph. */
  warnings: string[];
}

/** What fairprune sees in a model folder: config, the mapped decoder layers and their weights. Reads no weights. */
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
