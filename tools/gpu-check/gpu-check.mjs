#!/usr/bin/env node
// GPU check for @fairprune/native-cuda, dependency-free: needs only `node` and the built addon.
//   node gpu-check.mjs [path/to/fairprune_native.node] [--require-gpu] [--quick]
// (or FAIRPRUNE_NATIVE_ADDON=path). Steps: (1) CUDA kernels vs the CPU kernels on random data (f32/f16/bf16, both
// axes, odd and 8B-model shapes, misaligned host buffers); (2) device-resident GB/s of each kernel vs a
// device-to-device copy, with PyTorch eager H200 figures for reference; (3) the host→device path (pageable vs pinned
// copies, end-to-end host-input calls vs the CPU) and what device 'auto' chose.
// Without a GPU it says so, prints why, and exits 0 (1 with --require-gpu).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const requireGpu = args.includes('--require-gpu');
const quick = args.includes('--quick');
const here = dirname(fileURLToPath(import.meta.url));
const addonPath = resolve(args.find((a) => !a.startsWith('--')) ?? process.env.FAIRPRUNE_NATIVE_ADDON ??
  join(here, '..', '..', 'packages', 'native-cuda', 'build', 'Release', 'fairprune_native.node'));
if (!existsSync(addonPath)) {
  console.error(`gpu-check: addon not found at ${addonPath}; build it with npx nx run @fairprune/native-cuda:build-native`);
  process.exit(1);
}
const addon = createRequire(import.meta.url)(addonPath);
const info = addon.backendInfo();
console.log(`gpu-check: addon ${addonPath}`);
console.log(`  CUDA compiled in: ${info.cuda.compiled ? 'yes' : 'no'}; devices: ${info.cuda.deviceCount}; CPU threads: ${info.threads}`);
if (!info.cuda.available) {
  console.log(`\nNO GPU FOUND: ${info.cuda.reason}`);
  console.log('Nothing to check on a GPU; the CPU kernels are what this addon runs here.');
  process.exit(requireGpu ? 1 : 0);
}
console.log(`  GPU: ${info.cuda.deviceName}`);

// ---------- data ----------
function randomElements(dtype, count, seed) {
  let state = seed >>> 0;
  const next = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 4294967296) * 2 - 1;
  if (dtype === 'f32') {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = next();
    return out;
  }
  const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer), out = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    f32[0] = next();
    // bf16: top half of the float; f16: random sign/mantissa, exponents incl. subnormals (0) up to 2^1
    out[i] = dtype === 'bf16' ? u32[0] >>> 16 : ((u32[0] >>> 16) & 0x8000) | ((state % 17) << 10) | (u32[0] & 0x3ff);
  }
  return out;
}
function misaligned(data, offset) {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const view = new Uint8Array(new ArrayBuffer(bytes.length + offset), offset, bytes.length);
  view.set(bytes);
  return view;
}

// ---------- correctness: CUDA vs CPU kernels ----------
// Both sides sum in float over short runs and then in double, in different orders: 2e-6 relative of the bounding
// magnitude (sumAbs for the signed sum, positionwise for pooled); max/min/maxAbs must be identical.
let failures = 0;
function compare(label, actual, expected, tolerance) {
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    const same = Number.isNaN(e) ? Number.isNaN(a) : !Number.isFinite(e) ? a === e : Math.abs(a - e) <= tolerance(i);
    if (!same) {
      failures++;
      console.log(`  FAIL ${label}[${i}]: cuda ${a} vs cpu ${e}`);
      return false;
    }
  }
  return true;
}
const relative = 2e-6;
async function checkScan(rows, cols, dtype, axis, offset = 0) {
  const raw = randomElements(dtype, rows * cols, rows * 7 + cols);
  const data = offset ? misaligned(raw, offset) : raw;
  const cpu = await addon.scanWeights(data, rows, cols, dtype, axis, 'cpu');
  const gpu = await addon.scanWeights(data, rows, cols, dtype, axis, 'cuda');
  const label = `scan ${dtype} ${axis} [${rows}, ${cols}]${offset ? ` +${offset}` : ''}`;
  let ok = ['max', 'min', 'maxAbs'].every((k) => compare(`${label} ${k}`, gpu[k], cpu[k], () => 0));
  ok &&= compare(`${label} sum`, gpu.sum, cpu.sum, (i) => relative * Math.abs(cpu.sumAbs[i]));
  ok &&= ['sumSquares', 'sumAbs'].every((k) => compare(`${label} ${k}`, gpu[k], cpu[k], (i) => relative * Math.abs(cpu[k][i])));
  console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${label}`);
}
async function checkDiff(pairs, tokens, width, dtype) {
  const a = randomElements(dtype, pairs * tokens * width, 1), b = randomElements(dtype, pairs * tokens * width, 2);
  const cpu = await addon.activationDiff(a, b, pairs, tokens, width, dtype, 'cpu');
  const gpu = await addon.activationDiff(misaligned(a, 1), misaligned(b, 3), pairs, tokens, width, dtype, 'cuda');
  const label = `diff ${dtype} [${pairs}, ${tokens}, ${width}]`;
  let ok = compare(`${label} positionwise`, gpu.positionwise, cpu.positionwise, (i) => relative * cpu.positionwise[i]);
  ok &&= compare(`${label} pooled`, gpu.pooled, cpu.pooled, (i) => relative * cpu.positionwise[i]);
  ok &&= compare(`${label} meanAbs`, gpu.meanAbs, cpu.meanAbs, (i) => relative * cpu.meanAbs[i]);
  console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${label} (misaligned inputs on the GPU side)`);
}

console.log('\n1. CUDA vs CPU kernels');
for (const dtype of ['f32', 'f16', 'bf16']) {
  for (const axis of ['rows', 'cols']) {
    for (const [r, c] of [[1, 1], [7, 13], [257, 509], [2048, 8192]]) await checkScan(r, c, dtype, axis);
    await checkScan(257, 509, dtype, axis, 3);
  }
  await checkDiff(1, 1, 1, dtype);
  await checkDiff(3, 7, 1031, dtype);
  await checkDiff(16, 16, 8192, dtype);
}

// ---------- device-resident bandwidth ----------
const repeats = quick ? 5 : 30;
const eager = { scan: { f32: 1312, bf16: 1114 }, diff: { f32: 1195, bf16: 321 } };  // PyTorch 2.11 eager on H200, GB/s
const copyBytes = 14336 * 4096 * 4;
const copyGBps = (2 * copyBytes) / (addon.cudaBenchmark('copy', copyBytes, repeats) * 1e6);  // read + write
console.log(`\n2. Device-resident GB/s (bytes read / kernel time) vs device-to-device copy ${copyGBps.toFixed(0)} GB/s (read + write)`);
const table = [];
for (const dtype of ['f32', 'f16', 'bf16']) {
  const data = randomElements(dtype, 14336 * 4096, 5);
  for (const axis of ['rows', 'cols']) {
    const result = addon.cudaBenchmark('scan', data, 14336, 4096, dtype, axis, repeats);
    const gbps = data.byteLength / (result.ms * 1e6);
    table.push([`scan ${axis}`, dtype, '[14336, 4096]', gbps, eager.scan[dtype]]);
  }
}
for (const dtype of ['f32', 'f16', 'bf16']) {
  for (const [pairs, tokens, width] of [[16, 16, 8192], [32, 128, 14336]]) {
    const n = pairs * tokens * width;
    const a = randomElements(dtype, n, 7), b = randomElements(dtype, n, 8);
    const result = addon.cudaBenchmark('diff', a, b, pairs, tokens, width, dtype, repeats);
    table.push(['activation diff', dtype, `[${pairs}, ${tokens}, ${width}]`, (2 * a.byteLength) / (result.ms * 1e6), eager.diff[dtype]]);
  }
}
console.log(`  ${'kernel'.padEnd(17)}${'dtype'.padEnd(6)}${'shape'.padEnd(18)}${'GB/s'.padEnd(9)}${'% copy'.padEnd(8)}× eager`);
for (const [kernel, dtype, shape, gbps, eagerGBps] of table) {
  console.log(`  ${kernel.padEnd(17)}${dtype.padEnd(6)}${shape.padEnd(18)}${gbps.toFixed(0).padEnd(9)}${((100 * gbps) / copyGBps).toFixed(0).padEnd(8)}${eagerGBps ? (gbps / eagerGBps).toFixed(1) : '—'}`);
}
console.log('  targets: ≥ 90% of copy; ≥ 2.5× eager on the scan, ≥ 3× on the difference');

// ---------- host → device ----------
console.log('\n3. Host → device');
const h2dBytes = 256 << 20;
for (const pinned of [false, true]) {
  const ms = addon.cudaBenchmark('hostToDevice', h2dBytes, quick ? 2 : 5, pinned);
  console.log(`  cudaMemcpy ${pinned ? 'pinned  ' : 'pageable'} ${(h2dBytes / (ms * 1e6)).toFixed(1)} GB/s`);
}
async function seconds(run) {
  await run();
  const start = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - start) / 1e9;
}
for (const dtype of ['f32', 'bf16']) {
  const data = randomElements(dtype, 14336 * 4096, 9);
  for (const device of ['cpu', 'cuda', 'auto']) {
    let ran = '';
    const s = await seconds(async () => { ran = (await addon.scanWeights(data, 14336, 4096, dtype, 'rows', device)).device; });
    console.log(`  host-input scan ${dtype} [14336, 4096] device ${device.padEnd(4)} → ran on ${ran.padEnd(4)} ${(data.byteLength / (s * 1e9)).toFixed(1)} GB/s`);
  }
}
const policy = addon.backendInfo().autoPolicy;
if (policy) console.log(`  auto policy (measured once): CUDA host-input ${policy.cudaHostInputGBps.toFixed(1)} GB/s vs CPU ${policy.cpuGBps.toFixed(1)} GB/s`);

console.log(failures === 0 ? '\ngpu-check: all CUDA results match the CPU kernels' : `\ngpu-check: ${failures} mismatches`);
process.exit(failures === 0 ? 0 : 1);
