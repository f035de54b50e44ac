#!/usr/bin/env node
// Benchmark: prune with the project defaults (seed pair, positionwise, maw, w 0.5, fraction 0.002, remove) on one model
// folder — which is analyze (open, capture, scores) + importance + select + apply/write + verify (the pruned model
// measured on the same session, and one short forward of the written files) + the output's commit (fsync of every
// written file, rename) — with wall time and peak RSS by stage, then the physical floor measured in the same run (read
// the input folder's bytes once, write the pruned folder's bytes once in 64 MiB chunks and fsync them, as the commit
// does) and the prune's ratio to it.
// `--analyze` also times a standalone analyze first.
// Runs the built library (npx tsc -b packages/core/tsconfig.lib.json).
//   node packages/core/bench/fairness-pruning.mjs [model-dir] [--analyze] [--keep]
// Default model: the Llama fixture (tiny); pass the Llama-3.2-1B-shaped synthetic folder for the real target.
import { closeSync, fsyncSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { analyzeBias, loadPairs, modelImportance, OnnxWeights, runFairnessPruning } from '@fairprune/core';
import { backendInfo, scanWeights } from '@fairprune/native-cuda';

const args = process.argv.slice(2);
const modelDir = resolve(args.find((a) => !a.startsWith('--')) ?? join(import.meta.dirname, '../../../fixtures/llama'));
const keep = args.includes('--keep');
const out = join(mkdtempSync(join(tmpdir(), 'fairprune-bench-')), 'pruned');
const mib = (bytes) => (bytes / 2 ** 20).toFixed(0);
const peakRss = () => process.resourceUsage().maxRSS * 1024; // maxRSS is in KiB
const marks = [];
const onProgress = (message) => {
  marks.push({ t: performance.now(), message, peak: peakRss(), rss: process.memoryUsage().rss });
  process.stderr.write(`  ${message}\n`);
};

console.log(`model: ${modelDir}`);
console.log(`native backend: ${JSON.stringify(backendInfo())}`);
const pairs = await loadPairs('builtin:seed');

const t0 = performance.now();
const analysis = args.includes('--analyze')
  ? await analyzeBias(modelDir, { pairs, pairsSource: 'builtin:seed', tokenActivations: false, onProgress })
  : undefined;
const analyzeMs = performance.now() - t0;
const analyzePeak = peakRss();

const t1 = performance.now();
const result = await runFairnessPruning(modelDir, { outDir: out, pairs, pairsSource: 'builtin:seed', onProgress });
const pruneMs = performance.now() - t1;
const prunePeak = peakRss();

// The native kernels' share: the scores stage is the activation-difference kernels over the captured tensors;
// the weight scan is timed here on its own, with the reads separated from the scans.
const weights = new OnnxWeights(join(modelDir, 'onnx/model.onnx'));
let readMs = 0;
let scanMs = 0;
for (let layer = 0; layer < weights.map.layers.length; layer++) {
  const r0 = performance.now();
  const mlp = weights.layerMlp(layer);
  const r1 = performance.now();
  await scanWeights(mlp.gate, { axis: mlp.neuronAxis });
  await scanWeights(mlp.up, { axis: mlp.neuronAxis });
  readMs += r1 - r0;
  scanMs += performance.now() - r1;
}
weights.close();

// The physical floor: every byte of the input folder read once and every byte of the pruned folder written once.
const filesUnder = (dir) => readdirSync(dir, { recursive: true }).map((f) => join(dir, f)).filter((f) => statSync(f).isFile());
const chunk = Buffer.allocUnsafe(64 * 2 ** 20);
const r0 = performance.now();
let readBytes = 0;
for (const file of filesUnder(modelDir)) {
  const fd = openSync(file, 'r');
  for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0;) readBytes += n;
  closeSync(fd);
}
const floorReadMs = performance.now() - r0;
const writeBytes = filesUnder(out).reduce((n, f) => n + statSync(f).size, 0);
const floorFile = join(out, '..', 'floor.bin');
const w0 = performance.now();
const fd = openSync(floorFile, 'w');
for (let done = 0; done < writeBytes; done += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, writeBytes - done));
// The prune's output is fsynced before its rename: the floor pays the same.
fsyncSync(fd);
closeSync(fd);
const floorWriteMs = performance.now() - w0;
rmSync(floorFile);

const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;
if (analysis) console.log(`\nanalyze (standalone): ${fmt(analyzeMs)}, peak RSS ${mib(analyzePeak)} MiB; bias metric ${analysis.report.metric?.overall.mean_difference}`);
console.log(`prune (analyze + importance + select + apply + verify + commit): ${fmt(pruneMs)}, peak RSS ${mib(prunePeak)} MiB`);
console.log('prune stages:');
for (const [stage, ms] of Object.entries(result.timings)) console.log(`  ${stage.padEnd(14)} ${fmt(ms)}`);
// checkWritten is timed inside analyzeAfter; the rest is the output's commit (fsync of every file, rename) and setup.
const staged = Object.entries(result.timings).reduce((sum, [stage, ms]) => sum + (stage === 'checkWritten' ? 0 : ms), 0);
console.log(`  ${'outside stages'.padEnd(14)} ${fmt(pruneMs - staged)} (folder checks, output commit: fsync + rename)`);
console.log('peak RSS when each step began:');
for (const m of marks) console.log(`  ${((m.t - t0) / 1000).toFixed(2).padStart(7)} s  peak ${mib(m.peak).padStart(6)} MiB  rss ${mib(m.rss).padStart(6)} MiB  ${m.message}`);
const nativeMs = (result.timings.scores ?? 0) + scanMs;
console.log(`\nweight reads ${fmt(readMs)}, native weight scans ${fmt(scanMs)}, native difference kernels (scores stage) ${fmt(result.timings.scores ?? 0)}`);
console.log(`native kernels: ${fmt(nativeMs)} = ${((nativeMs / pruneMs) * 100).toFixed(2)}% of the prune run`);
console.log(`pruned ${Object.values(result.plan.layers).reduce((n, l) => n + l.length, 0)} neurons; parameters ${result.plan.parameters.before} → ${result.plan.parameters.after}`);
console.log(`bias metric ${result.before.metric?.overall.mean_difference} → ${result.after?.metric?.overall.mean_difference}`);
const analyzePart = ['open', 'capture', 'scores', 'behaviour'].reduce((sum, k) => sum + (result.timings[k] ?? 0), 0);
console.log(`analyze part of prune (open + capture + scores + behaviour): ${fmt(analyzePart)}; prune total ${fmt(pruneMs)}`);
const floorMs = floorReadMs + floorWriteMs;
console.log(`physical floor: read ${mib(readBytes)} MiB in ${fmt(floorReadMs)} + write and fsync ${mib(writeBytes)} MiB in ${fmt(floorWriteMs)} = ${fmt(floorMs)}; prune ${fmt(pruneMs)} = ${(pruneMs / floorMs).toFixed(2)}× the floor`);
console.log(`load average during the run: ${(await import('node:os')).loadavg().map((v) => v.toFixed(2)).join(' ')}`);
if (!keep) rmSync(join(out, '..'), { recursive: true, force: true });
else console.log(`kept ${out}`);
