// Sweeps pruning settings on the bundled demo model and prints, for each, the bias metric, the held-out behavioural
// gap (both sides) and mini LAMBADA/BoolQ accuracy: the evidence behind the settings `fairprune demo` uses.
// Run after a build: node tools/demo/settings-sweep.mjs
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runFairnessPruning } from '@fairprune/core';
import { evaluate } from '@fairprune/eval';

const demo = new URL('../../packages/cli/demo/', import.meta.url).pathname;
const model = join(demo, 'model');
const behaviour = JSON.parse(readFileSync(join(demo, 'data/behaviour.json'), 'utf8'));
const [seed, ...heldOut] = behaviour;

async function accuracy(modelDir, task, file) {
  const results = await evaluate({ model: modelDir, task, data: { file: join(demo, 'data', file) }, batchSize: 8, thread: 'main' });
  return results.results[task].acc;
}

const work = mkdtempSync(join(tmpdir(), 'fairprune-sweep-'));
const rows = [];
const settings = [];
for (const importance of ['maw', 'ppm']) for (const fraction of [0.02, 0.05, 0.1, 0.2]) settings.push({ importance, fraction, biasWeight: 0.5 });
settings.push({ importance: 'ppm', fraction: 0.1, biasWeight: 1 });
for (const [i, s] of settings.entries()) {
  const outDir = join(work, `run-${i}`);
  const result = await runFairnessPruning(model, { outDir, pairs: [seed], evalPairs: heldOut, tokenActivations: false, ...s });
  const gap = (report) => report.eval.behaviour.reduce((sum, b) => sum + b.gap, 0) / report.eval.behaviour.length;
  const side = (report, key) => report.eval.behaviour.reduce((sum, b) => sum + b[key], 0) / report.eval.behaviour.length;
  rows.push({
    ...s,
    metric: `${result.before.metric.overall.mean_difference.toFixed(4)} → ${result.after.metric.overall.mean_difference.toFixed(4)}`,
    metricNoGateUp: `${result.before.metric.overall_excluding_gate_up.mean_difference.toFixed(4)} → ${result.after.metric.overall_excluding_gate_up.mean_difference.toFixed(4)}`,
    heldOutGap: `${gap(result.before).toFixed(2)} → ${gap(result.after).toFixed(2)}`,
    sideA: `${side(result.before, 'logOddsA').toFixed(2)} → ${side(result.after, 'logOddsA').toFixed(2)}`,
    sideB: `${side(result.before, 'logOddsB').toFixed(2)} → ${side(result.after, 'logOddsB').toFixed(2)}`,
    lambada: (await accuracy(outDir, 'lambada_openai', 'lambada-mini.jsonl')).toFixed(3),
    boolq: (await accuracy(outDir, 'boolq', 'boolq-mini.jsonl')).toFixed(3),
  });
  rmSync(outDir, { recursive: true, force: true });
}
console.log(`base model: LAMBADA-mini ${(await accuracy(model, 'lambada_openai', 'lambada-mini.jsonl')).toFixed(3)}, BoolQ-mini ${(await accuracy(model, 'boolq', 'boolq-mini.jsonl')).toFixed(3)}`);
console.table(rows);
rmSync(work, { recursive: true, force: true });
