import { batchStatus, planBatch, readBatchPlan, runBatch, runLocalWorker, type BatchPlan, type BatchRunEvent, type BatchStatus } from '@fairprune/batch';
import { formatDuration } from '@fairprune/eval';
import { Command } from 'commander';
import { integerFlag } from '../flags.js';
import { stderrProgress } from './analyze.js';

/** `cpu,cuda:0,…` */
const deviceList = (value: string): string[] => value.split(',').map((d) => d.trim()).filter(Boolean);

/** The plan as lines: what each model's analysis is shared by, then each run. */
export function describePlan(plan: BatchPlan): string {
  const lines = [`${plan.models.length} model(s), ${plan.analyses.length} shared analysis task(s), ${plan.runs.length} run(s)${plan.eval ? `, eval: ${plan.eval.tasks.join(', ')}${plan.eval.limit ? ` (limit ${plan.eval.limit})` : ''}` : ''}`];
  for (const analysis of plan.analyses) {
    const model = plan.models.find((m) => m.name === analysis.model)!;
    const runs = plan.runs.filter((r) => r.analysis === analysis.id);
    lines.push(`analysis ${analysis.id}: ${model.name} (${model.dir}, weights ${model.weightsHash.slice(0, 12)}…), pairs ${analysis.settings.pairs}` +
      `${analysis.settings.evalPairs ? `, eval pairs ${analysis.settings.evalPairs}` : ''}, importance ${analysis.importance.join('+')} — shared by ${runs.length} run(s)`);
    for (const run of runs) lines.push(`  run ${run.id}: ${JSON.stringify(run.config)}`);
  }
  return lines.join('\n');
}

/** One status line: done/total, failed, each worker's task, ETA. */
export function describeStatus(status: BatchStatus, etaMs: number | null = null): string {
  const workers = status.workers
    .filter((w) => !w.exited)
    .map((w) => `${w.id} (${w.device}): ${w.task ?? 'idle'}`)
    .join('; ');
  return `batch ${status.done}/${status.total} done${status.failed.length ? `, ${status.failed.length} failed` : ''}${workers ? ` — ${workers}` : ''}${etaMs !== null ? ` — ETA ${formatDuration(etaMs / 1000)}` : ''}`;
}

function statusReport(status: BatchStatus): string {
  const lines = [describeStatus(status)];
  for (const running of status.running) lines.push(`  running ${running.task} (${running.owner})`);
  for (const pending of status.pending) lines.push(`  pending ${pending}`);
  for (const failed of status.failed) lines.push(`  failed ${failed.task}: ${failed.failures.map((f) => `${f.time} ${f.worker}: ${f.message}`).join(' | ')}`);
  return lines.join('\n');
}

export function registerBatch(program: Command): void {
  const batch = program.command('batch').description('Sweep many models × pruning settings: one shared analysis per model, one worker per device, resumable');
  batch
    .command('plan')
    .description('Print the runs a job file expands to and the analyses they share, without running anything')
    .argument('<job>', 'job file (YAML or JSON)')
    .option('--offline', 'never download a hub model')
    .option('--json', 'print the plan JSON on stdout')
    .action(async (job: string, flags: { offline?: boolean; json?: boolean }) => {
      const plan = await planBatch(job, { ...(flags.offline ? { offline: true } : {}), onProgress: stderrProgress });
      process.stdout.write(flags.json ? `${JSON.stringify(plan, null, 1)}\n` : `${describePlan(plan)}\n`);
    });
  batch
    .command('run')
    .description('Run a job file: workers take the tasks from the batch folder; a rerun resumes; writes summary.csv and summary.json')
    .argument('<job>', 'job file (YAML or JSON)')
    .option('--out <dir>', 'batch folder: state and every output (default: the job file\'s out)')
    .option('--workers <n>', 'CPU workers when no --devices are given (the cores are split between them)', integerFlag(1))
    .option('--devices <list>', 'one worker per device: cpu, cuda:0, cuda:1, … (default: every GPU nvidia-smi lists, else one CPU worker)', deviceList)
    .option('--offline', 'never download a hub model')
    .option('--json', 'print the summary JSON on stdout')
    .action(async (job: string, flags: { out?: string; workers?: number; devices?: string[]; offline?: boolean; json?: boolean }) => {
      let last = '';
      const onEvent = (event: BatchRunEvent) => {
        if (event.type === 'planned') stderrProgress(`${event.plan.analyses.length} analyses and ${event.plan.runs.length} runs planned`);
        else if (event.type === 'started') stderrProgress(`workers: ${event.workers.map((w) => `${w.id} ${w.device}${w.threads ? ` (${w.threads} threads)` : ''} pid ${w.pid}`).join(', ')}`);
        else if (event.type === 'worker-exit' && event.code !== 0) stderrProgress(`worker ${event.id} exited (${event.signal ?? `code ${event.code}`}): ${event.stderr.trim().split('\n').at(-1) ?? ''}`);
        else if (event.type === 'progress') {
          const line = describeStatus(event.status, event.etaMs);
          // Printed when it changes, so a log holds each step once.
          if (line !== last) stderrProgress(line);
          last = line;
        }
      };
      const result = await runBatch(job, {
        ...(flags.out !== undefined ? { out: flags.out } : {}),
        ...(flags.workers !== undefined ? { workers: flags.workers } : {}),
        ...(flags.devices !== undefined ? { devices: flags.devices } : {}),
        ...(flags.offline ? { offline: true } : {}),
        // The workers are this same CLI, started the way this process was.
        workerCommand: [process.execPath, ...process.execArgv, process.argv[1]!, 'worker'],
        onEvent,
        onProgress: stderrProgress,
      });
      stderrProgress(`${describeStatus(result.status)}; wrote ${result.dir}/summary.csv and summary.json`);
      if (flags.json) process.stdout.write(`${JSON.stringify(result.summary, null, 1)}\n`);
      else process.stdout.write(`${statusReport(result.status)}\n`);
      if (result.status.failed.length > 0) {
        throw new Error(`${result.status.failed.length} task(s) failed every attempt (${result.status.failed.map((f) => f.task).join(', ')}); see \`fairprune batch status ${result.dir}\``);
      }
    });
  batch
    .command('status')
    .description('Where a batch folder stands: tasks done, running (and by whom), pending, failed with their messages')
    .argument('<dir>', 'batch folder')
    .option('--json', 'print the status JSON on stdout')
    .action((dir: string, flags: { json?: boolean }) => {
      const status = batchStatus(dir, readBatchPlan(dir));
      process.stdout.write(flags.json ? `${JSON.stringify(status, null, 1)}\n` : `${statusReport(status)}\n`);
    });

  program
    .command('worker')
    .description('Take batch tasks from a batch folder until none is left (started by `batch run`)')
    .requiredOption('--dir <dir>', 'batch folder')
    .option('--id <id>', 'worker id, unique in the batch', `${process.pid}`)
    .option('--device <device>', 'cpu or cuda:N', 'cpu')
    .option('--threads <n>', 'onnxruntime intra-op threads', integerFlag(1))
    .action(async (flags: { dir: string; id: string; device: string; threads?: number }) => {
      const done = await runLocalWorker({
        dir: flags.dir,
        id: flags.id,
        device: flags.device,
        ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
        onProgress: (message) => process.stderr.write(`fairprune worker ${flags.id}: ${message}\n`),
      });
      stderrProgress(`worker ${flags.id}: ${done} task(s) done, none left`);
    });
}
