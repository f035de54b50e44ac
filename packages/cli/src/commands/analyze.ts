import { join } from 'node:path';
import { analyzeBias, ARTIFACTS, BIAS_ESTIMATORS, DEFAULT_BUDGET_FRACTION, loadPairSets, METRIC_COMPONENTS, PAIR_AGGREGATIONS, produceJsonOutput, PRUNE_DEFAULTS, SESSION_DEVICES, type BiasReport } from '@fairprune/core';
import { DEVICES } from '@fairprune/native-cuda';
import { Command, Option } from 'commander';
import { choiceListFlag, integerFlag, numberFlag } from '../flags.js';
import { addOfflineOption, MODEL_ARGUMENT, ONNX_FILE_HELP, resolveModelArgument } from '../model-source.js';

export interface CommonBiasFlags {
  pairs: string;
  evalPairs?: string;
  components?: string[];
  onnxFile?: string;
  biasEstimator: 'positionwise' | 'pooled' | 'glu';
  aggregate: 'mean' | 'max';
  device: 'cpu' | 'cuda';
  kernelDevice: 'auto' | 'cpu' | 'cuda';
  threads?: number;
  offline?: boolean;
  streamed?: boolean;
  memoryBudget?: number;
  json?: boolean;
  allowMismatch?: boolean;
  allowNonfinite?: boolean;
}

/** Options shared by `analyze` and `prune`. */
export function addBiasOptions(command: Command): Command {
  return addOfflineOption(command)
    .option('--pairs <spec>', 'prompt pairs: builtin:seed | builtin:optipfair | builtin:<category> | a JSON/JSONL file', PRUNE_DEFAULTS.pairsSource)
    .option('--eval-pairs <file>', 'held-out pairs measured separately (metric and behaviour), never used for scores')
    .option('--components <list>', 'comma-separated hook types for the metric (default: the six optiPfair types)', choiceListFlag(METRIC_COMPONENTS))
    .option('--onnx-file <file>', ONNX_FILE_HELP)
    .addOption(new Option('--bias-estimator <name>', 'per-neuron bias estimator').choices(BIAS_ESTIMATORS).default(PRUNE_DEFAULTS.estimator))
    .addOption(new Option('--aggregate <how>', 'combining pairs').choices(PAIR_AGGREGATIONS).default(PRUNE_DEFAULTS.aggregation))
    .addOption(new Option('--device <device>', 'where onnxruntime runs the model (cuda falls back to cpu, saying why)').choices(SESSION_DEVICES).default('cpu'))
    .addOption(new Option('--kernel-device <device>', 'where the native difference and weight-scan kernels run').choices(DEVICES).default('auto'))
    .option('--threads <n>', 'onnxruntime intra-op threads', integerFlag(1))
    .option('--streamed', 'measure one decoder layer at a time (one layer\'s weights in memory); default: when the whole model does not fit --memory-budget')
    .option('--memory-budget <GB>', `memory the measurement may use, in GB (default ${DEFAULT_BUDGET_FRACTION * 100}% of the memory available now); the whole model runs when its estimated working set fits`, numberFlag({ min: 0, exclusive: true }))
    .option('--allow-mismatch', 'proceed although config.json, the ONNX graph and the safetensors disagree (recorded in the outputs)')
    .option('--allow-nonfinite', 'proceed past NaN/Inf activations and logits instead of stopping (recorded in the outputs)')
    .option('--json', 'print the JSON result on stdout (progress stays on stderr)');
}

/** Reads the pair files and turns flags into analysis options (before any model work). */
export async function biasOptionsFromFlags(flags: CommonBiasFlags, progress: (message: string) => void) {
  return {
    ...(await loadPairSets(flags.pairs, flags.evalPairs)),
    ...(flags.components ? { components: flags.components } : {}),
    ...(flags.onnxFile !== undefined ? { onnxFile: flags.onnxFile } : {}),
    estimator: flags.biasEstimator,
    aggregation: flags.aggregate,
    sessionDevice: flags.device,
    kernelDevice: flags.kernelDevice,
    ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
    ...(flags.streamed ? { streamed: true } : {}),
    ...(flags.memoryBudget !== undefined ? { memoryBudget: flags.memoryBudget * 1e9 } : {}),
    ...(flags.allowMismatch ? { allowMismatch: true } : {}),
    ...(flags.allowNonfinite ? { allowNonfinite: true } : {}),
    onProgress: progress,
  };
}

export function stderrProgress(message: string): void {
  process.stderr.write(`fairprune: ${message}\n`);
}

const fmt = (v: number) => v.toFixed(6);

/** A few human lines about a report. */
export function summariseReport(report: BiasReport, title: string): string {
  const lines = [`${title}: ${report.model.path}`];
  const skipped = report.pairs.filter((p) => p.skipped);
  lines.push(`  pairs: ${report.pairs.length} from ${report.source}${skipped.length ? `, ${skipped.length} skipped (${skipped[0]!.reason})` : ''}`);
  const describe = (label: string, m: BiasReport['metric']) => {
    if (!m) {
      lines.push(`  ${label}: no pair with equal token counts, no metric`);
      return;
    }
    lines.push(`  ${label}: bias metric (optiPfair mean_difference) ${fmt(m.overall.mean_difference)}; without gate/up ${fmt(m.overall_excluding_gate_up.mean_difference)}`);
    lines.push(`    ${Object.entries(m.components).map(([c, v]) => `${c} ${fmt(v.mean_difference)}`).join(', ')}`);
  };
  describe('metric', report.metric);
  for (const b of report.behaviour) lines.push(`  behaviour: log-odds a ${b.logOddsA.toFixed(3)}, b ${b.logOddsB.toFixed(3)}, gap ${b.gap.toFixed(3)} — ${b.a}`);
  if (report.eval) {
    describe(`eval (${report.eval.source})`, report.eval.metric);
    for (const b of report.eval.behaviour) lines.push(`  eval behaviour: log-odds a ${b.logOddsA.toFixed(3)}, b ${b.logOddsB.toFixed(3)}, gap ${b.gap.toFixed(3)} — ${b.a}`);
  }
  return lines.join('\n');
}

export function registerAnalyze(program: Command): void {
  addBiasOptions(
    program
      .command('analyze')
      .description('Measure how differently a model processes prompt pairs that differ in a demographic attribute')
      .argument(...MODEL_ARGUMENT),
  )
    .option('--out <dir>', `write <dir>/${ARTIFACTS.biasReport}`)
    .action(async (model: string, flags: CommonBiasFlags & { out?: string }) => {
      const options = await biasOptionsFromFlags(flags, stderrProgress);
      const modelDir = await resolveModelArgument(model, flags);
      const analyze = async () => (await analyzeBias(modelDir, { ...options, tokenActivations: false })).report;
      let report: BiasReport;
      if (flags.out === undefined) report = await analyze();
      else {
        const path = join(flags.out, ARTIFACTS.biasReport);
        // The output is checked and locked before the analysis; the file appears complete or not at all.
        report = await produceJsonOutput(path, 'analyze', analyze);
        stderrProgress(`wrote ${path}`);
      }
      if (flags.json) process.stdout.write(`${JSON.stringify(report, null, 1)}\n`);
      else process.stdout.write(`${summariseReport(report, 'bias analysis')}\n`);
    });
}
