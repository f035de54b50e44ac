// The output protocol under faults, on the real CLI as a child process: killed (SIGKILL) or interrupted (SIGINT,
// SIGTERM) at chosen system calls by strace's fault injection — deterministic, no sleeps — concurrent writers to one
// output, and a full disk (a small tmpfs).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fixtureDir } from '@fairprune/fixtures';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

const launcher = join(import.meta.dirname, 'helpers/fairprune-from-source.mjs');
const llama = fixtureDir('llama');
const root = mkdtempSync(join(tmpdir(), 'fairprune-faults-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** `fairprune ...args` as a child process, optionally under strace with the given options. */
function cli(args: string[], strace: string[] = []): Run {
  const [command, argv] = strace.length > 0 ? ['strace', ['-f', '-o', '/dev/null', ...strace, process.execPath, launcher, ...args]] : [process.execPath, [launcher, ...args]];
  const run = spawnSync(command, argv, { encoding: 'utf8', timeout: 120_000 });
  if (run.error) throw run.error;
  return { code: run.status, signal: run.signal, stderr: run.stderr };
}

/** strace options that deliver `signal` when the process makes its `when`-th `syscall`. */
const at = (syscall: string, when: number, signal: 'SIGKILL' | 'SIGINT' | 'SIGTERM') => ['-e', `trace=${syscall}`, '-e', `inject=${syscall}:signal=${signal}:when=${when}`];

function hashTree(dir: string): Map<string, string> {
  const hashes = new Map<string, string>();
  const walk = (path: string) => {
    if (statSync(path).isDirectory()) for (const entry of readdirSync(path).sort()) walk(join(path, entry));
    else hashes.set(relative(dir, path), createHash('sha256').update(readFileSync(path)).digest('hex'));
  };
  walk(dir);
  return hashes;
}

const pruneArgs = (out: string, fraction: string) => ['prune', llama, '--out', out, '--fraction', fraction];
/** Files whose bytes do not depend on the time or place of the run (JSON reports carry timings; the model card names its folder). */
const stable = (file: string) =>
  file !== 'README.md' && (!file.endsWith('.json') || ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'].includes(file));

let inputHashes: Map<string, string>;
const references = new Map<string, Map<string, string>>();
/** How many times a clean prune into a new folder makes each call: the fault points are counted from these. */
const calls = { pwrite64: 0, fsync: 0 };

beforeAll(() => {
  inputHashes = hashTree(llama);
  // Two complete outputs to compare with (an earlier output and its replacement differ in fraction).
  for (const fraction of ['0.05', '0.1']) {
    const out = join(root, `reference-${fraction}`);
    const run = cli(pruneArgs(out, fraction));
    expect(run.code, run.stderr).toBe(0);
    references.set(fraction, hashTree(out));
  }
  const summary = join(root, 'syscalls.txt');
  const counted = spawnSync('strace', ['-f', '-c', '-o', summary, '-e', 'trace=pwrite64,fsync', process.execPath, launcher, ...pruneArgs(join(root, 'counted'), '0.05')]);
  expect(counted.status).toBe(0);
  for (const line of readFileSync(summary, 'utf8').split('\n')) {
    const columns = line.trim().split(/\s+/);
    const name = columns.at(-1) as keyof typeof calls;
    if (name in calls) calls[name] = Number(columns[3]);
  }
  // The model is written in several pieces, and every file and folder is synced before the rename.
  expect(calls.pwrite64).toBeGreaterThan(2);
  expect(calls.fsync).toBeGreaterThan(3);
}, 120_000);

/** Which reference output `out` is byte for byte (every file present, model and config bytes equal), or undefined. */
function completeAs(out: string): string | undefined {
  const files = hashTree(out);
  for (const [fraction, reference] of references) {
    const same = [...reference].every(([file, hash]) => files.has(file) && (!stable(file) || files.get(file) === hash));
    if (same && files.size === reference.size) return fraction;
  }
  return undefined;
}

const leftovers = (dir: string, name: string) => readdirSync(dir).filter((entry) => entry.startsWith(`.${name}.fairprune-`));

let counter = 0;
function freshParent(): string {
  const dir = join(root, `case-${counter++}`);
  mkdirSync(dir);
  return dir;
}

describe('SIGKILL at each step of a new output: the name is absent or complete, the input untouched, the rerun clean', () => {
  // strace stops the process as it enters the call: the call itself does not run. The third column is what the kill
  // leaves under the final name. A new output's fsyncs: every file and folder of the temp (the temp folder itself
  // last), then the parent after the rename.
  test.each([
    ['taking the lock', 'link', 'absent', () => 1],
    ['writing the first model bytes', 'pwrite64', 'absent', () => 1],
    ['in the middle of the model', 'pwrite64', 'absent', () => Math.ceil(calls.pwrite64 / 2)],
    ['writing the last model bytes', 'pwrite64', 'absent', () => calls.pwrite64],
    ['syncing the first file', 'fsync', 'absent', () => 1],
    ['syncing the folder before the rename', 'fsync', 'absent', () => calls.fsync - 1],
    ['at the rename', 'rename', 'absent', () => 1],
    ['syncing the parent after the rename', 'fsync', '0.05', () => calls.fsync],
  ])('killed %s (%s): %s', (_, syscall, expected, when) => {
    const dir = freshParent();
    const out = join(dir, 'out');
    const killed = cli(pruneArgs(out, '0.05'), at(syscall, when(), 'SIGKILL'));
    expect(killed.signal ?? killed.code, killed.stderr).toSatisfy((s: unknown) => s === 'SIGKILL' || s === 137);
    expect(existsSync(out) ? completeAs(out) : 'absent').toBe(expected);
    expect(hashTree(llama)).toEqual(inputHashes);

    const rerun = cli([...pruneArgs(out, '0.05'), ...(existsSync(out) ? ['--force'] : [])]);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(completeAs(out)).toBe('0.05');
    expect(leftovers(dir, 'out')).toEqual([]);
  }, 60_000);
});

describe('SIGKILL while --force replaces an earlier output: old or new, never a mix, and the next run recovers', () => {
  // The earlier output was pruned with fraction 0.05, the replacement with 0.1. Between the two renames the name is
  // free; the journal beside it lets the next run put the old output back.
  // A replacement syncs the temp tree (as many fsyncs as a new output's, less the last), the journal, the parent, then
  // renames twice and syncs the parent again.
  test.each([
    ['writing the replacement journal', 'fsync', '0.05', () => calls.fsync],
    ['moving the old output aside', 'rename', '0.05', () => 1],
    ['moving the new output in', 'rename', 'journal', () => 2],
    ['syncing after the new output is in', 'fsync', '0.1', () => calls.fsync + 2],
  ])('killed %s (%s): %s', (_, syscall, expected, when) => {
    const dir = freshParent();
    const out = join(dir, 'out');
    expect(cli(pruneArgs(out, '0.05')).code).toBe(0);
    const killed = cli([...pruneArgs(out, '0.1'), '--force'], at(syscall, when(), 'SIGKILL'));
    expect(killed.signal ?? killed.code, killed.stderr).toSatisfy((s: unknown) => s === 'SIGKILL' || s === 137);
    const journal = existsSync(join(dir, '.out.fairprune-journal'));
    expect(existsSync(out) ? completeAs(out) : journal ? 'journal' : 'absent, no journal').toBe(expected);
    expect(hashTree(llama)).toEqual(inputHashes);
    if (expected === 'journal') {
      // Any later command on this output restores the old one first: here a writer that is refused without --force.
      const refused = cli(pruneArgs(out, '0.1'));
      expect(refused.stderr).toMatch(/already holds the output of `fairprune prune`.*--force/);
      expect(completeAs(out)).toBe('0.05');
    }

    const rerun = cli([...pruneArgs(out, '0.1'), '--force']);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(completeAs(out)).toBe('0.1');
    expect(leftovers(dir, 'out')).toEqual([]);
  }, 60_000);
});

describe('SIGINT and SIGTERM: exit 130 and 143, the temp folder and the lock removed, nothing under the name', () => {
  test.each([
    ['SIGINT', 'right after taking the lock', 'link', 130, (): number => 1],
    ['SIGTERM', 'right after taking the lock', 'link', 143, (): number => 1],
    ['SIGINT', 'in the middle of the model', 'pwrite64', 130, (): number => Math.ceil(calls.pwrite64 / 2)],
    ['SIGTERM', 'in the middle of the model', 'pwrite64', 143, (): number => Math.ceil(calls.pwrite64 / 2)],
  ] as const)('%s %s (%s) exits %i', (signal, _, syscall, code, when) => {
    const dir = freshParent();
    const out = join(dir, 'out');
    const interrupted = cli(pruneArgs(out, '0.05'), at(syscall, when(), signal));
    expect(interrupted.code, interrupted.stderr).toBe(code);
    expect(interrupted.stderr).toContain(`fairprune: interrupted by ${signal}`);
    expect(readdirSync(dir)).toEqual([]);
    expect(hashTree(llama)).toEqual(inputHashes);
  }, 60_000);
});

describe('concurrent writers to one --out', () => {
  test.each([2, 3])('%i writers: exactly one succeeds, the others fail at once naming it', async (writers) => {
    const dir = freshParent();
    const out = join(dir, 'out');
    // The first writer pauses 3 s right after taking the lock, so the others certainly meet it.
    const first = spawn('strace', ['-f', '-o', '/dev/null', '-e', 'trace=link', '-e', 'inject=link:delay_exit=3000000:when=1', process.execPath, launcher, ...pruneArgs(out, '0.05')]);
    let firstErr = '';
    first.stderr.on('data', (chunk) => (firstErr += String(chunk)));
    const firstDone = new Promise<number | null>((resolve) => first.on('exit', (c) => resolve(c)));
    const lock = join(dir, '.out.fairprune-lock');
    for (let i = 0; i < 600 && !existsSync(lock); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    const holder = JSON.parse(readFileSync(lock, 'utf8')) as { pid: number };

    const others = await Promise.all(
      Array.from({ length: writers - 1 }, () =>
        new Promise<Run>((resolve) => {
          const child = spawn(process.execPath, [launcher, ...pruneArgs(out, '0.1'), '--force']);
          let stderr = '';
          child.stderr.on('data', (chunk) => (stderr += String(chunk)));
          child.on('exit', (c, s) => resolve({ code: c, signal: s, stderr }));
        }),
      ),
    );
    for (const other of others) {
      expect(other.code, other.stderr).toBe(1);
      expect(other.stderr).toContain(`${out} is being written by another fairprune process: pid ${holder.pid} on ${hostname()} (prune, since `);
      // Refused before any model work.
      expect(other.stderr).not.toContain('opening');
    }
    expect(await firstDone, firstErr).toBe(0);
    expect(completeAs(out)).toBe('0.05');
    expect(leftovers(dir, 'out')).toEqual([]);
  }, 60_000);
});

// Mounting a tmpfs needs root: CI (root) always runs these; a contributor without root skips them.
describe.skipIf(process.getuid?.() !== 0 && !process.env['CI'])('a full disk (a 1 MiB tmpfs, root only): a clear error naming the output, nothing partial left', () => {
  let disk: string;
  beforeAll(() => {
    disk = join(root, 'disk');
    mkdirSync(disk);
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', disk], { encoding: 'utf8' });
    expect(mount.status, `mounting a tmpfs needs root (CI runs as root): ${mount.stderr}`).toBe(0);
  });
  afterAll(() => {
    spawnSync('umount', [disk]);
  });

  test('prune: the model does not fit', () => {
    const run = cli(pruneArgs(join(disk, 'out'), '0.05'));
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`fairprune: Writing ${join(disk, 'out')} failed, nothing was left under that name: ENOSPC: no space left on device`);
    expect(readdirSync(disk)).toEqual([]);
  }, 60_000);

  test('analyze --out: the report does not fit', () => {
    // Leave room for the lock, not for the report (about 12 KB).
    writeFileSync(join(disk, 'filler'), Buffer.alloc(1024 * 1024 - 8192));
    const run = cli(['analyze', llama, '--out', join(disk, 'analysis')]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`fairprune: Writing ${join(disk, 'analysis', 'bias-report.json')} failed, nothing was left under that name: ENOSPC`));
    // The folder made for the report is removed with it: nothing of the failed output remains.
    expect(readdirSync(disk)).toEqual(['filler']);
    rmSync(join(disk, 'filler'));
  }, 60_000);
});
