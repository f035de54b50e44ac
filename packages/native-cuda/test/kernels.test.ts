// Every native kernel against the TS reference (itself grounded in reference.test.ts), for each addon build:
// the auto build (CUDA compiled in when nvcc was found) and the CPU-only build.
//
// Tolerances: max/min/maxAbs must match exactly (the f16/bf16 → f32 conversions are exact and comparisons don't
// round). The reference sums in double; the kernels sum in float over at most 16 values per lane (a − b in float
// too), then in double, then round to float32. The float runs bound the error by about 16·2^-24 ≈ 1e-6 of the
// sum of magnitudes, so the tolerance is 2e-6 relative to the magnitude that bounds the rounding: sumAbs for the
// signed sum (which can cancel), positionwise for pooled (|Σd| ≤ Σ|d|), and the value itself otherwise.
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import * as referenceKernels from '../src/reference/index.js';
import type { ActivationDiff, DType, ElementData, WeightStats } from '../src/types.js';
import { addonExists, addonsUnderTest, checkDiff, checkScan, expectClose, expectSameNumbers, misaligned, randomElements, referenceIntended, relative } from './helpers.js';

type Api = typeof import('../src/index.js');
const dtypes: DType[] = ['f32', 'f16', 'bf16'];
const axes = ['rows', 'cols'] as const;

// References are computed once per case and shared by both addons (the big ones take ~0.3 s each in TS).
const scanReferences = new Map<string, WeightStats>();
function scanCase(rows: number, cols: number, dtype: DType, axis: 'rows' | 'cols', seed: number) {
  const data = randomElements(dtype, rows * cols, seed);
  const key = `${rows}x${cols}/${dtype}/${axis}/${seed}`;
  const matrix = { data, rows, cols, dtype };
  if (!scanReferences.has(key)) scanReferences.set(key, referenceKernels.scanWeights(matrix, axis));
  return { matrix, expected: scanReferences.get(key)! };
}

function plantNonFinite(data: ElementData, dtype: DType, positions: Record<'nan' | 'inf' | 'negInf', number[]>): void {
  const patterns = { f32: { nan: NaN, inf: Infinity, negInf: -Infinity }, f16: { nan: 0x7e00, inf: 0x7c00, negInf: 0xfc00 }, bf16: { nan: 0x7fc0, inf: 0x7f80, negInf: 0xff80 } }[dtype];
  for (const kind of ['nan', 'inf', 'negInf'] as const) for (const i of positions[kind]) data[i] = patterns[kind];
}

describe.each(addonsUnderTest())('$label', ({ label, path }) => {
  let api: Api;
  const savedAddon = process.env['FAIRPRUNE_NATIVE_ADDON'];

  beforeAll(async () => {
    process.env['FAIRPRUNE_NATIVE_ADDON'] = path;
    vi.resetModules();
    api = await import('../src/index.js');
    if (savedAddon === undefined) delete process.env['FAIRPRUNE_NATIVE_ADDON'];
    else process.env['FAIRPRUNE_NATIVE_ADDON'] = savedAddon;
  });
  afterAll(() => vi.resetModules());

  test('the native addon is loaded, not silently replaced by the reference', () => {
    const info = api.backendInfo();
    expect(addonExists(path) || referenceIntended, `${path} missing: run npx nx run @fairprune/native-cuda:build-native`).toBe(true);
    expect(info.backend, info.reason).toBe(referenceIntended ? 'reference' : 'native');
  });

  test('backendInfo reports threads and why CUDA is or is not usable', () => {
    const info = api.backendInfo();
    expect(info.threads).toBeGreaterThanOrEqual(1);
    expect(info.cuda.available ? info.cuda.deviceName : info.cuda.reason).toMatch(/\S/);
    if (label.startsWith('CPU-only')) expect(info.cuda).toMatchObject({ compiled: false, available: false, deviceCount: 0 });
  });

  describe('scanWeights', () => {
    for (const [rows, cols] of [[1, 1], [7, 13], [13, 7], [257, 509]] as const) {
      for (const dtype of dtypes) {
        test(`${rows}×${cols} ${dtype}, both axes`, async () => {
          for (const axis of axes) {
            const { matrix, expected } = scanCase(rows, cols, dtype, axis, rows * 31 + cols);
            checkScan(`${axis}`, await api.scanWeights(matrix, { axis }), expected);
          }
        });
      }
    }

    test.each([
      [2048, 8192, 'bf16', 'cols'], [8192, 2048, 'f32', 'rows'],
    ] as const)('large %i×%i %s axis %s', async (rows, cols, dtype, axis) => {
      const { matrix, expected } = scanCase(rows, cols, dtype, axis, 7);
      checkScan(`${rows}x${cols}`, await api.scanWeights(matrix, { axis, device: 'cpu' }), expected);
    });

    test('misaligned Uint8Array views (byteOffset 1, 2, 3) give the aligned results', async () => {
      for (const dtype of dtypes) {
        for (const axis of axes) {
          const { matrix, expected } = scanCase(257, 509, dtype, axis, 257 * 31 + 509);
          for (const offset of [1, 2, 3]) {
            const data = misaligned(matrix.data, offset);
            expect(data.byteOffset % 4).toBe(offset);
            checkScan(`${dtype} ${axis} +${offset}`, await api.scanWeights({ ...matrix, data }, { axis }), expected);
          }
        }
      }
    });

    test('NaN and ±Inf propagate as the reference defines', async () => {
      for (const dtype of dtypes) {
        const rows = 37, cols = 41;
        const data = randomElements(dtype, rows * cols, 99);
        // Row 3 / column 5 get a NaN; row 10 gets +Inf and −Inf (sum NaN); column 20 gets +Inf only.
        plantNonFinite(data, dtype, { nan: [3 * cols + 5], inf: [10 * cols + 1, 30 * cols + 20], negInf: [10 * cols + 2] });
        for (const axis of axes) {
          const matrix = { data, rows, cols, dtype };
          const actual = await api.scanWeights(matrix, { axis });
          checkScan(`${dtype} ${axis}`, actual, referenceKernels.scanWeights(matrix, axis));
          const nanNeuron = axis === 'rows' ? 3 : 5;
          expect(actual.maxAbs[nanNeuron]).toBeNaN();
        }
      }
    });

    test('f16 and bf16 widen exactly: all 65536 patterns through the kernel', async () => {
      const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
      for (const dtype of ['f16', 'bf16'] as const) {
        // One element per neuron ('cols' axis, one row): max is the converted element itself.
        const stats = await api.scanWeights({ data: all, rows: 1, cols: 65536, dtype }, { axis: 'cols' });
        expectSameNumbers(dtype, stats.max, referenceKernels.decodeElements(all, dtype, 65536));
      }
    });

    test("device 'cuda' runs on a GPU or fails clearly without one", async () => {
      const { matrix, expected } = scanCase(257, 509, 'bf16', 'rows', 257 * 31 + 509);
      const info = api.backendInfo();
      const run = api.scanWeights(matrix, { axis: 'rows', device: 'cuda' });
      if (info.cuda.available) checkScan('cuda', await run, expected);
      else await expect(run).rejects.toThrow(/device 'cuda'.*(not available|needs the native addon)/);
    });
  });

  describe('activationDiff', () => {
    for (const [pairs, tokens, width] of [[1, 1, 1], [1, 7, 13], [3, 16, 257], [2, 5, 1031]] as const) {
      for (const dtype of dtypes) {
        test(`[${pairs}, ${tokens}, ${width}] ${dtype}: batched vs reference and vs one by one`, async () => {
          const n = pairs * tokens * width;
          const a = { data: randomElements(dtype, n, width + 1), pairs, tokens, width, dtype };
          const b = { data: randomElements(dtype, n, width + 2), pairs, tokens, width, dtype };
          const batched = await api.activationDiffBatched(a, b);
          const expected = referenceKernels.activationDiffBatched(a, b);
          expect(batched).toHaveLength(pairs);
          const bytes = tokens * width * (dtype === 'f32' ? 4 : 2);
          for (let p = 0; p < pairs; p++) {
            checkDiff(`pair ${p}`, batched[p]!, expected[p]!);
            const slice = (data: ElementData) => new Uint8Array(data.buffer, data.byteOffset + p * bytes, bytes);
            const single = await api.activationDiff({ data: slice(a.data), rows: tokens, cols: width, dtype },
              { data: slice(b.data), rows: tokens, cols: width, dtype });
            expectSameNumbers(`single ${p} positionwise`, single.positionwise, batched[p]!.positionwise);
            expectSameNumbers(`single ${p} pooled`, single.pooled, batched[p]!.pooled);
            expect(single.meanAbs).toBe(batched[p]!.meanAbs);
          }
        });
      }
    }

    test('Llama-3.2-1B shape: 16 layers × 16 tokens × 8192, bf16', async () => {
      const shape = { pairs: 16, tokens: 16, width: 8192, dtype: 'bf16' as const };
      const a = { ...shape, data: randomElements('bf16', 16 * 16 * 8192, 3) };
      const b = { ...shape, data: randomElements('bf16', 16 * 16 * 8192, 4) };
      const actual = await api.activationDiffBatched(a, b, { device: 'cpu' });
      referenceKernels.activationDiffBatched(a, b).forEach((expected, p) => checkDiff(`pair ${p}`, actual[p]!, expected));
    });

    test('misaligned a and b (byteOffset 1 and 3)', async () => {
      for (const dtype of dtypes) {
        const tokens = 9, width = 131;
        const a = { data: randomElements(dtype, tokens * width, 1), rows: tokens, cols: width, dtype };
        const b = { data: randomElements(dtype, tokens * width, 2), rows: tokens, cols: width, dtype };
        const actual = await api.activationDiff({ ...a, data: misaligned(a.data, 1) }, { ...b, data: misaligned(b.data, 3) });
        checkDiff(dtype, actual, referenceKernels.activationDiff(a, b));
      }
    });

    test('NaN and ±Inf propagate as the reference defines', async () => {
      for (const dtype of dtypes) {
        const tokens = 6, width = 17;
        const a = randomElements(dtype, tokens * width, 5);
        const b = randomElements(dtype, tokens * width, 6);
        plantNonFinite(a, dtype, { nan: [2 * width + 3], inf: [width + 7, 4 * width + 9], negInf: [] });
        plantNonFinite(b, dtype, { nan: [], inf: [4 * width + 9], negInf: [] });  // column 9: Inf − Inf = NaN
        const ma = { data: a, rows: tokens, cols: width, dtype }, mb = { data: b, rows: tokens, cols: width, dtype };
        const actual = await api.activationDiff(ma, mb);
        checkDiff(dtype, actual, referenceKernels.activationDiff(ma, mb));
        expect([actual.positionwise[3], actual.positionwise[7], actual.positionwise[9], actual.meanAbs]).toEqual([NaN, Infinity, NaN, NaN]);
      }
    });
  });

  describe('DiffAccumulator', () => {
    for (const statistic of ['positionwise', 'pooled'] as const) {
      test(`${statistic}: batched = one by one, ≈ reference accumulator, ≈ two-pass statistics`, async () => {
        const pairs = 7, tokens = 5, width = 300, dtype = 'bf16' as const;
        const a = { data: randomElements(dtype, pairs * tokens * width, 70), pairs, tokens, width, dtype };
        const b = { data: randomElements(dtype, pairs * tokens * width, 71), pairs, tokens, width, dtype };
        const batched = new api.DiffAccumulator(width, { statistic });
        const oneByOne = new api.DiffAccumulator(width, { statistic });
        const reference = new referenceKernels.ReferenceDiffAccumulator(width, statistic);
        await batched.addBatched(a, b);
        reference.addBatched(a, b);
        const bytes = tokens * width * 2;
        const adds = [];
        for (let p = 0; p < pairs; p++) {  // queued without awaiting: the wrapper serialises them
          const slice = (data: ElementData) => new Uint8Array(data.buffer, data.byteOffset + p * bytes, bytes);
          adds.push(oneByOne.add({ data: slice(a.data), rows: tokens, cols: width, dtype }, { data: slice(b.data), rows: tokens, cols: width, dtype }));
        }
        await Promise.all(adds);
        const [r1, r2] = [await batched.result(), await oneByOne.result()];
        const expected = reference.result();
        expect([r1.count, r2.count]).toEqual([pairs, pairs]);
        for (const key of ['mean', 'variance', 'max'] as const) expectSameNumbers(`one-by-one ${key}`, r2[key], r1[key]);
        // The per-pair statistics carry the kernel's rounding (above); Welford itself runs in double on both sides.
        expectClose('mean', r1.mean, expected.mean, (j) => relative * Math.abs(expected.mean[j]!));
        expectClose('variance', r1.variance, expected.variance, (j) => relative * (expected.variance[j]! + expected.mean[j]! ** 2));
        expectClose('max', r1.max, expected.max, (j) => relative * expected.max[j]!);
        // Independent: plain two-pass mean and population variance of the per-pair statistics.
        const perPair = referenceKernels.activationDiffBatched(a, b).map((d) => d[statistic]);
        for (let j = 0; j < width; j++) {
          const column = perPair.map((v) => v[j]!);
          const mean = column.reduce((s, v) => s + v, 0) / pairs;
          const variance = column.reduce((s, v) => s + (v - mean) ** 2, 0) / pairs;
          expect(Math.abs(r1.mean[j]! - mean)).toBeLessThanOrEqual(relative * mean);
          expect(Math.abs(r1.variance[j]! - variance)).toBeLessThanOrEqual(relative * (variance + mean * mean));
        }
        batched.dispose();
        oneByOne.dispose();
        expect(() => batched.result()).toThrow(/disposed/);
      });
    }

    test('a NaN pair makes the affected neuron NaN from then on', async () => {
      const width = 4, tokens = 2;
      const acc = new api.DiffAccumulator(width);
      const a = Float32Array.from({ length: tokens * width }, (_, i) => i);
      const b = new Float32Array(tokens * width);
      await acc.add({ data: a, rows: tokens, cols: width, dtype: 'f32' }, { data: b, rows: tokens, cols: width, dtype: 'f32' });
      const withNaN = a.slice();
      withNaN[1] = NaN;
      await acc.add({ data: withNaN, rows: tokens, cols: width, dtype: 'f32' }, { data: b, rows: tokens, cols: width, dtype: 'f32' });
      await acc.add({ data: a, rows: tokens, cols: width, dtype: 'f32' }, { data: b, rows: tokens, cols: width, dtype: 'f32' });
      const result = await acc.result();
      expect([result.mean[1], result.variance[1], result.max[1]]).toEqual([NaN, NaN, NaN]);
      expect(result.mean[0]).toBe(2);  // column 0: |0 − 0| and |4 − 0| → 2 every pair
      expect(result.variance[0]).toBe(0);
      acc.dispose();
    });
  });
});
