// CPU kernel benchmark: GB/s of each native kernel against a plain one-pass read of the same bytes (sumBytes, C++;
// for the column gather, which also writes, a memcpy of the same bytes) and against the TS reference, at Llama-3.2-1B shapes and larger. Run: npx nx run @fairprune/native-cuda:bench
// (plain node on dist/; BENCH_QUICK=1 runs fewer repeats; BENCH_ONLY=text runs only the cases whose
// "kernel dtype" line contains it, e.g. BENCH_ONLY="scan cols"). Targets on a 2-core machine: ≥ 60% of the read, ≥ 5× TS.
import { activationDiffBatched, backendInfo, gatherColumns, reference, scanWeights } from '../dist/index.js';
import { loadNativeAddon } from '../dist/binding.js';

const load = loadNativeAddon();
if (!load.addon) {
  console.error(`bench: the native addon is missing (${load.error}); run npx nx run @fairprune/native-cuda:build-native`);
  process.exit(1);
}
const native = load.addon;
const repeats = process.env.BENCH_QUICK === '1' ? 2 : 5;

async function seconds(run) {
  const start = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Best-of-N seconds of the kernel and of the plain read, measured alternately so both see the same machine load
 *  (the machine is shared; best = least disturbed). Small inputs get more repeats. */
async function bestPair(kernel, read, bytes) {
  await kernel();  // warm-up: page-in, thread start
  await read();
  const times = Math.max(repeats, Math.min(50, Math.round(2e8 / bytes)));
  let bestKernel = Infinity, bestRead = Infinity;
  for (let i = 0; i < times; i++) {
    bestKernel = Math.min(bestKernel, await seconds(kernel));
    bestRead = Math.min(bestRead, await seconds(read));
  }
  return [bestKernel, bestRead];
}

function randomData(dtype, count, seed) {
  let state = seed >>> 0;
  const next = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 4294967296) - 0.5;
  if (dtype === 'f32') return Float32Array.from({ length: count }, next);
  const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    f32[0] = next();
    // bf16: the top half; f16: a normal half in [2^-6, 2) with random sign and mantissa
    out[i] = dtype === 'bf16' ? u32[0] >>> 16 : ((u32[0] >>> 16) & 0x8000) | ((9 + (i % 7)) << 10) | (u32[0] & 0x3ff);
  }
  return out;
}

const rows = [];
const gbps = (bytes, seconds) => bytes / seconds / 1e9;

const only = process.env.BENCH_ONLY;
const selected = (kernel, dtype) => !only || `${kernel} ${dtype}`.includes(only);

async function benchScan(label, shape, dtype, axis, count, withReference) {
  if (!selected(`scan ${axis}`, dtype)) return;
  const [r, c] = shape;
  const data = randomData(dtype, r * c, r + c);
  const matrix = { data, rows: r, cols: c, dtype };
  const bytes = data.byteLength;
  // `count` matrices of this shape: scanned back to back over one buffer (it is far larger than the caches).
  const [scan, read] = await bestPair(
    async () => { for (let i = 0; i < count; i++) await scanWeights(matrix, { axis, device: 'cpu' }); },
    () => { for (let i = 0; i < count; i++) native.sumBytes(data); }, count * bytes);
  const ts = withReference ? await seconds(() => reference.scanWeights(matrix, axis)) : undefined;
  rows.push({ label, kernel: `scan ${axis}`, dtype, shape: `${count}×[${r}, ${c}]`, mb: (count * bytes) / 1e6,
    gbps: gbps(count * bytes, scan), read: gbps(count * bytes, read), ts: ts && gbps(bytes, ts) });
}

async function benchDiff(label, pairs, tokens, width, dtype, withReference) {
  if (!selected('activation diff', dtype)) return;
  const n = pairs * tokens * width;
  const a = { data: randomData(dtype, n, 1), pairs, tokens, width, dtype };
  const b = { data: randomData(dtype, n, 2), pairs, tokens, width, dtype };
  const bytes = a.data.byteLength + b.data.byteLength;
  const [diff, read] = await bestPair(() => activationDiffBatched(a, b, { device: 'cpu' }),
    () => { native.sumBytes(a.data); native.sumBytes(b.data); }, bytes);
  const ts = withReference ? await seconds(() => reference.activationDiffBatched(a, b)) : undefined;
  rows.push({ label, kernel: 'activation diff', dtype, shape: `[${pairs}, ${tokens}, ${width}]`, mb: bytes / 1e6,
    gbps: gbps(bytes, diff), read: gbps(bytes, read), ts: ts && gbps(bytes, ts) });
}

async function benchGather(label, shape, dtype, dropShare) {
  if (!selected('gather cols', dtype)) return;
  const [r, c] = shape;
  const data = randomData(dtype, r * c, r + c);
  const matrix = { data, rows: r, cols: c, dtype };
  // Neurons removed at random, as pruning does: kept runs of ~1/dropShare elements.
  let state = 7;
  const kept = Int32Array.from({ length: c }, (_, i) => i).filter(() => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 4294967296) >= dropShare);
  const out = new Uint8Array(r * kept.length * data.BYTES_PER_ELEMENT);
  const copy = new Uint8Array(data.byteLength);
  const source = new Uint8Array(data.buffer);
  const [gather, base] = await bestPair(() => gatherColumns(matrix, kept, out), () => copy.set(source), data.byteLength);
  const ts = await seconds(() => reference.gatherColumns(matrix, kept, out));
  rows.push({ label, kernel: 'gather cols', dtype, shape: `[${r}, ${c}] −${dropShare * 100}%`, mb: data.byteLength / 1e6,
    gbps: gbps(data.byteLength, gather), read: gbps(data.byteLength, base), ts: gbps(data.byteLength, ts) });
}

const info = backendInfo();
console.log(`native-cuda CPU bench: ${info.threads} threads, addon ${info.addonPath}, CUDA: ${info.cuda.available ? info.cuda.deviceName : info.cuda.reason}`);
for (const dtype of ['f32', 'f16', 'bf16']) {
  for (const axis of ['rows', 'cols']) await benchScan('Llama-3.2-1B gate/up', [2048, 8192], dtype, axis, 32, axis === 'rows');
}
for (const dtype of ['f32', 'bf16']) {
  for (const axis of ['rows', 'cols']) await benchScan('Llama-3-8B gate/up', [14336, 4096], dtype, axis, 1, false);
}
for (const dtype of ['f32', 'f16', 'bf16']) await benchDiff('Llama-3.2-1B 16 layers', 16, 16, 8192, dtype, true);
for (const dtype of ['f32', 'bf16']) await benchDiff('larger: 32 layers × 128 tokens', 32, 128, 14336, dtype, false);
for (const dtype of ['f32', 'f16']) await benchGather('Llama-3-8B gate/up (ONNX)', [4096, 14336], dtype, 0.1);

const pad = (s, n) => String(s).padEnd(n);
const num = (x, digits = 1) => (x === undefined ? '—' : x.toFixed(digits));
console.log(`\n${pad('case', 32)}${pad('kernel', 17)}${pad('dtype', 6)}${pad('shape', 22)}${pad('MB', 9)}${pad('GB/s', 8)}${pad('base GB/s', 11)}${pad('% base', 8)}${pad('TS GB/s', 9)}× TS`);
for (const r of rows) {
  console.log(`${pad(r.label, 32)}${pad(r.kernel, 17)}${pad(r.dtype, 6)}${pad(r.shape, 22)}${pad(num(r.mb, 0), 9)}${pad(num(r.gbps, 2), 8)}` +
    `${pad(num(r.read, 2), 11)}${pad(num((100 * r.gbps) / r.read, 0), 8)}${pad(num(r.ts, 3), 9)}${r.ts ? num(r.gbps / r.ts, 0) : '—'}`);
}
const worstRead = Math.min(...rows.map((r) => r.gbps / r.read));
const withTs = rows.filter((r) => r.ts);
const worstTs = withTs.length ? Math.min(...withTs.map((r) => r.gbps / r.ts)) : NaN;
console.log('\nbase: a plain read of the same bytes (sumBytes); for the gather, which writes too, a memcpy of them');
console.log(`worst: ${(100 * worstRead).toFixed(0)}% of the base (target ≥ 60%), ${worstTs.toFixed(0)}× the TS reference (target ≥ 5×)`);
