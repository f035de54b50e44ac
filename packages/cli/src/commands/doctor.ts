import { Command, CommanderError } from 'commander';
import { diagnose, type Check, type Diagnosis } from '../doctor/diagnose.js';

const marks: Record<Check['status'], string> = { ok: '✓', warn: '!', fail: '✗' };

function formatDiagnosis(d: Diagnosis): string {
  const lines = [
    `fairprune ${d.versions.fairprune} · Node ${d.versions.node} (N-API ${d.versions.napi}) · onnxruntime-node ${d.versions.onnxruntimeNode} · ${d.versions.platform}`,
    '',
    `native backend:   ${d.native.summary}`,
    'onnxruntime execution providers:',
    ...d.onnxruntime.providers.map(
      (p) => `  ${p.name.padEnd(9)} ${p.usable === null ? 'not probed' : p.usable ? 'usable    ' : 'not usable'}  ${p.detail}`,
    ),
    `  CUDA provider libraries in ${d.onnxruntime.cudaLibraries.dir}: ${
      d.onnxruntime.cudaLibraries.missing.length === 0 ? 'present' : `missing ${d.onnxruntime.cudaLibraries.missing.join(', ')}`
    }`,
    `threads: ${d.threads.availableParallelism} available (${d.threads.logicalCpus} logical CPUs); native kernels ${d.threads.nativeKernels}; ` +
      `libuv pool ${d.threads.uvThreadpoolSize} (${d.threads.uvThreadpoolSizeSource}); onnxruntime intra-op: ${d.threads.onnxruntimeIntraOp}`,
    '',
    ...d.checks.flatMap((c) => [`${marks[c.status]} ${c.name}: ${c.message}`, ...(c.fix && c.status !== 'ok' ? [`    fix: ${c.fix}`] : [])]),
    '',
    d.ok ? 'Everything fairprune needs is in place.' : 'Something fairprune needs is missing (✗ above).',
  ];
  return `${lines.join('\n')}\n`;
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('Check the installation: versions, native kernels (CPU/CUDA), onnxruntime execution providers, threads')
    .option('--json', 'print the diagnosis as JSON')
    .action(async (flags: { json?: boolean }) => {
      const diagnosis = await diagnose();
      process.stdout.write(flags.json ? `${JSON.stringify(diagnosis, null, 1)}\n` : formatDiagnosis(diagnosis));
      // Exit status 1 when something needed is missing; the report above already says what.
      if (!diagnosis.ok) throw new CommanderError(1, 'fairprune.doctor', 'fairprune doctor found a missing requirement');
    });
}
