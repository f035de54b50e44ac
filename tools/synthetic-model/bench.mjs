#!/usr/bin/env node
// Model-layer benchmark on a generated folder (see generate.mjs). Each phase runs in its own process so peak RSS
// is that phase's alone.
//   node tools/synthetic-model/bench.mjs --model /tmp/fp-llama1b-f32 [--fraction 0.1] [--threads 2]
// Prints: open + map time, pruned-write time / throughput / peak RSS (vs 1.5 × largest tensor + 300 MB), a plain
// chunked copy of the weights as the disk-speed reference, session load and one 16-token forward.
import { execFileSync } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync, rmSync, statSync, writeSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import {
  ModelSession, checkExternalData, mapGraph, openModelFolder, readOnnxModel, tensorByteLength, tensorDtype, writePrunedFolder,
} from '@fairprune/core';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    phase: { type: 'string' },
    out: { type: 'string' },
    fraction: { type: 'string', default: '0.1' },
    threads: { type: 'string', default: '2' },
  },
});
if (!args.model) throw new Error('--model <generated folder> is required');
const onnxPath = join(args.model, 'onnx/model.onnx');
const seconds = (t0) => Number(((performance.now() - t0) / 1000).toFixed(3));
const rssMB = () => Math.round(process.resourceUsage().maxRSS / 1024);

async function phase(name) {
  if (name === 'open') {
    const t0 = performance.now();
    const folder = openModelFolder(args.model);
    const tFolder = seconds(t0);
    const t1 = performance.now();
    const model = readOnnxModel(onnxPath);
    checkExternalData(model, onnxPath);
    const map = mapGraph(model, onnxPath);
    const tMap = seconds(t1);
    const largest = Math.max(...model.graph.initializer.map((t) => (tensorDtype(t) ? tensorByteLength(t) : 0)));
    const total = model.graph.initializer.reduce((n, t) => n + (tensorDtype(t) ? tensorByteLength(t) : 0), 0);
    return {
      openFolderSeconds: tFolder, readAndMapSeconds: tMap, totalSeconds: seconds(t0), layers: map.layers.length,
      intermediate: map.layers[0].intermediateSize, dtype: map.layers[0].gate.dtype, vocab: folder.config.vocabSize,
      largestTensorMB: Math.round(largest / 2 ** 20), weightsMB: Math.round(total / 2 ** 20), peakRssMB: rssMB(),
    };
  }
  if (name === 'prune') {
    const model = readOnnxModel(onnxPath);
    const map = mapGraph(model, onnxPath);
    const width = map.layers[0].intermediateSize;
    const count = Math.round(width * Number(args.fraction));
    const selection = {};
    let s = 12345;
    for (const layer of map.layers) {
      const chosen = new Set();
      while (chosen.size < count) { s = (Math.imul(s, 1103515245) + 12345) >>> 0; chosen.add((s >>> 8) % width); }
      selection[layer.index] = [...chosen];
    }
    const t0 = performance.now();
    writePrunedFolder(args.model, args.out, { selection, mode: 'remove' });
    const elapsed = seconds(t0);
    const written = readdirSync(join(args.out, 'onnx')).reduce((n, f) => n + statSync(join(args.out, 'onnx', f)).size, 0);
    return { pruneWriteSeconds: elapsed, removedPerLayer: count, writtenMB: Math.round(written / 2 ** 20), writeMBps: Math.round(written / 2 ** 20 / elapsed), peakRssMB: rssMB() };
  }
  if (name === 'copy') {
    // the same bytes through 64 MiB readSync/writeSync chunks: what the disk allows for this I/O pattern
    const src = join(args.model, 'onnx/model.onnx_data');
    const t0 = performance.now();
    const input = openSync(src, 'r');
    const output = openSync(args.out, 'w');
    const buffer = new Uint8Array(64 * 2 ** 20);
    let position = 0;
    for (let n; (n = readSync(input, buffer, 0, buffer.length, position)) > 0; position += n) writeSync(output, buffer, 0, n, position);
    const size = fstatSync(input).size;
    closeSync(input);
    closeSync(output);
    const elapsed = seconds(t0);
    return { copySeconds: elapsed, copyMBps: Math.round(size / 2 ** 20 / elapsed) };
  }
  if (name === 'forward') {
    const t0 = performance.now();
    const session = await ModelSession.create(onnxPath, { threads: Number(args.threads) });
    const load = seconds(t0);
    const folder = openModelFolder(args.model);
    const ids = folder.tokenizer.encode('A Black man walked at night through the neighborhood. The police officer thought he').slice(0, 16);
    const t1 = performance.now();
    const { dims, logits } = await session.forward([ids]);
    const forward = seconds(t1);
    await session.release();
    return { sessionLoadSeconds: load, forward16Seconds: forward, logitsDims: dims, finite: logits.every(Number.isFinite), peakRssMB: rssMB() };
  }
  throw new Error(`unknown phase ${name}`);
}

if (args.phase) {
  process.stdout.write(JSON.stringify(await phase(args.phase)) + '\n');
} else {
  const self = fileURLToPath(import.meta.url);
  const run = (name, extra = []) =>
    JSON.parse(execFileSync(process.execPath, [self, '--model', args.model, '--phase', name, '--fraction', args.fraction, '--threads', args.threads, ...extra], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 }));
  const prunedDir = `${args.model.replace(/\/$/, '')}-pruned-bench`;
  const copyFile = `${args.model.replace(/\/$/, '')}-copy-bench.bin`;
  rmSync(prunedDir, { recursive: true, force: true });
  const open = run('open');
  console.error('open', open);
  const prune = run('prune', ['--out', prunedDir]);
  console.error('prune', prune);
  rmSync(prunedDir, { recursive: true, force: true });
  const copy = run('copy', ['--out', copyFile]);
  rmSync(copyFile, { force: true });
  console.error('copy', copy);
  const forward = run('forward');
  console.error('forward', forward);
  const rssTarget = Math.round(1.5 * open.largestTensorMB + 300);
  console.log(JSON.stringify({ model: args.model, open, prune, copy, forward, pruneRssTargetMB: rssTarget, pruneRssWithinTarget: prune.peakRssMB <= rssTarget, openWithinTarget: open.totalSeconds <= 2 }, null, 2));
}
