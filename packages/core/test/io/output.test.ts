import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ARTIFACTS } from '../../src/io/artifacts.js';
import { OutputError, openOutput, writeJsonOutput, writeOutput } from '../../src/io/output.js';

const root = mkdtempSync(join(tmpdir(), 'fairprune-output-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
/** A fresh parent folder per test, so sibling listings show only that test's leftovers. */
function parent(): string {
  const dir = join(root, `case-${counter++}`);
  mkdirSync(dir);
  return dir;
}

/** A pid that belonged to a process of this host and is no longer alive. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

const siblings = (dir: string, name: string) => readdirSync(dir).filter((entry) => entry.startsWith(`.${name}.fairprune-`));

describe('a folder output', () => {
  test('appears complete under its name with the marker, and nothing else is left beside it', async () => {
    const dir = parent();
    const out = join(dir, 'out');
    await writeOutput(out, { kind: 'dir', command: 'test' }, (temp) => {
      // While writing, the final name does not exist and the lock names this process.
      expect(existsSync(out)).toBe(false);
      const lock = JSON.parse(readFileSync(join(dir, '.out.fairprune-lock'), 'utf8')) as Record<string, unknown>;
      expect(lock).toMatchObject({ pid: process.pid, host: hostname(), command: 'test' });
      writeFileSync(join(temp, 'a.txt'), 'A');
    });
    expect(readFileSync(join(out, 'a.txt'), 'utf8')).toBe('A');
    expect(JSON.parse(readFileSync(join(out, ARTIFACTS.marker), 'utf8'))).toMatchObject({ format: 'fairprune.output', command: 'test' });
    expect(siblings(dir, 'out')).toEqual([]);
  });

  test('a failing writer leaves neither the final name nor a temp or lock', async () => {
    const dir = parent();
    const out = join(dir, 'out');
    await expect(
      writeOutput(out, { kind: 'dir', command: 'test' }, (temp) => {
        writeFileSync(join(temp, 'half'), 'x');
        throw new Error('disk on fire');
      }),
    ).rejects.toThrow('disk on fire');
    expect(readdirSync(dir)).toEqual([]);
  });

  test('a system error names the output', async () => {
    const dir = parent();
    const out = join(dir, 'out');
    await expect(writeOutput(out, { kind: 'dir', command: 'test' }, () => readFileSync(join(dir, 'missing')))).rejects.toThrow(
      new RegExp(`Writing ${out} failed, nothing was left under that name: ENOENT`),
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  test('an empty folder is accepted; an earlier output needs force; a foreign folder is refused even with force', async () => {
    const dir = parent();
    const out = join(dir, 'out');
    mkdirSync(out);
    await writeOutput(out, { kind: 'dir', command: 'first' }, (temp) => writeFileSync(join(temp, 'v'), '1'));
    await expect(writeOutput(out, { kind: 'dir', command: 'second' }, () => {})).rejects.toThrow(/already holds the output of `fairprune first`.*pass --force/);
    await writeOutput(out, { kind: 'dir', command: 'second', force: true }, (temp) => writeFileSync(join(temp, 'v'), '2'));
    expect(readFileSync(join(out, 'v'), 'utf8')).toBe('2');
    expect(siblings(dir, 'out')).toEqual([]);

    const foreign = join(dir, 'foreign');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'thesis.tex'), 'years of work');
    await expect(writeOutput(foreign, { kind: 'dir', command: 'test', force: true }, () => {})).rejects.toThrow(
      /foreign exists and was not written by fairprune \(no \.fairprune-output\.json; it holds thesis\.tex\)/,
    );
    expect(readdirSync(foreign)).toEqual(['thesis.tex']);
    writeFileSync(join(dir, 'plain'), 'x');
    expect(() => openOutput(join(dir, 'plain'), { kind: 'dir', command: 'test' })).toThrow(/plain exists and is not a folder/);
  });

  test('a second writer fails at once naming the first; after the first commits, the path is free again', async () => {
    const dir = parent();
    const out = join(dir, 'out');
    const first = openOutput(out, { kind: 'dir', command: 'prune' });
    expect(() => openOutput(out, { kind: 'dir', command: 'prune', force: true })).toThrow(
      new RegExp(`out is being written by another fairprune process: pid ${process.pid} on ${hostname()} \\(prune, since `),
    );
    first.commit();
    expect(existsSync(join(out, ARTIFACTS.marker))).toBe(true);
    openOutput(out, { kind: 'dir', command: 'prune', force: true }).commit();
    expect(siblings(dir, 'out')).toEqual([]);
  });
});

describe('what a killed run left behind', () => {
  test('a lock of a dead process on this host is taken over, and its temp folder removed', async () => {
    const dir = parent();
    const pid = deadPid();
    writeFileSync(join(dir, '.out.fairprune-lock'), JSON.stringify({ pid, host: hostname(), command: 'prune', started: '2020-01-01T00:00:00Z' }));
    mkdirSync(join(dir, `.out.fairprune-tmp-${pid}-deadbeef`));
    writeFileSync(join(dir, `.out.fairprune-tmp-${pid}-deadbeef`, 'model.onnx'), 'half');
    writeFileSync(join(dir, `.out.fairprune-lock-${pid}-cafe`), 'staged lock');
    await writeOutput(join(dir, 'out'), { kind: 'dir', command: 'test' }, () => {});
    expect(readdirSync(dir)).toEqual(['out']);
  });

  test('a live pid keeps its lock only while it is the same process (same start time in /proc)', async () => {
    const dir = parent();
    const sleeper = spawn('sleep', ['30']);
    try {
      // Field 22 of /proc/PID/stat; `sleep` has no spaces in its name, so a plain split finds it.
      const start = readFileSync(`/proc/${sleeper.pid}/stat`, 'utf8').split(' ')[21];
      const lock = (processStart: string) =>
        writeFileSync(join(dir, '.out.fairprune-lock'), JSON.stringify({ pid: sleeper.pid, host: hostname(), command: 'prune', started: 'then', processStart }));
      lock(start!);
      expect(() => openOutput(join(dir, 'out'), { kind: 'dir', command: 'test' })).toThrow(new RegExp(`pid ${sleeper.pid} on `));
      // The same pid with another start time is a reused pid: the writer is gone.
      lock(String(Number(start) + 1));
      await writeOutput(join(dir, 'out'), { kind: 'dir', command: 'test' }, () => {});
      expect(readdirSync(dir)).toEqual(['out']);
    } finally {
      sleeper.kill();
    }
  });

  test('a killed writer that is not reaped yet (a zombie) holds no lock', async () => {
    const dir = parent();
    // `sleep 30` becomes the parent of `sleep 60` (exec) and never reaps it: killed, it stays a zombie.
    const parentOfZombie = spawn('bash', ['-c', 'sleep 60 & echo $!; exec sleep 30']);
    try {
      const pid = Number(await new Promise<string>((done) => parentOfZombie.stdout.once('data', (d: Buffer) => done(d.toString()))));
      const start = readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[21];
      writeFileSync(join(dir, '.out.fairprune-lock'), JSON.stringify({ pid, host: hostname(), command: 'prune', started: 'then', processStart: start }));
      expect(() => openOutput(join(dir, 'out'), { kind: 'dir', command: 'test' })).toThrow(new RegExp(`pid ${pid} on `));
      process.kill(pid, 'SIGKILL');
      while (readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] !== 'Z') await new Promise((r) => setTimeout(r, 10));
      await writeOutput(join(dir, 'out'), { kind: 'dir', command: 'test' }, () => {});
      expect(readdirSync(dir)).toEqual(['out']);
    } finally {
      parentOfZombie.kill('SIGKILL');
    }
  });

  test('a lock of another host or a live process is never taken over', () => {
    const dir = parent();
    const lock = join(dir, '.out.fairprune-lock');
    writeFileSync(lock, JSON.stringify({ pid: deadPid(), host: 'elsewhere', command: 'prune', started: 'then' }));
    expect(() => openOutput(join(dir, 'out'), { kind: 'dir', command: 'test' })).toThrow(/on elsewhere \(prune, since then\).*remove .*\.out\.fairprune-lock if that process is gone/);
    writeFileSync(lock, JSON.stringify({ pid: 1, host: hostname(), command: 'prune', started: 'then' }));
    expect(() => openOutput(join(dir, 'out'), { kind: 'dir', command: 'test' })).toThrow(/pid 1 on /);
    writeFileSync(lock, 'garbage');
    expect(() => openOutput(join(dir, 'out'), { kind: 'dir', command: 'test' })).toThrow(/\.out\.fairprune-lock exists but is not a fairprune lock/);
    expect(readFileSync(lock, 'utf8')).toBe('garbage');
  });

  // A replacement renames the old output aside, then the new one in; a kill in between leaves a journal.
  const journal = (dir: string, old: string) => writeFileSync(join(dir, '.out.fairprune-journal'), JSON.stringify({ format: 'fairprune.replace-journal', old }));

  test('killed between the two renames: the next run puts the old output back under the name', () => {
    const dir = parent();
    const old = join(dir, '.out.fairprune-old-1-x');
    mkdirSync(old);
    writeFileSync(join(old, 'v'), 'old');
    writeFileSync(join(old, ARTIFACTS.marker), JSON.stringify({ format: 'fairprune.output', command: 'test', version: '0', time: 'then' }));
    journal(dir, old);
    const output = openOutput(join(dir, 'out'), { kind: 'dir', command: 'test', force: true });
    expect(readFileSync(join(dir, 'out', 'v'), 'utf8')).toBe('old');
    output.fail(new Error('stop'));
    expect(readdirSync(dir)).toEqual(['out']);
  });

  test('killed after the second rename: the next run drops the old output and keeps the new one', () => {
    const dir = parent();
    const old = join(dir, '.out.fairprune-old-1-x');
    mkdirSync(old);
    mkdirSync(join(dir, 'out'));
    writeFileSync(join(dir, 'out', 'v'), 'new');
    writeFileSync(join(dir, 'out', ARTIFACTS.marker), JSON.stringify({ format: 'fairprune.output', command: 'test', version: '0', time: 'then' }));
    journal(dir, old);
    openOutput(join(dir, 'out'), { kind: 'dir', command: 'test', force: true }).fail(new Error('stop'));
    expect(readdirSync(dir)).toEqual(['out']);
    expect(readFileSync(join(dir, 'out', 'v'), 'utf8')).toBe('new');
  });
});

test('a journal naming anything but a set-aside sibling of the output is ignored, not followed', () => {
  const dir = parent();
  const precious = join(dir, 'precious');
  mkdirSync(precious);
  writeFileSync(join(precious, 'data'), 'keep');
  writeFileSync(join(dir, '.out.fairprune-journal'), JSON.stringify({ format: 'fairprune.replace-journal', old: precious }));
  openOutput(join(dir, 'out'), { kind: 'dir', command: 'test' }).commit();
  expect(readFileSync(join(precious, 'data'), 'utf8')).toBe('keep');
  expect(readdirSync(dir).sort()).toEqual(['out', 'precious']);
});

describe('a file output', () => {
  test('replaces an existing file in one rename and refuses a folder', async () => {
    const dir = parent();
    const file = join(dir, 'results.json');
    writeFileSync(file, 'old');
    expect(await writeJsonOutput(file, { acc: 0.5 }, 'eval')).toBe(file);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ acc: 0.5 });
    expect(readdirSync(dir)).toEqual(['results.json']);
    mkdirSync(join(dir, 'folder'));
    await expect(writeJsonOutput(join(dir, 'folder'), {}, 'eval')).rejects.toThrow(OutputError);
    await expect(writeJsonOutput(join(dir, 'folder'), {}, 'eval')).rejects.toThrow(/folder is a folder; expected a file name to write/);
  });

  test('creates missing parent folders, and says so when it cannot', async () => {
    const dir = parent();
    await writeJsonOutput(join(dir, 'a/b/c.json'), [1], 'test');
    expect(readFileSync(join(dir, 'a/b/c.json'), 'utf8')).toBe('[\n 1\n]\n');
    writeFileSync(join(dir, 'blocker'), '');
    await expect(writeJsonOutput(join(dir, 'blocker/c.json'), [1], 'test')).rejects.toThrow(/Cannot create the folder .*blocker for .*c\.json/);
  });
});
