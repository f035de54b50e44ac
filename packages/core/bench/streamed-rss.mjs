#!/usr/bin/env node
// Benchmark: peak RSS and wall time of analyze, whole-model session vs streamed (one decoder layer at a time), each in
// its own process so the peaks do not mix. Prints one line per mode and the metric of both (they must agree).
// Runs the built library (npx tsc -b packages/core/tsconfig.lib.json).
//   node packages/core/bench/streamed-rss.mjs [model-dir] [--onnx-file onnx/model.onnx] [--pairs builtin:seed]
// Default model: the Llama fixture (tiny: the figures then show the fixed cost of node + onnxruntime, not the weights).
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { analyzeBias, loadPairs } from '@fairprune/core';

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const positional = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
const modelDir = resolve(positional[0] ?? join(import.meta.dirname, '../../../fixtures/llama'));
const onnxFile = flag('--onnx-file');
const pairsSpec = flag('--pairs') ?? 'builtin:seed';
const mode = flag('--child');

if (mode) {
  const started = performance.now();
  const { report } = await analyzeBias(modelDir, {
    pairs: await loadPairs(pairsSpec),
    pairsSource: pairsSpec,
    tokenActivations: false,
    streamed: mode === 'streamed',
    ...(onnxFile ? { onnxFile } : {}),
  });
  const ms = performance.now() - started;
  // maxRSS is in KiB.
  console.log(JSON.stringify({ mode, ms, peakMiB: process.resourceUsage().maxRSS / 1024, metric: report.metric?.overall.mean_difference ?? null }));
} else {
  console.log(`model: ${modelDir}${onnxFile ? ` (${onnxFile})` : ''}, pairs ${pairsSpec}`);
  const results = ['whole', 'streamed'].map((m) => {
    const out = execFileSync(process.execPath, [import.meta.filename, modelDir, '--child', m, '--pairs', pairsSpec, ...(onnxFile ? ['--onnx-file', onnxFile] : [])], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return JSON.parse(out.trim().split('\n').at(-1));
  });
  for (const r of results) console.log(`${r.mode.padEnd(8)}  peak RSS ${r.peakMiB.toFixed(0).padStart(6)} MiB  wall ${(r.ms / 1000).toFixed(2).padStart(7)} s  metric ${r.metric}`);
  const [whole, streamed] = results;
  console.log(`streamed/whole: RSS ${(streamed.peakMiB / whole.peakMiB).toFixed(2)}×, wall ${(streamed.ms / whole.ms).toFixed(2)}×, |Δ metric| ${Math.abs(streamed.metric - whole.metric).toExponential(1)}`);
}
