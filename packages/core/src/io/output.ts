import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { ARTIFACTS, siblingName } from './artifacts.js';

const coreVersion = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/** An output path that cannot be written: taken by another process, not fairprune's to replace, or a failed write. */
export class OutputError extends Error {
  /** Always `'OutputError'`. */
  override name = 'OutputError';
}

/** Options of {@link openOutput} and {@link writeOutput}. */
export interface OutputOptions {
  /** A folder (written whole, then renamed) or one file. */
  kind: 'dir' | 'file';
  /** What writes it (`prune`, `analyze`, …): recorded in the lock and in the folder's marker. */
  command: string;
  /**
   * Replace an existing non-empty output folder, which must hold fairprune's marker (an earlier output); anything
   * else is refused. A file output replaces an existing file without it.
   */
  force?: boolean;
}

/** The content of a lock file: who is writing the output. */
export interface OutputLock {
  /** Process id of the writer. */
  pid: number;
  /** Host name of the writer (a pid means nothing on another host). */
  host: string;
  /** The command writing. */
  command: string;
  /** ISO time the writer started. */
  started: string;
  /** The writer's start time in clock ticks since boot (Linux `/proc/PID/stat`), so a reused pid is not taken for it. */
  processStart?: string;
}

/** The marker file inside every folder fairprune writes ({@link ARTIFACTS}.marker). */
export interface OutputMarker {
  /** File format tag. */
  format: 'fairprune.output';
  /** The command that wrote the folder. */
  command: string;
  /** Version of @fairprune/core that wrote it. */
  version: string;
  /** ISO time the folder was completed. */
  time: string;
}

/** An output being written: fill `tempPath`, then {@link PendingOutput.commit} or {@link PendingOutput.fail}. */
export interface PendingOutput {
  /** Absolute final path. */
  readonly path: string;
  /** Where to write: a folder (kind `dir`, already created) or a file path (kind `file`), a sibling of `path`. */
  readonly tempPath: string;
  /** Makes the output visible under `path` in one rename (after an fsync of everything), then drops the lock. */
  commit(): void;
  /** Removes the temp and the lock; returns the error to throw (a system error names the output it was writing). */
  fail(error: unknown): Error;
}

type Existing = 'none' | 'empty' | 'replace';

interface Journal {
  format: 'fairprune.replace-journal';
  /** Where the previous output was renamed to (a sibling named `.NAME.fairprune-old-…`). */
  old: string;
}

const active = new Set<Output>();
const signalExitCodes = { SIGINT: 130, SIGTERM: 143 } as const;

/** Removes every open output's temp and lock, then exits 130/143 unless the program handles the signal itself. */
function onSignal(signal: keyof typeof signalExitCodes): void {
  for (const output of [...active]) output.abort();
  if (process.listenerCount(signal) === 0) process.exit(signalExitCodes[signal]);
}
const signalHandlers = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };
const signals = ['SIGINT', 'SIGTERM'] as const;

function track(output: Output): void {
  // First in line, so the cleanup runs before a program's own handler exits.
  if (active.size === 0) for (const signal of signals) process.prependListener(signal, signalHandlers[signal]);
  active.add(output);
}

function untrack(output: Output): void {
  if (!active.delete(output) || active.size > 0) return;
  for (const signal of signals) process.removeListener(signal, signalHandlers[signal]);
}

const errorCode = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | undefined)?.code;
const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

/** Fields 3 onwards of /proc/PID/stat (state, …, start time after boot at index 19), or undefined where there is no /proc. */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/PID/stat (start time after boot), or undefined where there is no /proc. */
function processStart(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

/**
 * Whether the process that wrote a lock is still running (its pid is alive and, where known, started when it did);
 * undefined for a lock written on another host, where a pid says nothing.
 */
export function lockHolderAlive(lock: OutputLock): boolean | undefined {
  return lock.host === hostname() ? holderAlive(lock) : undefined;
}

/** Whether the process that wrote `lock` (on this host) is still running: its pid is alive and, where known, started when it did. */
function holderAlive(lock: OutputLock): boolean {
  if (!pidAlive(lock.pid)) return false;
  // A SIGKILLed writer stays a zombie (state Z) until its parent reaps it, which an init that does not reap never
  // does: it answers kill(pid, 0) but holds nothing.
  if (procStat(lock.pid)?.[0] === 'Z') return false;
  const now = lock.processStart === undefined ? undefined : processStart(lock.pid);
  return now === undefined || now === lock.processStart;
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync every file and folder under `path` (and `path` itself), so the rename never exposes unwritten data. */
function fsyncTree(path: string): void {
  if (lstatSync(path).isDirectory()) for (const name of readdirSync(path)) fsyncTree(join(path, name));
  if (!lstatSync(path).isSymbolicLink()) fsyncPath(path);
}

function readLock(path: string): OutputLock | 'gone' | 'unreadable' {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return 'gone';
    throw error;
  }
  try {
    const lock = JSON.parse(text) as Partial<OutputLock> | null;
    if (typeof lock?.pid === 'number' && typeof lock.host === 'string') return lock as OutputLock;
  } catch {
    // An unparsable lock is not one of ours (ours are linked into place complete).
  }
  return 'unreadable';
}

const sameLock = (a: OutputLock | 'gone' | 'unreadable', b: OutputLock): boolean =>
  typeof a === 'object' && a.pid === b.pid && a.host === b.host && a.started === b.started;

class Output implements PendingOutput {
  readonly path: string;
  readonly tempPath: string;
  private readonly parent: string;
  private readonly name: string;
  private readonly lockPath: string;
  private readonly journalPath: string;
  private existing: Existing = 'none';
  private open = false;
  /** The outermost folder this output created on the way to its parent; removed again if the output fails. */
  private createdParent: string | undefined;

  constructor(path: string, private readonly options: OutputOptions) {
    this.path = resolve(path);
    this.parent = dirname(this.path);
    this.name = basename(this.path);
    this.lockPath = join(this.parent, siblingName(this.name, 'lock'));
    this.journalPath = join(this.parent, siblingName(this.name, 'journal'));
    this.tempPath = join(this.parent, siblingName(this.name, 'tmp', `${process.pid}-${randomBytes(4).toString('hex')}`));
  }

  /** Every check that needs no work: parent usable, lock free, earlier runs recovered, the final name replaceable. */
  begin(): void {
    try {
      this.createdParent = mkdirSync(this.parent, { recursive: true });
    } catch (error) {
      throw new OutputError(`Cannot create the folder ${this.parent} for ${this.path}: ${messageOf(error)}`);
    }
    try {
      this.lock();
    } catch (error) {
      this.removeCreatedParent();
      throw error;
    }
    try {
      this.recoverJournal();
      this.removeLeftovers();
      this.existing = this.inspectFinal();
      if (this.options.kind === 'dir') mkdirSync(this.tempPath);
      this.open = true;
      track(this);
    } catch (error) {
      this.unlock();
      this.removeCreatedParent();
      throw error;
    }
  }

  /** A failed output leaves nothing behind, not even the empty folders made for it. */
  private removeCreatedParent(): void {
    if (this.createdParent === undefined) return;
    for (let dir = this.parent; ; dir = dirname(dir)) {
      try {
        if (readdirSync(dir).length > 0) return;
        rmdirSync(dir);
      } catch {
        return;
      }
      if (dir === this.createdParent) return;
    }
  }

  private lock(): void {
    const start = processStart(process.pid);
    const own: OutputLock = {
      pid: process.pid,
      host: hostname(),
      command: this.options.command,
      started: new Date().toISOString(),
      ...(start !== undefined ? { processStart: start } : {}),
    };
    // The lock is written complete under a private name and linked into place: link fails if the name exists (like
    // O_EXCL), and a reader never sees a half-written lock.
    const staged = join(this.parent, siblingName(this.name, 'lock', `${process.pid}-${randomBytes(4).toString('hex')}`));
    try {
      writeFileSync(staged, `${JSON.stringify(own)}\n`, { flag: 'wx' });
    } catch (error) {
      throw new OutputError(`Cannot write in ${this.parent} (for ${this.path}): ${messageOf(error)}`);
    }
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          linkSync(staged, this.lockPath);
          return;
        } catch (error) {
          if (errorCode(error) !== 'EEXIST') throw new OutputError(`Cannot create the lock ${this.lockPath}: ${messageOf(error)}`);
        }
        const holder = readLock(this.lockPath);
        if (holder === 'gone') continue;
        if (holder === 'unreadable') {
          throw new OutputError(`${this.lockPath} exists but is not a fairprune lock (expected JSON with pid and host); remove it if no fairprune process is writing ${this.path}`);
        }
        if (holder.host === own.host && !holderAlive(holder)) {
          this.takeOver(holder);
          continue;
        }
        throw new OutputError(
          `${this.path} is being written by another fairprune process: pid ${holder.pid} on ${holder.host} (${holder.command}, since ${holder.started}); ` +
            `wait for it, or remove ${this.lockPath} if that process is gone`,
        );
      }
      throw new OutputError(`Could not take the lock ${this.lockPath}: other processes keep taking it`);
    } finally {
      rmSync(staged, { force: true });
    }
  }

  /** Removes a dead process's lock, making sure it is that lock and not one a live process has just taken. */
  private takeOver(stale: OutputLock): void {
    removeStaleLock(this.path, stale);
  }

  private unlock(): void {
    rmSync(this.lockPath, { force: true });
  }

  /** A replacement interrupted by a kill: roll back (old output back under the final name) or finish (drop the old). */
  private recoverJournal(): void {
    let journal: Journal | undefined;
    try {
      journal = JSON.parse(readFileSync(this.journalPath, 'utf8')) as Journal;
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return;
      // A journal cut short by a kill: it is written before the first rename, so nothing was renamed yet.
    }
    // Only a set-aside sibling of this output is ever moved or deleted, whatever the journal names.
    const old = journal?.format === 'fairprune.replace-journal' && typeof journal.old === 'string' ? journal.old : undefined;
    if (old !== undefined && dirname(old) === this.parent && basename(old).startsWith(`${siblingName(this.name, 'old')}-`)) {
      const exists = (path: string) => {
        try {
          lstatSync(path);
          return true;
        } catch {
          return false;
        }
      };
      if (!exists(this.path) && exists(old)) renameSync(old, this.path);
      else if (exists(old)) rmSync(old, { recursive: true, force: true });
    }
    rmSync(this.journalPath, { force: true });
    fsyncPath(this.parent);
  }

  /** Under the lock, every temp or set-aside copy of this output is a leftover of a killed run. */
  private removeLeftovers(): void {
    const prefix = (role: 'tmp' | 'old' | 'lock') => `${siblingName(this.name, role)}-`;
    for (const entry of readdirSync(this.parent)) {
      // Staged or set-aside locks (`…-lock-<pid>-<hex>`) belong to the process that made them while it lives.
      const stagedLockPid = entry.startsWith(prefix('lock')) ? Number(entry.slice(prefix('lock').length).split('-')[0]) : undefined;
      const deadLock = stagedLockPid !== undefined && stagedLockPid > 0 && !pidAlive(stagedLockPid);
      if (entry.startsWith(prefix('tmp')) || entry.startsWith(prefix('old')) || deadLock) rmSync(join(this.parent, entry), { recursive: true, force: true });
    }
  }

  private inspectFinal(): Existing {
    let stat;
    try {
      stat = lstatSync(this.path);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return 'none';
      throw new OutputError(`Cannot use ${this.path}: ${messageOf(error)}`);
    }
    if (this.options.kind === 'file') {
      if (stat.isDirectory()) throw new OutputError(`${this.path} is a folder; expected a file name to write`);
      return 'replace';
    }
    if (stat.isSymbolicLink()) throw new OutputError(`${this.path} is a symbolic link; give the folder it points to, or another path`);
    if (!stat.isDirectory()) throw new OutputError(`${this.path} exists and is not a folder; choose another output path`);
    const entries = readdirSync(this.path);
    if (entries.length === 0) return 'empty';
    const marker = readMarker(this.path);
    const shown = entries.slice(0, 5).join(', ') + (entries.length > 5 ? `, … (${entries.length} entries)` : '');
    if (!marker) {
      throw new OutputError(
        `${this.path} exists and was not written by fairprune (no ${ARTIFACTS.marker}; it holds ${shown}); ` +
          'fairprune replaces only its own outputs, even with --force: choose another path or move it away',
      );
    }
    if (!this.options.force) {
      throw new OutputError(`${this.path} already holds the output of \`fairprune ${marker.command}\` (${marker.time}); choose another path or pass --force to replace it`);
    }
    return 'replace';
  }

  commit(): void {
    if (!this.open) throw new OutputError(`${this.path}: the output was already committed or abandoned`);
    try {
      if (this.options.kind === 'dir') {
        const marker: OutputMarker = { format: 'fairprune.output', command: this.options.command, version: coreVersion, time: new Date().toISOString() };
        writeFileSync(join(this.tempPath, ARTIFACTS.marker), `${JSON.stringify(marker, null, 1)}\n`);
      }
      fsyncTree(this.tempPath);
      if (this.existing === 'replace' && this.options.kind === 'dir') this.replace();
      else renameSync(this.tempPath, this.path);
      fsyncPath(this.parent);
    } catch (error) {
      throw this.fail(error);
    }
    this.close();
  }

  /** Old output aside, new one in, old one deleted; the journal lets the next run roll back a kill in between. */
  private replace(): void {
    const old = join(this.parent, siblingName(this.name, 'old', `${process.pid}-${randomBytes(4).toString('hex')}`));
    const journal: Journal = { format: 'fairprune.replace-journal', old };
    // Exclusive: under the lock no journal exists now, and a name planted in its place is never followed.
    const fd = openSync(this.journalPath, 'wx');
    try {
      writeSync(fd, `${JSON.stringify(journal)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    fsyncPath(this.parent);
    renameSync(this.path, old);
    try {
      renameSync(this.tempPath, this.path);
    } catch (error) {
      renameSync(old, this.path);
      throw error;
    }
    fsyncPath(this.parent);
    rmSync(old, { recursive: true, force: true });
    rmSync(this.journalPath, { force: true });
  }

  fail(error: unknown): Error {
    this.abort();
    if (error instanceof OutputError || errorCode(error) === undefined) return error instanceof Error ? error : new Error(String(error));
    return new OutputError(`Writing ${this.path} failed, nothing was left under that name: ${messageOf(error)}`, { cause: error });
  }

  /** Removes the temp and the lock (idempotent; also what a signal does). */
  abort(): void {
    if (!this.open) return;
    rmSync(this.tempPath, { recursive: true, force: true });
    this.close();
    this.removeCreatedParent();
  }

  private close(): void {
    this.open = false;
    this.unlock();
    untrack(this);
  }
}

/**
 * Removes the lock of `outputPath` if it is still `stale` (the lock a dead writer left), making sure it is that lock
 * and not one a live process has just taken: the lock is renamed aside, compared, and given back when it differs.
 * The output protocol does this itself for dead writers on its own host; a caller that knows a writer on another host
 * is gone (a batch worker whose heartbeat stopped) uses it too.
 */
export function removeStaleLock(outputPath: string, stale: OutputLock): void {
  const path = resolve(outputPath);
  const lockPath = join(dirname(path), siblingName(basename(path), 'lock'));
  const aside = join(dirname(path), siblingName(basename(path), 'lock', `${process.pid}-stale-${randomBytes(4).toString('hex')}`));
  try {
    renameSync(lockPath, aside);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return;
    throw error;
  }
  if (!sameLock(readLock(aside), stale)) {
    // A live process took the lock between our read and the rename: give it back.
    try {
      linkSync(aside, lockPath);
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
    }
  }
  rmSync(aside, { force: true });
}

/** The marker of a folder fairprune wrote, or undefined when the folder has none (or an unreadable one). */
export function readMarker(dir: string): OutputMarker | undefined {
  try {
    const marker = JSON.parse(readFileSync(join(dir, ARTIFACTS.marker), 'utf8')) as Partial<OutputMarker> | null;
    return marker?.format === 'fairprune.output' && typeof marker.command === 'string' ? (marker as OutputMarker) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts writing an output: creates the parent folder, takes the output's lock (a second writer fails at once naming
 * the first), recovers what a killed earlier run left (temps, locks of dead processes, a replacement cut short), and
 * decides whether the final name may be written (absent, an empty folder, or with `force` an earlier fairprune output)
 * — all before the caller's long work. Until {@link PendingOutput.commit}, SIGINT/SIGTERM remove the temp and the lock
 * and exit 130/143 (unless the program listens for the signal itself).
 * @throws {@link OutputError} naming the path and what is in the way.
 */
export function openOutput(path: string, options: OutputOptions): PendingOutput {
  const output = new Output(path, options);
  output.begin();
  return output;
}

/**
 * {@link openOutput}, `write(tempPath)`, then commit: the output appears under `path` complete, or not at all.
 * @returns what `write` returned.
 */
export async function writeOutput<T>(path: string, options: OutputOptions, write: (tempPath: string) => Promise<T> | T): Promise<T> {
  const output = openOutput(path, options);
  let result: T;
  try {
    result = await write(output.tempPath);
  } catch (error) {
    throw output.fail(error);
  }
  output.commit();
  return result;
}

/** How fairprune serialises JSON files (one-space indent, final newline). */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 1)}\n`;
}

/** Writes one text file atomically on the output protocol (lock, temp sibling, fsync, rename). */
export async function writeTextOutput(path: string, text: string, command: string): Promise<string> {
  const output = resolve(path);
  await writeOutput(output, { kind: 'file', command }, (temp) => writeFileSync(temp, text, { flag: 'wx' }));
  return output;
}

/**
 * A JSON file that takes long work to produce: the output is checked and locked first, then `produce` runs, then its
 * result is written atomically (lock, temp sibling, fsync, rename).
 * @returns what `produce` returned.
 */
export function produceJsonOutput<T>(path: string, command: string, produce: () => Promise<T>): Promise<T> {
  return writeOutput(path, { kind: 'file', command }, async (temp) => {
    const value = await produce();
    writeFileSync(temp, jsonText(value), { flag: 'wx' });
    return value;
  });
}

/** Writes one JSON file atomically on the output protocol (lock, temp sibling, fsync, rename). */
export async function writeJsonOutput(path: string, value: unknown, command: string): Promise<string> {
  await produceJsonOutput(path, command, async () => value);
  return resolve(path);
}
