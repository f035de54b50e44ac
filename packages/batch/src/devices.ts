import { execFileSync } from 'node:child_process';
import { totalmem } from 'node:os';

/** Every GPU nvidia-smi lists, as `cuda:N`; none where there is no nvidia-smi. */
export function visibleGpus(): string[] {
  try {
    return execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter((line) => line.startsWith('GPU '))
      .map((_, index) => `cuda:${index}`);
  } catch {
    return [];
  }
}

/**
 * Memory of a device, bytes: the machine's for `cpu` (its workers share it), the GPU's total for `cuda:N`
 * (nvidia-smi; undefined when it cannot say).
 */
export function deviceMemory(device: string): number | undefined {
  if (device === 'cpu') return totalmem();
  try {
    const mib = Number(execFileSync('nvidia-smi', ['--query-gpu=memory.total', '--format=csv,noheader,nounits', '-i', device.slice('cuda:'.length)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return Number.isFinite(mib) && mib > 0 ? mib * 2 ** 20 : undefined;
  } catch {
    return undefined;
  }
}
