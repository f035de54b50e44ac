import { ARTIFACTS, IMPORTANCE_METHODS, PRUNE_DEFAULTS, PRUNE_MODES, readPlan, runFairnessPruning, SCORE_METHODS, type PruneOptions } from '@fairprune/core';
import { Command, Option } from 'commander';
import { integerFlag, integerListFlag, layerFractionsFlag, numberFlag } from '../flags.js';
import { MODEL_ARGUMENT, resolveModelArgument } from '../model-source.js';
import { addBiasOptions, biasOptionsFromFlags, stderrProgress, summariseReport, type CommonBiasFlags } from './analyze.js';

interface PruneFlags extends CommonBiasFlags {
  out: string;
  fraction?: number;
  biasWeight: number;
  importance: 'maw' | 'ppm' | 'vow' | 'pon' | 'l2';
  method: 'hybrid' | 'bias';
  layers?: number[];
  layerFractions?: Record<number, number>;
  globalTopK?: number;
  divisor?: number;
  mode: 'remove' | 'zero';
  plan?: string;
  force?: boolean;
  planMismatchOk?: boolean;
  safetensors: boolean;
}

/** A pruning fraction: strictly between 0 and 1. */
const fraction = numberFlag({ min: 0, max: 1, exclusive: true });

export function registerPrune(program: Command): void {
  addBiasOptions(
    program
      .command('prune')
      .description('Remove (or zero) the MLP neurons that carry the most bias and matter least, and measure again')
      .argument(...MODEL_ARGUMENT),
  )
    .requiredOption('--out <dir>', `pruned model folder (new, empty, or an earlier output with --force); also gets ${ARTIFACTS.plan}, ${ARTIFACTS.biasBefore}, ${ARTIFACTS.biasAfter}, ${ARTIFACTS.neuronScores}, ${ARTIFACTS.modelCard}`)
    .addOption(new Option('--fraction <p>', `fraction of neurons pruned in every layer (default ${PRUNE_DEFAULTS.fraction})`).argParser(fraction).conflicts(['layerFractions', 'globalTopK']))
    .option('--bias-weight <w>', 'w in P = w·bias_n + (1−w)·(1−importance_n)', numberFlag({ min: 0, max: 1 }), PRUNE_DEFAULTS.biasWeight)
    .addOption(new Option('--importance <method>', 'neuron importance from the weights').choices(IMPORTANCE_METHODS).default(PRUNE_DEFAULTS.importance))
    .addOption(new Option('--method <name>', 'hybrid (bias and importance) or bias only').choices(SCORE_METHODS).default(PRUNE_DEFAULTS.method))
    .addOption(new Option('--layers <list>', 'only prune these layers, e.g. 0,3,5').argParser(integerListFlag(0)).conflicts('layerFractions'))
    .addOption(new Option('--layer-fractions <list>', 'per-layer fractions instead of one, e.g. 13:0.1,14:0.15').argParser(layerFractionsFlag).conflicts('globalTopK'))
    .addOption(new Option('--global-top-k <k>', 'prune the k most prunable neurons across all layers').argParser(integerFlag(1)).conflicts('divisor'))
    .option('--divisor <d>', 'round each layer\'s kept size down to a multiple of d', integerFlag(1))
    .addOption(new Option('--mode <mode>', 'remove (smaller model) or zero (same shapes)').choices(PRUNE_MODES).default(PRUNE_DEFAULTS.mode))
    .option('--plan <file>', `re-apply a ${ARTIFACTS.plan} instead of selecting`)
    .option('--plan-mismatch-ok', 'apply --plan although it was made on other weights (the written plan records this model and the plan\'s origin)')
    .option('--no-safetensors', 'write only the pruned ONNX (needed to remove different counts per layer)')
    .option('--force', 'replace an earlier fairprune output at --out (a folder fairprune did not write is never replaced)')
    .action(async (model: string, flags: PruneFlags) => {
      const bias = await biasOptionsFromFlags(flags, stderrProgress);
      const options: PruneOptions = {
        ...bias,
        outDir: flags.out,
        biasWeight: flags.biasWeight,
        importance: flags.importance,
        method: flags.method,
        mode: flags.mode,
        ...(flags.fraction !== undefined ? { fraction: flags.fraction } : {}),
        ...(flags.layers !== undefined ? { layers: flags.layers } : {}),
        ...(flags.layerFractions !== undefined ? { layerFractions: flags.layerFractions } : {}),
        ...(flags.globalTopK !== undefined ? { globalTopK: flags.globalTopK } : {}),
        ...(flags.divisor !== undefined ? { divisor: flags.divisor } : {}),
        ...(flags.plan !== undefined ? { plan: await readPlan(flags.plan) } : {}),
        ...(flags.force ? { force: true } : {}),
        ...(flags.planMismatchOk ? { applyToOtherWeights: true } : {}),
        ...(flags.safetensors === false ? { safetensors: false } : {}),
      };
      // Pruned safetensors are written from the input's, so a hub model brings them along unless --no-safetensors.
      const modelDir = await resolveModelArgument(model, flags, { safetensors: flags.safetensors });
      const result = await runFairnessPruning(modelDir, options);
      const pruned = Object.values(result.plan.layers).reduce((n, l) => n + l.length, 0);
      if (flags.json) {
        process.stdout.write(
          `${JSON.stringify({ outDir: result.outDir, files: result.files, parameters: result.plan.parameters, layers: result.plan.layers, before: result.before, after: result.after, timings: result.timings }, null, 1)}\n`,
        );
        return;
      }
      const { before, after } = result;
      const lines = [
        `pruned ${pruned} neurons (${result.plan.mode}) → ${result.outDir}`,
        `  parameters ${result.plan.parameters.before.toLocaleString('en-US')} → ${result.plan.parameters.after.toLocaleString('en-US')}`,
      ];
      if (before.metric && after?.metric) {
        const b = before.metric.overall.mean_difference;
        const a = after.metric.overall.mean_difference;
        lines.push(`  bias metric ${b.toFixed(6)} → ${a.toFixed(6)} (${(((b - a) / b) * 100).toFixed(2)}% lower)`);
        const bx = before.metric.overall_excluding_gate_up.mean_difference;
        const ax = after.metric.overall_excluding_gate_up.mean_difference;
        lines.push(`  without gate/up (not flattered by removed neurons) ${bx.toFixed(6)} → ${ax.toFixed(6)}`);
      }
      lines.push(summariseReport(before, 'before'));
      if (after) lines.push(summariseReport(after, 'after'));
      lines.push(`  files: ${Object.values(result.files).join(', ')}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
