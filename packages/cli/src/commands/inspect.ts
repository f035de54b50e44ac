import { inspectModel, type ModelInspection, type WeightInfo } from '@fairprune/core';
import type { Command } from 'commander';
import { addOfflineOption, MODEL_ARGUMENT, ONNX_FILE_HELP, resolveModelArgument } from '../model-source.js';

export function registerInspect(program: Command): void {
  addOfflineOption(
    program
      .command('inspect')
      .description('show the architecture, layers, MLP weights and capturable tensors fairprune finds in a model folder')
      .argument(...MODEL_ARGUMENT),
  )
    .option('--onnx-file <file>', ONNX_FILE_HELP)
    .option('--json', 'print one JSON object on stdout')
    .action(async (model: string, flags: { onnxFile?: string; offline?: boolean; json?: boolean }) => {
      const dir = await resolveModelArgument(model, flags);
      const inspection = inspectModel(dir, flags.onnxFile !== undefined ? { onnxFile: flags.onnxFile } : {});
      process.stdout.write(flags.json ? `${JSON.stringify(inspection, null, 2)}\n` : formatInspection(inspection));
    });
}

function weight(w: WeightInfo): string {
  const half = w.fusedHalf !== undefined ? ` (fused, half ${w.fusedHalf})` : '';
  return `${w.name}  ${w.dtype} [${w.shape.join(', ')}] ${w.layout}${half}`;
}

function formatInspection(i: ModelInspection): string {
  const c = i.config;
  const lines = [
    `${i.dir}`,
    `  architecture   ${i.modelType}${i.architectures.length ? ` (${i.architectures.join(', ')})` : ''}`,
    `  config         hidden ${c.hiddenSize}, intermediate ${c.intermediateSize}, ${c.numHiddenLayers} layers, ` +
      `${c.numAttentionHeads} heads (${c.numKeyValueHeads} kv, dim ${c.headDim}), vocab ${c.vocabSize}, ` +
      `context ${i.contextLimit ?? 'unknown'}`,
    `  onnx           ${i.onnxFile}${i.kvCache ? ' (KV cache)' : ''}; also: ${i.onnxFiles.filter((f) => f !== i.onnxFile).join(', ') || 'none'}`,
    `  safetensors    ${i.safetensorsFiles.join(', ') || 'none'}`,
    `  MLP            ${i.layers.length} GLU layers, activation ${i.activation}, ${i.activationDtype} activations, logits "${i.logits}"`,
  ];
  for (const layer of i.layers) {
    lines.push(`  layer ${layer.index} (${layer.intermediateSize} neurons)`);
    lines.push(`    gate  ${weight(layer.gate)}`, `    up    ${weight(layer.up)}`, `    down  ${weight(layer.down)}`);
    lines.push('    tensors');
    for (const [key, tensor] of Object.entries(layer.tensors)) lines.push(`      ${key.padEnd(17)} ${tensor}`);
  }
  for (const warning of i.warnings) lines.push(`  warning: ${warning}`);
  return `${lines.join('\n')}\n`;
}
