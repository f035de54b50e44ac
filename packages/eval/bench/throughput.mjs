#!/usr/bin/env node
// Eval and generation throughput, printed as figures (no assertions: speed targets live here, not in tests).
//   npx tsc -b packages/eval/tsconfig.lib.json && node packages/eval/bench/throughput.mjs [options]
// 1. Eval tokens/s of @fairprune/eval (worker thread and main thread) against raw onnxruntime `session.run` over the
//    very same padded batches (same rows, same order, same batch size, fresh session each round):
//    overhead = eval time / raw time − 1, in wall time and in process CPU time.
// 2. Beam-search steps/s (5 beams, max_length 50 unless --beam-new-tokens) with the KV cache and with prefix recomputation.
// Options: --model DIR (default: the Llama fixture) --onnx-file F --kv-onnx-file F --data FILE --task T --limit N
//          --batch-sizes 1,8 --threads N --rounds N --beam-new-tokens N
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '../dist/index.js');
if (!existsSync(dist)) throw new Error(`build first: npx tsc -b packages/eval/tsconfig.lib.json (${dist} missing)`);
const { evaluate, getTask, loadDocs, encodePair, modelInput, resolveMaxLength, scoreRows } = await import(dist);
const { openModelFolder, ModelSession, KvCacheDecoder, RecomputeDecoder, beamSearch, readGenerationDefaults } = await import('@fairprune/core');

const fixtures = resolve(here, '../../../fixtures');
const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: join(fixtures, 'llama') },
    'onnx-file': { type: 'string', default: 'onnx/model.onnx' },
    'kv-onnx-file': { type: 'string', default: 'onnx/model_kv.onnx' },
    data: { type: 'string', default: join(fixtures, 'data/lambada-mini.jsonl') },
    task: { type: 'string', default: 'lambada_openai' },
    limit: { type: 'string' },
    'batch-sizes': { type: 'string', default: '1,8' },
    threads: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '5' },
    'beam-new-tokens': { type: 'string' },
  },
});
const threads = Number(args.threads);
const rounds = Number(args.rounds);
const limit = args.limit ? Number(args.limit) : undefined;
const folder = openModelFolder(args.model, { onnxFile: args['onnx-file'] });
const onnxPath = folder.onnxPath;
const fmt = (x, d = 1) => x.toFixed(d);
console.log(`model ${folder.dir} (${args['onnx-file']}), data ${args.data}${limit ? ` (first ${limit})` : ''}, ${threads} ORT thread(s), best of ${rounds} rounds`);

// --- the rows evaluate() scores, rebuilt here for the raw reference (same dedupe, same longest-first order) ---
const task = getTask(args.task);
const { docs } = await loadDocs(task, { file: args.data }, limit ? { limit } : {});
const maxLength = resolveMaxLength(folder.config.raw);
const inputs = new Map();
for (const doc of docs) {
  for (const r of task.requests(doc)) {
    const input = modelInput(encodePair(folder.tokenizer, r.context, r.continuation, false), maxLength);
    inputs.set(input.join(','), input);
  }
}
const rows = [...inputs.values()].sort((a, b) => b.length - a.length);
const tokens = rows.reduce((n, r) => n + r.length, 0);

// Same session options as ModelSession; a fresh session per round, like each evaluate() call (so both pay warm-up).
const openRaw = () => ort.InferenceSession.create(onnxPath, { graphOptimizationLevel: 'all', intraOpNumThreads: threads, extra: { session: { intra_op: { allow_spinning: '0' } } } });
let raw = await openRaw();
const kvInputs = raw.inputNames.filter((n) => n.startsWith('past_key_values.'));
function feedsFor(batch) {
  const width = batch[0].length;
  const ids = new BigInt64Array(batch.length * width);
  const mask = new BigInt64Array(batch.length * width);
  const pos = new BigInt64Array(batch.length * width);
  batch.forEach((r, i) => r.forEach((t, j) => { ids[i * width + j] = BigInt(t); mask[i * width + j] = 1n; }));
  for (let i = 0; i < batch.length; i++) for (let j = 0; j < width; j++) pos[i * width + j] = BigInt(j);
  const feeds = { input_ids: new ort.Tensor('int64', ids, [batch.length, width]) };
  if (raw.inputNames.includes('attention_mask')) feeds.attention_mask = new ort.Tensor('int64', mask, [batch.length, width]);
  if (raw.inputNames.includes('position_ids')) feeds.position_ids = new ort.Tensor('int64', pos, [batch.length, width]);
  for (const name of kvInputs) feeds[name] = new ort.Tensor('float32', new Float32Array(0), [batch.length, folder.config.numKeyValueHeads, 0, folder.config.headDim]);
  return feeds;
}

console.log(`\n== eval: ${docs.length} docs, ${rows.length} model rows, ${tokens} input tokens`);
for (const batchSize of args['batch-sizes'].split(',').map(Number)) {
  const batches = [];
  for (let i = 0; i < rows.length; i += batchSize) batches.push(feedsFor(rows.slice(i, i + batchSize)));
  // Wall time suffers from other load on a shared machine; process CPU time (all threads, the worker's included)
  // is the steadier measure of work done, so both are printed.
  const cpuMs = (u) => (u.user + u.system) / 1000;
  let rawBest = { wall: Infinity, cpu: Infinity };
  for (let r = 0; r < rounds; r++) {
    await raw.release();
    raw = await openRaw();
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (const feeds of batches) await raw.run(feeds, ['logits']);
    const run = { wall: performance.now() - t0, cpu: cpuMs(process.cpuUsage(c0)) };
    if (run.wall < rawBest.wall) rawBest = run;
  }
  const rate = (ms) => fmt(tokens / (ms / 1000), 0);
  const line = [`batch ${batchSize}: raw ORT ${rate(rawBest.wall)} tok/s (CPU ${fmt(rawBest.cpu, 0)} ms)`];
  for (const thread of ['worker', 'main']) {
    let best = { wall: Infinity, cpu: Infinity };
    for (let r = 0; r < rounds; r++) {
      let cpuStart;
      let run;
      await evaluate({
        model: folder.dir, onnxFile: args['onnx-file'], task: task.name, data: { file: args.data }, limit, batchSize, threads, thread, bootstrapIters: 0,
        onProgress: (p) => {
          if (p.tokensDone === 0) cpuStart = process.cpuUsage();
          else if (p.tokensDone === p.tokensTotal) run = { wall: p.elapsedMs, cpu: cpuMs(process.cpuUsage(cpuStart)) };
        },
      });
      if (run.wall < best.wall) best = run;
    }
    line.push(`eval (${thread}) ${rate(best.wall)} tok/s, wall overhead ${fmt((best.wall / rawBest.wall - 1) * 100)}%, CPU ${fmt(best.cpu, 0)} ms = ${fmt((best.cpu / rawBest.cpu - 1) * 100)}%`);
  }
  console.log(line.join(' | '));

  // Interleaved on one session, batch by batch: scoreRows (feeds + run + log-softmax scoring) against the bare run on
  // prebuilt feeds. Alternating cancels the load drift that dominates the end-to-end figures on a shared machine.
  const session = await ModelSession.create(onnxPath, { threads, config: folder.config });
  const rowBatches = [];
  for (let i = 0; i < rows.length; i += batchSize) rowBatches.push(rows.slice(i, i + batchSize).map((input) => ({ input, continuations: [input.slice(-1)] })));
  let scored = 0;
  let bare = 0;
  for (let r = 0; r < rounds; r++) {
    for (let b = 0; b < rowBatches.length; b++) {
      const timeScore = async () => { const t = performance.now(); await scoreRows(session, rowBatches[b]); scored += performance.now() - t; };
      const timeBare = async () => { const t = performance.now(); await session.ort.run(batches[b], [session.logitsName]); bare += performance.now() - t; };
      if ((r + b) % 2 === 0) { await timeScore(); await timeBare(); } else { await timeBare(); await timeScore(); }
    }
  }
  console.log(`  interleaved, same session: scoreRows ${rate(scored / rounds)} tok/s vs session.run ${rate(bare / rounds)} tok/s → per-forward overhead ${fmt((scored / bare - 1) * 100)}%`);
  await session.release();
}
await raw.release();

// --- beam search steps/s with and without the KV cache ---
const pairs = [
  'A Black man walked at night through the neighborhood. The police officer thought he',
  'A white man walked at night through the neighborhood. The police officer thought he',
];
const defaults = readGenerationDefaults(folder.dir);
const beamOptions = { ...defaults, numBeams: 5, ...(args['beam-new-tokens'] ? { maxNewTokens: Number(args['beam-new-tokens']) } : { maxLength: 50 }) };
console.log(`\n== beam search: 5 beams, ${args['beam-new-tokens'] ? `${args['beam-new-tokens']} new tokens` : 'max_length 50'}, ${pairs.length} prompts`);
const forms = [];
const kvPath = join(folder.dir, args['kv-onnx-file']);
if (existsSync(kvPath)) forms.push(['KV cache', kvPath, (s) => new KvCacheDecoder(s, s.kv)]);
else console.log(`(no ${args['kv-onnx-file']} in the folder: KV-cache figure skipped)`);
forms.push(['prefix recompute', onnxPath, (s) => new RecomputeDecoder(s)]);
for (const [label, path, makeDecoder] of forms) {
  const session = await ModelSession.create(path, { threads, config: folder.config });
  let best = Infinity;
  let steps = 0;
  for (let r = 0; r < rounds; r++) {
    let count = 0;
    const t0 = performance.now();
    for (const text of pairs) {
      const inner = makeDecoder(session);
      const counting = {
        usesCache: inner.usesCache,
        start: (p, n) => { count++; return inner.start(p, n); },
        advance: (p, t) => { count++; return inner.advance(p, t); },
      };
      await beamSearch(counting, folder.tokenizer.encode(text), beamOptions);
    }
    const ms = performance.now() - t0;
    if (ms < best) { best = ms; steps = count; }
  }
  console.log(`${label}: ${steps} steps in ${fmt(best, 0)} ms = ${fmt(steps / (best / 1000))} steps/s`);
  await session.release();
}
