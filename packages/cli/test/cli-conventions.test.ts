import { expect, test } from 'vitest';
import { join } from 'node:path';
import { CommanderError } from 'commander';
import { fixtureDir } from '@fairprune/fixtures';
import { CliError, exitCodeOf, ExitCode, UsageError } from '../src/main.js';
import { runCli } from './run-cli.js';

/** Exit statuses and flag messages, as argparse/click tools have them: 2 usage, 1 failure, 0 help on request. */
const llama = fixtureDir('llama');
const out = join(import.meta.dirname, 'never-written');

test('fairprune alone prints the help on stderr and exits 2; --help prints it on stdout and exits 0', async () => {
  const alone = await runCli();
  expect(alone.code).toBe(2);
  expect(alone.stdout).toBe('');
  expect(alone.stderr).toMatch(/^Usage: fairprune \[options\] \[command\]/);
  expect(alone.stderr).toContain('prune [options] <model>');

  const help = await runCli('--help');
  expect(help.code).toBe(0);
  expect(help.stderr).toBe('');
  expect(help.stdout).toBe(alone.stderr);

  const version = await runCli('--version');
  expect(version.code).toBe(0);
  expect(version.stdout).toMatch(/^\d+\.\d+\.\d+/);

  const commandHelp = await runCli('prune', '--help');
  expect(commandHelp.code).toBe(0);
  expect(commandHelp.stdout).toMatch(/^Usage: fairprune prune \[options\] <model>/);
});

test.each([
  { args: ['frobnicate'], message: "error: unknown command 'frobnicate'" },
  { args: ['doctor', '--bogus'], message: "error: unknown option '--bogus'" },
  { args: ['inspect'], message: "error: missing required argument 'model'" },
  { args: ['analyze', llama, '--threads'], message: "error: option '--threads <n>' argument missing" },
  { args: ['prune', llama], message: "error: required option '--out <dir>' not specified" },
  { args: ['report', '--out'], message: "error: option '--out <file>' argument missing" },
  { args: ['inspect', llama, 'extra'], message: 'error: too many arguments for \'inspect\'' },
])('usage error $args exits 2: $message', async ({ args, message }) => {
  const { code, stdout, stderr } = await runCli(...args);
  expect(code).toBe(2);
  expect(stdout).toBe('');
  expect(stderr).toContain(message);
});

test.each([
  { args: ['analyze', llama, '--threads', '0'], flag: '--threads <n>', value: '0', reason: 'expected an integer ≥ 1.' },
  { args: ['analyze', llama, '--components', 'mlp_output,attn'], flag: '--components <list>', value: 'mlp_output,attn', reason: 'unknown "attn"; expected a comma-separated list of' },
  { args: ['prune', llama, '--out', out, '--fraction', 'abc'], flag: '--fraction <p>', value: 'abc', reason: 'expected a number.' },
  { args: ['prune', llama, '--out', out, '--fraction', '0'], flag: '--fraction <p>', value: '0', reason: 'expected a number strictly between 0 and 1.' },
  { args: ['prune', llama, '--out', out, '--fraction', ''], flag: '--fraction <p>', value: '', reason: 'expected a number.' },
  { args: ['prune', llama, '--out', out, '--bias-weight', '2'], flag: '--bias-weight <w>', value: '2', reason: 'expected a number in [0, 1].' },
  { args: ['prune', llama, '--out', out, '--layers', '1,x'], flag: '--layers <list>', value: '1,x', reason: '"x" is not an integer ≥ 0; expected a list like 0,3,5.' },
  { args: ['prune', llama, '--out', out, '--layer-fractions', '3'], flag: '--layer-fractions <list>', value: '3', reason: '"3" is not <layer>:<fraction>' },
  { args: ['prune', llama, '--out', out, '--layer-fractions', '1:1.5'], flag: '--layer-fractions <list>', value: '1:1.5', reason: '"1:1.5" is not <layer>:<fraction> with a fraction strictly between 0 and 1' },
  { args: ['prune', llama, '--out', out, '--global-top-k', '1.5'], flag: '--global-top-k <k>', value: '1.5', reason: 'expected an integer ≥ 1.' },
  { args: ['prune', llama, '--out', out, '--divisor', '-8'], flag: '--divisor <d>', value: '-8', reason: 'expected an integer ≥ 1.' },
  { args: ['eval', llama, '--task', 'boolq', '--limit', '0'], flag: '--limit <n>', value: '0', reason: 'expected an integer ≥ 1.' },
  { args: ['eval', llama, '--task', 'boolq', '--batch-size', 'eight'], flag: '--batch-size <n>', value: 'eight', reason: 'expected a number.' },
  { args: ['eval', llama, '--task', 'boolq', '--bootstrap-iters', '1e3.5'], flag: '--bootstrap-iters <n>', value: '1e3.5', reason: 'expected a number.' },
  { args: ['generate', llama, '--prompt', 'x', '--length-penalty', 'abc'], flag: '--length-penalty <x>', value: 'abc', reason: 'expected a number.' },
  { args: ['generate', llama, '--prompt', 'x', '--length-penalty', '1.5x'], flag: '--length-penalty <x>', value: '1.5x', reason: 'expected a number.' },
  { args: ['generate', llama, '--prompt', 'x', '--num-beams', '0'], flag: '--num-beams <n>', value: '0', reason: 'expected an integer ≥ 1.' },
  { args: ['generate', llama, '--prompt', 'x', '--no-repeat-ngram-size', '-1'], flag: '--no-repeat-ngram-size <n>', value: '-1', reason: 'expected an integer ≥ 0.' },
  { args: ['generate', llama, '--prompt', 'x', '--early-stopping', 'sometimes'], flag: '--early-stopping [mode]', value: 'sometimes', reason: 'expected true, false or never.' },
  { args: ['demo', '--threads', 'two'], flag: '--threads <n>', value: 'two', reason: 'expected a number.' },
])('a bad value for $flag exits 2 naming the flag as typed and the value as given', async ({ args, flag, value, reason }) => {
  const { code, stdout, stderr } = await runCli(...args);
  expect(code).toBe(2);
  expect(stdout).toBe('');
  expect(stderr).toContain(`error: option '${flag}' argument '${value}' is invalid. ${reason}`);
  expect(stderr.split('\n')[0]).not.toMatch(/NaN|lengthPenalty|numBeams|globalTopK|biasWeight/);
});

test.each([
  { args: ['--fraction', '0.1', '--global-top-k', '3'], message: "error: option '--fraction <p>' cannot be used with option '--global-top-k <k>'" },
  { args: ['--layers', '0,1', '--layer-fractions', '0:0.1'], message: "error: option '--layers <list>' cannot be used with option '--layer-fractions <list>'" },
  { args: ['--global-top-k', '3', '--divisor', '8'], message: "error: option '--global-top-k <k>' cannot be used with option '--divisor <d>'" },
])('prune selection flags that exclude each other exit 2: $args', async ({ args, message }) => {
  const { code, stderr } = await runCli('prune', llama, '--out', out, ...args);
  expect(code).toBe(2);
  expect(stderr).toContain(message);
});

test('generate: flag combinations checked after parsing are usage errors naming the flags', async () => {
  const beams = await runCli('generate', llama, '--prompt', 'x', '--num-beams', '2', '--num-return-sequences', '3');
  expect(beams.code).toBe(2);
  expect(beams.stderr).toBe('fairprune: --num-return-sequences (3) cannot exceed --num-beams (2)\n');
  const prompt = 'The police officer thought he';
  const length = await runCli('generate', llama, '--prompt', prompt, '--max-length', '3');
  expect(length.code).toBe(2);
  expect(length.stderr).toMatch(new RegExp(`^fairprune: --max-length 3 counts the prompt and leaves no room after the \\d+-token prompt "${prompt}"; raise it or use --max-new-tokens\\n$`));
});

test('a failure (not a usage error) exits 1 with one line', async () => {
  const { code, stderr } = await runCli('inspect', join(llama, 'no-such-folder'));
  expect(code).toBe(1);
  expect(stderr).toBe(`fairprune: model folder not found: ${join(llama, 'no-such-folder')} (nor is "${join(llama, 'no-such-folder')}" a hub id org/name[@revision])\n`);
});

test('the exit-code contract: usage 2, an error carrying exitCode (interruptions 130/143) keeps it, anything else 1', () => {
  expect(ExitCode).toEqual({ ok: 0, failure: 1, usage: 2, sigint: 130, sigterm: 143 });
  expect(exitCodeOf(new UsageError('x'))).toBe(2);
  expect(exitCodeOf(new CliError('interrupted', ExitCode.sigint))).toBe(130);
  expect(exitCodeOf(Object.assign(new Error('terminated'), { exitCode: 143 }))).toBe(143);
  expect(exitCodeOf(new CommanderError(1, 'commander.unknownOption', 'x'))).toBe(2);
  expect(exitCodeOf(new CommanderError(0, 'commander.helpDisplayed', 'x'))).toBe(0);
  expect(exitCodeOf(new CommanderError(1, 'fairprune.doctor', 'x'))).toBe(1);
  expect(exitCodeOf(new Error('disk full'))).toBe(1);
  expect(exitCodeOf(Object.assign(new Error('odd'), { exitCode: 'SIGINT' }))).toBe(1);
});
