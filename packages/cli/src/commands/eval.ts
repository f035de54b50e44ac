import { writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DEFAULT_BUDGET_FRACTION, SESSION_DEVICES, updateModelCardEval, writeOutput, type CardEvalEntry } from '@fairprune/core';
import {
  evaluate,
  formatDuration,
  lmEvalJson,
  lmEvalResults,
  progressPrinter,
  taskNames,
  writeLmEvalFiles,
  writeLmEvalSamples,
  type DataSource,
  type EvalResults,
  type TaskName,
} from '@fairprune/eval';
import { Command, Option } from 'commander';
import { ExitCode, UsageError } from '../exit-codes.js';
import { choiceListFlag, integerFlag, numberFlag } from '../flags.js';
import { MODEL_ARGUMENT, ONNX_FILE_HELP, resolveModelArgument } from '../model-source.js';

interface EvalFlags {
  tasks?: TaskName[];
  task?: TaskName;
  data: string[];
  limit?: number;
  bos?: boolean;
  batchSize: number;
  bootstrapIters: number;
  onnxFile?: string;
  device: 'cpu' | 'cuda';
  streamed?: boolean;
  memoryBudget?: number;
  logSamples?: boolean;
  offline?: boolean;
  json?: boolean;
  out?: string;
  outputPath?: string;
  allowMismatch?: boolean;
}

const taskList = (value: string): TaskName[] => [...new Set(choiceListFlag(taskNames)(value))] as TaskName[];

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/**
 * Where each task's documents come from: `TASK=FILE` for one task, a bare `FILE` (or `hub`) for the only task,
 * `hub` (the default) for the task's file on the Hugging Face hub.
 */
export function dataSources(tasks: readonly TaskName[], specs: readonly string[]): Record<TaskName, DataSource> {
  const source = (spec: string): DataSource => (spec === 'hub' ? { hub: true } : { file: resolve(spec) });
  const sources = Object.fromEntries(tasks.map((task) => [task, { hub: true }])) as Record<TaskName, DataSource>;
  for (const spec of specs) {
    const match = /^([a-z_]+)=(.+)$/.exec(spec);
    if (match && taskNames.includes(match[1] as TaskName)) {
      const task = match[1] as TaskName;
      if (!tasks.includes(task)) throw new UsageError(`--data ${spec}: ${task} is not among the tasks evaluated (${tasks.join(', ')})`);
      sources[task] = source(match[2]!);
    } else if (tasks.length === 1) {
      sources[tasks[0]!] = source(spec);
    } else {
      throw new UsageError(`--data ${spec}: with several tasks, name the task (--data TASK=FILE, e.g. --data ${tasks[0]}=${spec})`);
    }
  }
  return sources;
}

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

/** The card's view of one task's results. */
function cardEntry(result: EvalResults, date: Date): CardEvalEntry {
  const [task, metrics] = Object.entries(result.results)[0]!;
  const { alias: _alias, ...values } = metrics;
  const samples = result['n-samples'][task as TaskName]!;
  return { task, metrics: values, documents: samples.effective, total: samples.original, bos: result.config.bos, date: date.toISOString() };
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('Evaluate LAMBADA and BoolQ exactly as lm-evaluation-harness does (0-shot log-likelihoods) and write its result files')
    .argument(...MODEL_ARGUMENT)
    .option('--tasks <list>', `comma-separated tasks: ${taskNames.join(', ')}`, taskList)
    .addOption(new Option('--task <task>', 'one task (the same as --tasks with one name)').choices(taskNames))
    .addOption(
      new Option(
        '--data <source>',
        'documents: TASK=FILE (a .jsonl or .parquet file for that task; repeat per task), FILE for the only task, or "hub" for the task\'s file on the Hugging Face hub (in the Hugging Face cache; HF_TOKEN honoured)',
      )
        .argParser(collect)
        .default([], '"hub" for every task'),
    )
    .option('--limit <n>', 'evaluate the first N documents of each task', integerFlag(1))
    .option('--bos', 'prepend the BOS token (lm-eval ≥ 0.4.9.2 behaviour for Llama 3; default: none, as older lm-eval)')
    .option('--batch-size <n>', 'model inputs per forward pass', integerFlag(1), 1)
    .option('--bootstrap-iters <n>', 'resamples for perplexity_stderr (lm-eval default 100000; 0 = none)', integerFlag(0), 100000)
    .option('--onnx-file <file>', ONNX_FILE_HELP)
    .addOption(new Option('--device <device>', 'execution provider').choices(SESSION_DEVICES).default('cpu'))
    .option('--streamed', 'score one decoder layer at a time, documents in chunks that fit --memory-budget (--batch-size then does not apply); default: when the whole model does not fit')
    .option('--memory-budget <GB>', `memory scoring may use, in GB (default ${DEFAULT_BUDGET_FRACTION * 100}% of the memory available now)`, numberFlag({ min: 0, exclusive: true }))
    .option('--offline', 'never download: a hub id and hub data must already be in the Hugging Face cache (also HF_HUB_OFFLINE=1)')
    .option('--allow-mismatch', 'proceed although config.json, the ONNX graph and the safetensors disagree (recorded in the results)')
    .option('--output-path <dir>', 'write lm-eval result files: DIR/<model name>/results_<time>.json (a path ending in .json: <name>_<time>.json)')
    .option('--log-samples', 'also write every document\'s requests and responses, samples_<task>_<time>.jsonl beside the results')
    .option('--json', 'print the results JSON (lm-eval\'s schema) on stdout (progress stays on stderr)')
    .option('--out <file>', 'write the results JSON (lm-eval\'s schema) to exactly this file')
    .action(async (model: string, flags: EvalFlags, command: Command) => {
      if (flags.tasks !== undefined && flags.task !== undefined) command.error('error: give --tasks or --task, not both', { exitCode: ExitCode.usage, code: 'commander.conflictingOption' });
      const tasks = flags.tasks ?? (flags.task !== undefined ? [flags.task] : undefined);
      if (tasks === undefined) command.error(`error: required option '--tasks <list>' not specified (${taskNames.join(', ')})`, { exitCode: ExitCode.usage, code: 'commander.missingMandatoryOptionValue' });
      if (flags.logSamples && flags.outputPath === undefined && flags.out === undefined) {
        command.error('error: --log-samples writes samples_<task>_<time>.jsonl files and needs --output-path (or --out) to say where', { exitCode: ExitCode.usage, code: 'commander.missingMandatoryOptionValue' });
      }
      const sources = dataSources(tasks, flags.data);
      const modelDir = await resolveModelArgument(model, flags);
      const progress = progressPrinter(process.stderr);
      const started = new Date();
      const evaluateAll = async () => {
        const perTask: EvalResults[] = [];
        try {
          for (const task of tasks) {
            perTask.push(
              await evaluate({
                model: modelDir,
                task,
                data: sources[task],
                ...(flags.limit === undefined ? {} : { limit: flags.limit }),
                bos: flags.bos === true,
                batchSize: flags.batchSize,
                bootstrapIters: flags.bootstrapIters,
                ...(flags.onnxFile === undefined ? {} : { onnxFile: flags.onnxFile }),
                device: flags.device,
                ...(flags.streamed ? { streamed: true } : {}),
                ...(flags.memoryBudget !== undefined ? { memoryBudget: flags.memoryBudget * 1e9 } : {}),
                logSamples: flags.logSamples === true,
                ...(flags.allowMismatch ? { allowMismatch: true } : {}),
                ...(flags.offline ? { hub: { offline: true } } : {}),
                onProgress: (p) => progress.update(p),
                onNotice: (message) => process.stderr.write(`fairprune: ${message}\n`),
              }),
            );
          }
        } finally {
          progress.done();
        }
        const seconds = (Date.now() - started.getTime()) / 1000;
        return { perTask, seconds, output: lmEvalResults({ model: modelDir, tasks: perTask, started, seconds }) };
      };
      // With --out, the output is checked and locked before the evaluation; the file appears complete or not at all.
      const { perTask, seconds, output } =
        flags.out === undefined
          ? await evaluateAll()
          : await writeOutput(flags.out, { kind: 'file', command: 'eval' }, async (temp) => {
              const run = await evaluateAll();
              writeFileSync(temp, lmEvalJson(run.output.results), { flag: 'wx' });
              return run;
            });
      if (flags.outputPath !== undefined) {
        const written = await writeLmEvalFiles(flags.outputPath, output, started);
        for (const path of [written.results, ...Object.values(written.samples)]) process.stderr.write(`fairprune: wrote ${path}\n`);
      }
      if (flags.out !== undefined) {
        process.stderr.write(`fairprune: wrote ${flags.out}\n`);
        if (flags.outputPath === undefined) {
          // as lm-eval does for an output path ending in .json: the samples go beside the results file
          const written = await writeLmEvalSamples(dirname(resolve(flags.out)), output.samples, started);
          for (const path of Object.values(written)) process.stderr.write(`fairprune: wrote ${path}\n`);
        }
      }
      const card = await updateModelCardEval(perTask[0]!.config.model, perTask.map((r) => cardEntry(r, started)));
      if (card !== undefined) process.stderr.write(`fairprune: updated the evaluation section of ${card}\n`);
      if (flags.json) process.stdout.write(`${lmEvalJson(output.results)}\n`);
      else process.stdout.write(`${perTask.map((r) => summariseEval(r, seconds)).join('\n')}\n`);
    });
}
