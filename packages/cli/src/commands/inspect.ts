import { DEFAULT_BUDGET_FRACTION, inspectModel, planMeasure, type MeasurePlan, type ModelInspection, type WeightInfo } from '@fairprune/core';
import type { Command } from 'commander';
import { numberFlag } from '../flags.js';
import { addOfflineOption, MODEL_ARGUMENT, ONNX_FILE_HELP, resolveModelArgument } from '../model-source.js';

export function registerInspect(program: Command): void {
  addOfflineOption(
    program
      .command('inspect')
      .description('show the architecture, layers, MLP weights and capturable tensors fairprune finds in a model folder')
      .argument(...MODEL_ARGUMENT),
  )
    .option('--onnx-file <file>', ONNX_FILE_HELP)
    .option('--memory-budget <GB>', `budget the measure path is chosen against (default ${DEFAULT_BUDGET_FRACTION * 100}% of the memory available now)`, numberFlag({ min: 0, exclusive: true }))
    .option('--json', 'print one JSON object on stdout')
    .action(async (model: string, flags: { onnxFile?: string; offline?: boolean; json?: boolean; memoryBudget?: number }) => {
      const dir = await resolveModelArgument(model, flags);
      const onnxFile = flags.onnxFile !== undefined ? { onnxFile: flags.onnxFile } : {};
      const inspection = inspectModel(dir, onnxFile);
      // The working set of an analysis with the default pairs, and the path analyze/prune would take for it.
      const measure = planMeasure(dir, { ...onnxFile, ...(flags.memoryBudget !== undefined ? { memoryBudget: flags.memoryBudget * 1e9 } : {}) });
      process.stdout.write(flags.json ? `${JSON.stringify({ ...inspection, measure }, null, 2)}\n` : formatInspection(inspection, measure));
    });
}

function weight(w: WeightInfo): string {
  const half = w.fusedHalf !== undefined ? ` (fused, half ${w.fusedHalf})` : '';
  return `${w.name}  ${w.dtype} [${w.shape.join(', ')}] ${w.layout}${half}`;
}

function formatInspection(i: ModelInspection, measure: MeasurePlan): string {
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
    `  memory         ${formatMeasure(measure)}`,
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

/** `whole model 5.3 GB, streamed 1.2 GB (largest: layer 0); budget 15.0 GB → whole-model path` */
function formatMeasure({ estimate, budget, path }: MeasurePlan): string {
  const e = estimate!;
  const streamed = e.streamed === null ? 'streamed n/a (graph cannot be cut)' : `streamed ${gb(e.streamed)} (largest: ${e.largestSegment!.name})`;
  return `working set with the default pairs: whole model ${gb(e.whole)}, ${streamed}; budget ${gb(budget!)} → ${path === 'whole' ? 'whole-model' : 'streamed'} path`;
}

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(1)} GB`;
