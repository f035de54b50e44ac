// onnxruntime-node's telemetry (an events database under ~/.cache and /tmp/mat-debug-<pid>.log) is off in every
// fairprune run unless FAIRPRUNE_ORT_TELEMETRY=1: checked on a real run of the CLI with HOME in a temp folder.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtureDir } from '@fairprune/fixtures';
import { afterAll, describe, expect, test } from 'vitest';

const launcher = join(import.meta.dirname, 'helpers/fairprune-from-source.mjs');
const root = mkdtempSync(join(tmpdir(), 'fairprune-telemetry-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Runs `fairprune analyze` on the llama fixture with its own HOME; returns the exit code, pid and HOME. */
function analyze(name: string, extraEnv: Record<string, string>): Promise<{ code: number | null; pid: number; home: string; stderr: string }> {
  const home = join(root, name);
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, ...extraEnv };
  // The test process itself loaded core, which set this; the child must decide for itself.
  delete env['ORT_DISABLE_TELEMETRY'];
  // onnxruntime also stays quiet when CI is set; without it the run is what a user's would be.
  delete env['CI'];
  const child = spawn(process.execPath, [launcher, 'analyze', fixtureDir('llama')], { env });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += String(chunk)));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, pid: child.pid!, home, stderr })));
}

const database = (home: string) => join(home, '.cache/Microsoft/DeveloperTools/.onnxruntime');
const debugLog = (pid: number) => `/tmp/mat-debug-${pid}.log`;

describe('onnxruntime telemetry', () => {
  test('a run writes no telemetry database and no /tmp/mat-debug file', async () => {
    const run = await analyze('off', {});
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(database(run.home))).toBe(false);
    expect(existsSync(join(run.home, '.cache'))).toBe(false);
    expect(existsSync(debugLog(run.pid))).toBe(false);
  }, 60_000);

  test('FAIRPRUNE_ORT_TELEMETRY=1 leaves it as onnxruntime ships it (so the check above can see it)', async () => {
    const run = await analyze('on', { FAIRPRUNE_ORT_TELEMETRY: '1' });
    try {
      expect(run.code, run.stderr).toBe(0);
      expect(existsSync(join(database(run.home), 'onnxruntime.db'))).toBe(true);
      expect(existsSync(debugLog(run.pid))).toBe(true);
    } finally {
      rmSync(debugLog(run.pid), { force: true });
    }
  }, 60_000);
});
