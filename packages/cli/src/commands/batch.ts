import {
  batchStatus,
  placeWorkers,
  planBatch,
  readBatchPlan,
  runBatch,
  runLocalWorker,
  runQueueWorker,
  startWorkerProcesses,
  type BatchPlan,
  type BatchRunEvent,
  type BatchStatus,
} from '@fairprune/batch';
import { formatDuration } from '@fairprune/eval';
import { hostname } from 'node:os';
import { Command } from 'commander';
import { integerFlag } from '../flags.js';
import { writeSweepPages } from '../report/sweep.js';
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
  for (const running of status.running) {
    lines.push(`  ${running.alive === false ? 'claimed by a dead worker' : 'running'} ${running.task} (${running.owner}${running.alive === false ? '; the next worker takes it over' : ''})`);
  }
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
    .option('--queue <url>', 'redis://host:port/db: put the tasks on a BullMQ queue for `fairprune worker --queue` processes (on any machine sharing the batch folder) instead of starting workers here')
    .option('--detach', 'with --queue: only submit, do not wait')
    .option('--json', 'print the summary JSON on stdout')
    .action(async (job: string, flags: { out?: string; workers?: number; devices?: string[]; offline?: boolean; queue?: string; detach?: boolean; json?: boolean }, command: Command) => {
      if (flags.detach && flags.queue === undefined) command.error('error: --detach needs --queue (a local run has nobody to hand the tasks to)', { exitCode: 2, code: 'commander.missingMandatoryOptionValue' });
      let last = '';
      const onEvent = (event: BatchRunEvent) => {
        if (event.type === 'planned') stderrProgress(`${event.plan.analyses.length} analyses and ${event.plan.runs.length} runs planned`);
        else if (event.type === 'unplaceable') for (const u of event.tasks) stderrProgress(`not placeable: ${u.task}: ${u.reason}`);
        else if (event.type === 'submitted') stderrProgress(`submitted to ${flags.queue}: the queue holds ${event.queuedJobs} job(s)`);
        else if (event.type === 'started') stderrProgress(`workers: ${event.workers.map((w) => `${w.id} ${w.device}${w.threads ? ` (${w.threads} threads)` : ''} pid ${w.pid}`).join(', ')}`);
        else if (event.type === 'worker-exit' && event.code !== 0) stderrProgress(`worker ${event.id} exited (${event.signal ?? `code ${event.code}`}): ${event.stderr.trim().split('\n').at(-1) ?? ''}`);
        else if (event.type === 'progress') {
          const line = describeStatus(event.status, event.etaMs);
          // Printed when it changes, so a log holds each step once.
          if (line !== last) stderrProgress(line);
          last = line;
        }
      };
      // Ahead of the CLI's own handler (which exits): the workers hand their tasks back too.
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      for (const signal of ['SIGTERM', 'SIGINT'] as const) process.prependOnceListener(signal, onSignal);
      let result;
      try {
        result = await runBatch(job, {
          signal: stop.signal,
          ...(flags.out !== undefined ? { out: flags.out } : {}),
          ...(flags.workers !== undefined ? { workers: flags.workers } : {}),
          ...(flags.devices !== undefined ? { devices: flags.devices } : {}),
          ...(flags.offline ? { offline: true } : {}),
          ...(flags.queue !== undefined ? { queue: flags.queue } : {}),
          ...(flags.detach ? { detach: true } : {}),
          // The workers are this same CLI, started the way this process was.
          workerCommand: [process.execPath, ...process.execArgv, process.argv[1]!, 'worker'],
          onEvent,
          onProgress: stderrProgress,
        });
      } finally {
        for (const signal of ['SIGTERM', 'SIGINT'] as const) process.removeListener(signal, onSignal);
      }
      if (!result.summary) {
        process.stdout.write(`${statusReport(result.status)}\n`);
        return;
      }
      const page = await writeSweepPages(result.dir, result.summary);
      stderrProgress(`${describeStatus(result.status)}; wrote ${result.dir}/summary.csv, summary.json and ${page}`);
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
    .description('Take batch tasks: from a batch folder until none is left (--dir, started by `batch run`), or from a BullMQ queue until stopped (--queue)')
    .option('--dir <dir>', 'batch folder')
    .option('--queue <url>', 'redis://host:port/db: take tasks from the BullMQ queue `batch run --queue` fills (the batch folders must be on a filesystem this machine shares)')
    .option('--id <id>', 'worker id, unique in the batch (default: host and pid)')
    .option('--device <device>', 'cpu or cuda:N (one worker)')
    .option('--devices <list>', 'with --queue: one worker process per device: cpu, cuda:0, … (default: every GPU, else --workers CPU workers)', deviceList)
    .option('--workers <n>', 'with --queue and no --devices: CPU workers (the cores are split between them)', integerFlag(1))
    .option('--threads <n>', 'onnxruntime intra-op threads', integerFlag(1))
    .option('--lock-ms <ms>', 'with --queue: BullMQ job lock; a killed worker\'s task goes to another after about this long', integerFlag(1000))
    .action(async (flags: { dir?: string; queue?: string; id?: string; device?: string; devices?: string[]; workers?: number; threads?: number; lockMs?: number }, command: Command) => {
      if ((flags.dir === undefined) === (flags.queue === undefined)) command.error('error: give --dir DIR or --queue URL', { exitCode: 2, code: 'commander.missingMandatoryOptionValue' });
      const id = flags.id ?? `${hostname()}-${process.pid}`;
      const progress = (message: string) => process.stderr.write(`fairprune worker ${id}: ${message}\n`);
      if (flags.dir !== undefined) {
        const done = await runLocalWorker({ dir: flags.dir, id, device: flags.device ?? 'cpu', ...(flags.threads !== undefined ? { threads: flags.threads } : {}), onProgress: progress });
        stderrProgress(`worker ${id}: ${done} task(s) done, none left`);
        return;
      }
      const queue = flags.queue!;
      const lock = flags.lockMs !== undefined ? { lockMs: flags.lockMs } : {};
      if (flags.device !== undefined || (flags.devices === undefined && flags.workers === undefined && placeWorkers({}).length <= 1)) {
        progress(`taking tasks from ${queue} on ${flags.device ?? 'cpu'} until stopped`);
        await runQueueWorker({ queue, id, device: flags.device ?? 'cpu', ...(flags.threads !== undefined ? { threads: flags.threads } : {}), ...lock, onProgress: progress });
        return;
      }
      // Several devices: one process each, this same CLI started the way this process was.
      const placements = placeWorkers({ ...(flags.devices ? { devices: flags.devices } : {}), ...(flags.workers !== undefined ? { workers: flags.workers } : {}) }).map((p) => ({ ...p, id: `${id}-${p.id}` }));
      const workers = startWorkerProcesses(
        [process.execPath, ...process.execArgv, process.argv[1]!, 'worker'],
        ['--queue', queue, ...(flags.lockMs !== undefined ? ['--lock-ms', String(flags.lockMs)] : [])],
        placements,
        (exit) => progress(`worker ${exit.id} exited (${exit.signal ?? `code ${exit.code}`})`),
      );
      // Ahead of the CLI's own handler, which exits.
      const forward = (signal: NodeJS.Signals) => () => workers.forEach((w) => w.child.kill(signal));
      process.prependOnceListener('SIGTERM', forward('SIGTERM'));
      process.prependOnceListener('SIGINT', forward('SIGINT'));
      progress(`started ${workers.map((w) => `${w.placement.id} (${w.placement.device}, pid ${w.pid})`).join(', ')}`);
      await Promise.all(workers.map((w) => w.exited));
    });
}
