import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { evaluate, formatDuration, progressPrinter, taskNames, type DataSource, type EvalResults, type TaskName } from '@fairprune/eval';
import { Command, InvalidArgumentError, Option } from 'commander';

interface EvalFlags {
  task: TaskName;
  data: string;
  limit?: number;
  bos?: boolean;
  batchSize: number;
  bootstrapIters: number;
  onnxFile?: string;
  device: 'cpu' | 'cuda';
  logSamples?: boolean;
  offline?: boolean;
  json?: boolean;
  out?: string;
  allowMismatch?: boolean;
}

const integer = (min: number) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer ≥ ${min}, got "${value}"`);
  return n;
};

const stderrStd = (value: number | 'N/A' | undefined) => (typeof value === 'number' ? ` ± ${value.toFixed(4)}` : '');

export function summariseEval(results: EvalResults, seconds: number): string {
  const lines: string[] = [];
  for (const [task, m] of Object.entries(results.results)) {
    const n = results['n-samples'][task as TaskName]?.effective;
    let line = `${task}: acc ${m.acc.toFixed(4)}${stderrStd(m.acc_stderr)}`;
    if (m.perplexity !== undefined) line += `, perplexity ${m.perplexity.toFixed(4)}${stderrStd(m.perplexity_stderr)}`;
    lines.push(`${line}  (${n} docs, ${results.config.bos ? 'BOS added' : 'no BOS'}, ${formatDuration(seconds)})`);
  }
  return lines.join('\n');
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('Evaluate LAMBADA or BoolQ exactly as lm-evaluation-harness does (0-shot log-likelihoods)')
    .argument('<model-dir>', 'Hugging Face-style model folder with an ONNX export')
    .addOption(new Option('--task <task>', 'task').choices(taskNames).makeOptionMandatory())
    .option('--data <file|hub>', 'a .jsonl or .parquet file, or "hub" for the task\'s file on the Hugging Face hub (cached in FAIRPRUNE_CACHE; HF_TOKEN honoured)', 'hub')
    .option('--limit <n>', 'evaluate the first N documents', integer(1))
    .option('--bos', 'prepend the BOS token (lm-eval ≥ 0.4.9.2 behaviour for Llama 3; default: none, as older lm-eval)')
    .option('--batch-size <n>', 'model inputs per forward pass', integer(1), 1)
    .option('--bootstrap-iters <n>', 'resamples for perplexity_stderr (lm-eval default 100000; 0 = none)', integer(0), 100000)
    .option('--onnx-file <file>', 'ONNX file inside the model folder (default onnx/model.onnx)')
    .addOption(new Option('--device <device>', 'execution provider').choices(['cpu', 'cuda']).default('cpu'))
    .option('--offline', 'never download; fail if hub data is not cached (also FAIRPRUNE_OFFLINE=1 or HF_HUB_OFFLINE=1)')
    .option('--allow-mismatch', 'proceed although config.json, the ONNX graph and the safetensors disagree (recorded in the results)')
    .option('--log-samples', 'include every document\'s requests and responses in the results')
    .option('--json', 'print the results JSON on stdout (progress stays on stderr)')
    .option('--out <file>', 'write the results JSON to this file')
    .action(async (modelDir: string, flags: EvalFlags) => {
      const data: DataSource = flags.data === 'hub' ? { hub: true } : { file: resolve(flags.data) };
      const progress = progressPrinter(process.stderr);
      const started = Date.now();
      let results: EvalResults;
      try {
        results = await evaluate({
          model: modelDir,
          task: flags.task,
          data,
          ...(flags.limit === undefined ? {} : { limit: flags.limit }),
          bos: flags.bos === true,
          batchSize: flags.batchSize,
          bootstrapIters: flags.bootstrapIters,
          ...(flags.onnxFile === undefined ? {} : { onnxFile: flags.onnxFile }),
          device: flags.device,
          logSamples: flags.logSamples === true,
          ...(flags.allowMismatch ? { allowMismatch: true } : {}),
          ...(flags.offline ? { hub: { offline: true } } : {}),
          onProgress: (p) => progress.update(p),
          onNotice: (message) => process.stderr.write(`fairprune: ${message}\n`),
        });
      } finally {
        progress.done();
      }
      if (flags.out !== undefined) {
        mkdirSync(dirname(resolve(flags.out)), { recursive: true });
        writeFileSync(`${flags.out}.partial`, `${JSON.stringify(results, null, 1)}\n`);
        renameSync(`${flags.out}.partial`, flags.out);
        process.stderr.write(`fairprune: wrote ${flags.out}\n`);
      }
      if (flags.json) process.stdout.write(`${JSON.stringify(results, null, 1)}\n`);
      else process.stdout.write(`${summariseEval(results, (Date.now() - started) / 1000)}\n`);
    });
}
