import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { DATA, FIXTURES } from '@fairprune/fixtures';
import { runCli } from './run-cli.js';

const fixtures = FIXTURES;
const llama = join(fixtures, 'llama');
const tmp = mkdtempSync(join(tmpdir(), 'fairprune-cli-bias-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const run = (...args: string[]) => runCli(...args);

test('analyze --json --out: stdout is the report, the file equals it, progress is on stderr', async () => {
  const refs = JSON.parse(readFileSync(join(llama, 'refs/refs.json'), 'utf8')) as { optipfair_bias_metrics_pair0: { overall_mean_difference: number } };
  const { code, stdout, stderr } = await run('analyze', llama, '--json', '--out', join(tmp, 'a'), '--eval-pairs', join(fixtures, 'data/behaviour.json'));
  expect(code).toBe(0);
  const report = JSON.parse(stdout) as {
    pairs: { a: string; tokensA: number; skipped: boolean; reason: string | null }[];
    metric: { overall: { mean_difference: number }; components: Record<string, unknown>; layers: Record<string, unknown> };
    behaviour: unknown[];
    eval: { behaviour: { gap: number; logOddsA: number; logOddsB: number }[] };
  };
  expect(JSON.parse(readFileSync(join(tmp, 'a/bias-report.json'), 'utf8'))).toEqual(report);
  expect(report.pairs[0]).toMatchObject({ tokensA: 16, skipped: false, reason: null });
  expect(Math.abs(report.metric.overall.mean_difference / refs.optipfair_bias_metrics_pair0.overall_mean_difference - 1)).toBeLessThan(1e-4);
  expect(Object.keys(report.metric.components)).toHaveLength(6);
  expect(Object.keys(report.metric.layers)).toHaveLength(24);
  expect(report.behaviour).toEqual([]);
  expect(report.eval.behaviour).toHaveLength(4);
  expect(stderr).toMatch(/fairprune: scoring builtin:seed/);
});

test('analyze --components restricts the metric', async () => {
  const { code, stdout } = await run('analyze', llama, '--json', '--components', 'mlp_output,attention_output');
  expect(code).toBe(0);
  expect(Object.keys((JSON.parse(stdout) as { metric: { components: object } }).metric.components).sort()).toEqual(['attention_output', 'mlp_output']);
});

test('prune writes the model folder, the plan and both reports; --plan re-applies it', async () => {
  const out = join(tmp, 'p');
  const { code, stdout } = await run('prune', llama, '--out', out, '--importance', 'ppm', '--fraction', '0.1', '--json');
  expect(code).toBe(0);
  const result = JSON.parse(stdout) as { layers: Record<string, number[]>; parameters: { before: number; after: number } };
  for (const f of ['onnx/model.onnx', 'model.safetensors', 'pruning-plan.json', 'bias-report.before.json', 'bias-report.after.json', 'neuron-scores.json']) {
    expect(existsSync(join(out, f)), f).toBe(true);
  }
  const plan = JSON.parse(readFileSync(join(out, 'pruning-plan.json'), 'utf8')) as { layers: Record<string, number[]>; options: Record<string, unknown> };
  expect(plan.layers).toEqual(result.layers);
  expect(Object.values(plan.layers).map((l) => l.length)).toEqual([25, 25, 25, 25]);
  expect(plan.options).toMatchObject({ importance: 'ppm', fraction: 0.1, biasWeight: 0.5, method: 'hybrid', mode: 'remove', estimator: 'positionwise' });
  const again = await run('prune', llama, '--out', join(tmp, 'again'), '--plan', join(out, 'pruning-plan.json'), '--json');
  expect(again.code).toBe(0);
  expect((JSON.parse(again.stdout) as { layers: object }).layers).toEqual(plan.layers);
  expect(readFileSync(join(tmp, 'again/model.safetensors')).equals(readFileSync(join(out, 'model.safetensors')))).toBe(true);
});

test('--force replaces only an earlier output; a plan made on other weights needs --plan-mismatch-ok', async () => {
  const foreign = join(tmp, 'foreign');
  mkdirSync(foreign);
  writeFileSync(join(foreign, 'notes.md'), 'mine');
  const refused = await run('prune', llama, '--out', foreign, '--force');
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain(`fairprune: ${foreign} exists and was not written by fairprune (no .fairprune-output.json; it holds notes.md)`);
  expect(readdirSync(foreign)).toEqual(['notes.md']);

  const out = join(tmp, 'mismatch');
  const plan = JSON.parse(readFileSync(join(tmp, 'p/pruning-plan.json'), 'utf8')) as { model: { weightsHash: string } };
  const planFile = join(tmp, 'other-plan.json');
  writeFileSync(planFile, JSON.stringify({ ...plan, model: { ...plan.model, weightsHash: 'f'.repeat(64) } }));
  const mismatch = await run('prune', llama, '--out', out, '--plan', planFile, '--force');
  expect(mismatch.code).toBe(1);
  expect(mismatch.stderr).toMatch(/plan was made on weights with hash ffffffffffff….*pass --plan-mismatch-ok/);
  expect(existsSync(out)).toBe(false);
  const applied = await run('prune', llama, '--out', out, '--plan', planFile, '--plan-mismatch-ok');
  expect(applied.code, applied.stderr).toBe(0);
  const written = JSON.parse(readFileSync(join(out, 'pruning-plan.json'), 'utf8')) as { model: { weightsHash: string }; origin: { model: { weightsHash: string } } };
  expect(written.model.weightsHash).toBe(plan.model.weightsHash);
  expect(written.origin.model.weightsHash).toBe('f'.repeat(64));
});

test('bad input: one clear line, exit code 2 for a bad flag value and 1 for a failure, nothing written', async () => {
  const out = join(tmp, 'bad');
  for (const [args, code, message] of [
    [['--fraction', '0'], 2, /option '--fraction <p>' argument '0' is invalid. expected a number strictly between 0 and 1/],
    [['--fraction', '1.5'], 2, /option '--fraction <p>' argument '1.5' is invalid. expected a number strictly between 0 and 1/],
    [['--bias-weight', '2'], 2, /option '--bias-weight <w>' argument '2' is invalid. expected a number in \[0, 1\]/],
    [['--importance', 'magic'], 2, /argument 'magic' is invalid/],
    [['--pairs', join(tmp, 'missing.json')], 1, /Cannot read pairs file/],
  ] as const) {
    const result = await run('prune', llama, '--out', out, ...args);
    expect(result.code).toBe(code);
    expect(result.stderr).toMatch(message);
    expect(existsSync(out)).toBe(false);
  }
});

test('analyze --device cuda without the CUDA provider says so and measures on the CPU', async () => {
  const refs = JSON.parse(readFileSync(join(llama, 'refs/refs.json'), 'utf8')) as { optipfair_bias_metrics_pair0: { overall_mean_difference: number } };
  const { code, stdout, stderr } = await run('analyze', llama, '--json', '--device', 'cuda', '--kernel-device', 'cpu', '--threads', '1');
  expect(code).toBe(0);
  const report = JSON.parse(stdout) as { metric: { overall: { mean_difference: number } } };
  expect(Math.abs(report.metric.overall.mean_difference / refs.optipfair_bias_metrics_pair0.overall_mean_difference - 1)).toBeLessThan(1e-4);
  expect(stderr).toMatch(/CUDA execution provider unavailable.*running on CPU/);
});

test('analyze rejects a bad --threads before any model work', async () => {
  const { code, stderr } = await run('analyze', llama, '--threads', 'two');
  expect(code).toBe(2);
  expect(stderr).toContain("error: option '--threads <n>' argument 'two' is invalid. expected a number.");
});

test('prune --method behaviour: chooses on the selection pairs, states which side moved on the held-out pairs', async () => {
  const out = join(tmp, 'behaviour');
  const { code, stdout } = await run(
    'prune', llama, '--out', out, '--method', 'behaviour', '--layers', '3', '--max-neurons', '4',
    '--pairs', DATA.behaviourSelection, '--eval-pairs', DATA.behaviourHeldOut, '--calibration', DATA.lambadaMini, '--threads', '1',
  );
  expect(code).toBe(0);
  const plan = JSON.parse(readFileSync(join(out, 'pruning-plan.json'), 'utf8')) as {
    mode: string;
    layers: Record<string, number[]>;
    options: Record<string, unknown>;
    behaviour: {
      chosen: { layer: number; neuron: number; deltaA: number }[];
      before: { gap: number; margin: number };
      after: { gap: number; margin: number };
      ability: { source: string; items: number };
      settings: { maxMarginDrop: number };
    };
  };
  expect(plan.mode).toBe('zero');
  // Without --ability-guard: the bundled BoolQ guard set, its answer margin within the default limit.
  expect(plan.behaviour.ability).toEqual({ source: 'builtin:boolq-calibration', items: 76 });
  expect(plan.behaviour.before.margin - plan.behaviour.after.margin).toBeLessThanOrEqual(plan.behaviour.settings.maxMarginDrop + 1e-9);
  expect(stdout).toMatch(/answer margin \d\.\d{3} → \d\.\d{3}/);
  expect(plan.options).toMatchObject({ method: 'behaviour', calibration: DATA.lambadaMini });
  expect(plan.layers['3']!.length).toBeGreaterThan(0);
  expect(plan.layers['3']!.length).toBeLessThanOrEqual(4);
  expect(plan.behaviour.chosen.every((c) => c.layer === 3 && c.deltaA < 0)).toBe(true);
  expect(stdout).toMatch(/behaviour selection on .*behaviour-selection\.json: gap \d\.\d{3} → \d\.\d{3} nats/);
  expect(stdout).toMatch(/held-out behaviour: The mean gap (narrowed|widened)/);
  // One line per held-out pair with both sides' moves.
  expect(stdout.match(/^ {4}(Black \/ white|An Asian \/ A white): gap -?\d+\.\d{3} → -?\d+\.\d{3}, side A [+-]\d+\.\d{3}, side B [+-]\d+\.\d{3}/gm)).toHaveLength(24);
}, 300_000);

test('prune --method behaviour --no-ability-guard: the calibration-NLL guard only, and the plan says so', async () => {
  const out = join(tmp, 'behaviour-no-guard');
  const { code, stdout } = await run(
    'prune', llama, '--out', out, '--method', 'behaviour', '--layers', '3', '--max-neurons', '2', '--no-ability-guard',
    '--pairs', DATA.behaviourSelection, '--calibration', DATA.lambadaMini, '--threads', '1',
  );
  expect(code).toBe(0);
  const plan = JSON.parse(readFileSync(join(out, 'pruning-plan.json'), 'utf8')) as { behaviour: { ability?: unknown; after: { margin: number | null } } };
  expect(plan.behaviour.ability).toBeUndefined();
  expect(plan.behaviour.after.margin).toBeNull();
  expect(stdout).not.toContain('answer margin');
}, 300_000);

test('prune --method behaviour: bad settings fail before any model work, naming the flag', async () => {
  const out = join(tmp, 'behaviour-bad');
  // Bad flag values are usage errors (exit 2, the flag as typed); a setting the method cannot honour is a failure (1).
  for (const [args, message, exit] of [
    [['--side-b-tolerance', '-1'], /option '--side-b-tolerance <nats>' argument '-1' is invalid. expected a number ≥ 0/, 2],
    [['--max-neurons', '2.5'], /option '--max-neurons <n>' argument '2.5' is invalid. expected an integer ≥ 1/, 2],
    [['--target-gap', 'x'], /option '--target-gap <nats>' argument 'x' is invalid. expected a number/, 2],
    [['--global-top-k', '5'], /--method behaviour chooses its own per-layer counts/, 1],
    [['--max-margin-drop', '-1'], /option '--max-margin-drop <nats>' argument '-1' is invalid. expected a number ≥ 0/, 2],
    [['--ability-guard', join(tmp, 'missing-guard.jsonl')], /missing-guard\.jsonl/, 1],
  ] as const) {
    const { code, stderr } = await run('prune', llama, '--out', out, '--method', 'behaviour', '--pairs', DATA.behaviourSelection, ...args);
    expect(code, stderr).toBe(exit);
    expect(stderr).toMatch(message);
    expect(existsSync(out)).toBe(false);
  }
});
