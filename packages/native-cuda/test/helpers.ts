// Seeded data and comparison helpers shared by the native-cuda tests.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { ActivationDiff, ActivationDiffBatch, DType, ElementData, WeightStats } from '../src/types.js';

/** mulberry32: small seeded PRNG so every run sees the same "random" data. */
export function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Random finite elements of the dtype, roughly N(0, scale) with a sprinkle of exact zeros and (f16) subnormals. */
export function randomElements(dtype: DType, count: number, seed: number, scale = 1): ElementData {
  const random = rng(seed);
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random()) * scale;
  if (dtype === 'f32') {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = gaussian();
    return out;
  }
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    if (dtype === 'bf16') {
      f32[0] = gaussian();
      out[i] = u32[0]! >>> 16;  // truncation: any bf16 pattern is a valid input
    } else {
      const sign = random() < 0.5 ? 0x8000 : 0;
      const exponent = random() < 0.02 ? 0 : 5 + Math.floor(random() * 13);  // ~2% subnormals, else up to 2^2
      out[i] = sign | (exponent << 10) | Math.floor(random() * 1024);
    }
  }
  return out;
}

/** Copies the bytes of `data` into a fresh buffer at byteOffset `offset`, returning a Uint8Array view of them. */
export function misaligned(data: ElementData, offset: number): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const view = new Uint8Array(new ArrayBuffer(bytes.length + offset + 8), offset, bytes.length);
  view.set(bytes);
  return view;
}

/** Element-wise |actual − expected| ≤ tolerance[i] (NaN matches only NaN; ±Inf must match exactly). */
export function expectClose(label: string, actual: ArrayLike<number>, expected: ArrayLike<number>,
  tolerance: (i: number) => number): void {
  expect(actual.length, `${label}: length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (Number.isNaN(e) || !Number.isFinite(e)) {
      if (!Object.is(a, e) && !(Number.isNaN(a) && Number.isNaN(e))) expect(a, `${label}[${i}]`).toBe(e);
      continue;
    }
    if (!(Math.abs(a - e) <= tolerance(i))) {
      expect(a, `${label}[${i}] (tolerance ${tolerance(i)})`).toBe(e);
    }
  }
}

/** Exact numeric equality (−0 equals +0; NaN equals NaN). */
export function expectSameNumbers(label: string, actual: ArrayLike<number>, expected: ArrayLike<number>): void {
  expectClose(label, actual, expected, () => 0);
}

const packageRoot = join(import.meta.dirname, '..');

/** The addons under test: FAIRPRUNE_NATIVE_ADDON alone when set, else the auto build and the CPU-only build. */
export function addonsUnderTest(): { label: string; path: string }[] {
  const configured = process.env['FAIRPRUNE_NATIVE_ADDON'];
  if (configured) return [{ label: `FAIRPRUNE_NATIVE_ADDON=${configured}`, path: configured }];
  return [
    { label: 'auto build (build/)', path: join(packageRoot, 'build', 'Release', 'fairprune_native.node') },
    { label: 'CPU-only build (build-cpu/)', path: join(packageRoot, 'build-cpu', 'Release', 'fairprune_native.node') },
  ];
}

/** Set FAIRPRUNE_EXPECT_REFERENCE=1 to run the suite on purpose without the addon (the reference then stands in). */
export const referenceIntended = process.env['FAIRPRUNE_EXPECT_REFERENCE'] === '1';

export function addonExists(path: string): boolean {
  return existsSync(path);
}

/** Relative tolerance of the kernels' sums (see the tolerance note at the top of kernels.test.ts). */
export const relative = 2e-6;

/** A weight scan against the reference: max/min/maxAbs exact, sums within `relative` of the bounding magnitude. */
export function checkScan(label: string, actual: WeightStats, expected: WeightStats): void {
  expect(actual.count, `${label}: count`).toBe(expected.count);
  expectSameNumbers(`${label} max`, actual.max, expected.max);
  expectSameNumbers(`${label} min`, actual.min, expected.min);
  expectSameNumbers(`${label} maxAbs`, actual.maxAbs, expected.maxAbs);
  expectClose(`${label} sum`, actual.sum, expected.sum, (i) => relative * Math.abs(expected.sumAbs[i]!));
  expectClose(`${label} sumSquares`, actual.sumSquares, expected.sumSquares, (i) => relative * Math.abs(expected.sumSquares[i]!));
  expectClose(`${label} sumAbs`, actual.sumAbs, expected.sumAbs, (i) => relative * Math.abs(expected.sumAbs[i]!));
}

/** An activation difference against the reference; pooled ≤ positionwise, and positionwise bounds the rounding of both. */
export function checkDiff(label: string, actual: ActivationDiff, expected: ActivationDiff): void {
  expectClose(`${label} positionwise`, actual.positionwise, expected.positionwise, (j) => relative * expected.positionwise[j]!);
  expectClose(`${label} pooled`, actual.pooled, expected.pooled, (j) => relative * expected.positionwise[j]!);
  expectClose(`${label} meanAbs`, [actual.meanAbs], [expected.meanAbs], () => relative * Math.abs(expected.meanAbs));
}


/** Pair p of a batched activation difference, as a one-pair result. */
export function pairOf(batch: ActivationDiffBatch, p: number, width: number): ActivationDiff {
  return {
    positionwise: batch.positionwise.subarray(p * width, (p + 1) * width),
    pooled: batch.pooled.subarray(p * width, (p + 1) * width),
    meanAbs: batch.meanAbs[p]!,
  };
}
