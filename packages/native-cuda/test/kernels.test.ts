// Every native kernel against the TS reference (itself grounded in reference.test.ts), for each addon build:
// the auto build (CUDA compiled in when nvcc was found) and the CPU-only build.
//
// Tolerances: max/min/maxAbs must match exactly (the f16/bf16 → f32 conversions are exact and comparisons don't
// round). The reference sums in double; the kernels sum in float over at most 16 values per lane (a − b in float
// too), then in double, then round to float32. The float runs bound the error by about 16·2^-24 ≈ 1e-6 of the
// sum of magnitudes, so the tolerance is 2e-6 relative to the magnitude that bounds the rounding: sumAbs for the
// signed sum (which can cancel), positionwise for pooled (|Σd| ≤ Σ|d|), and the value itself otherwise.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import * as referenceKernels from '../src/reference/index.js';
import type { DType, ElementData, WeightStats } from '../src/types.js';
import { addonExists, addonsUnderTest, checkDiff, checkScan, expectSameNumbers, misaligned, pairOf, randomElements, referenceIntended, rng } from './helpers.js';

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
          expect([batched.positionwise.length, batched.pooled.length, batched.meanAbs.length]).toEqual([pairs * width, pairs * width, pairs]);
          const bytes = tokens * width * (dtype === 'f32' ? 4 : 2);
          for (let p = 0; p < pairs; p++) {
            checkDiff(`pair ${p}`, pairOf(batched, p, width), pairOf(expected, p, width));
            const slice = (data: ElementData) => new Uint8Array(data.buffer, data.byteOffset + p * bytes, bytes);
            const single = await api.activationDiff({ data: slice(a.data), rows: tokens, cols: width, dtype },
              { data: slice(b.data), rows: tokens, cols: width, dtype });
            expectSameNumbers(`single ${p} positionwise`, single.positionwise, pairOf(batched, p, width).positionwise);
            expectSameNumbers(`single ${p} pooled`, single.pooled, pairOf(batched, p, width).pooled);
            expect(single.meanAbs).toBe(batched.meanAbs[p]);
          }
        });
      }
    }

    test('Llama-3.2-1B shape: 16 layers × 16 tokens × 8192, bf16', async () => {
      const shape = { pairs: 16, tokens: 16, width: 8192, dtype: 'bf16' as const };
      const a = { ...shape, data: randomElements('bf16', 16 * 16 * 8192, 3) };
      const b = { ...shape, data: randomElements('bf16', 16 * 16 * 8192, 4) };
      const actual = await api.activationDiffBatched(a, b, { device: 'cpu' });
      const expected = referenceKernels.activationDiffBatched(a, b);
      for (let p = 0; p < 16; p++) checkDiff(`pair ${p}`, pairOf(actual, p, 8192), pairOf(expected, p, 8192));
    });

    test.skipIf(referenceIntended)('meanAbs does not depend on the thread count or on the pairs sharing the call', () => {
      // FAIRPRUNE_THREADS is read once per process, so each count runs in its own process on the same data, whose
      // magnitudes span 60 decades so that summing the columns in another grouping would round differently.
      const script = `
        const addon = require(${JSON.stringify(path)});
        const data = (seed) => Float32Array.from({ length: 2 * 16 * 8192 }, (_, i) => Math.sin(i * seed) * 10 ** ((i % 61) - 30));
        const [a, b] = [data(0.37), data(0.71)];
        Promise.all([addon.activationDiff(a, b, 2, 16, 8192, 'f32', 'cpu'),
          addon.activationDiff(a.subarray(0, 16 * 8192), b.subarray(0, 16 * 8192), 1, 16, 8192, 'f32', 'cpu')])
          .then(([both, first]) => console.log(JSON.stringify([...both.meanAbs, ...first.meanAbs])));`;
      const run = (threads: string) =>
        JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, FAIRPRUNE_THREADS: threads }, encoding: 'utf8' })) as number[];
      const [one, three, sixteen] = [run('1'), run('3'), run('16')];
      expect(three).toEqual(one);
      expect(sixteen).toEqual(one);
      expect(one[2]).toBe(one[0]);  // pair 0 alone = pair 0 batched with pair 1
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

  describe('columnMeans', () => {
    // The kernel and the reference both sum in double in row order, so they agree exactly.
    for (const [rows, cols] of [[1, 1], [7, 13], [16, 8192], [33, 2085], [3, 1031]] as const) {
      for (const dtype of dtypes) {
        test(`${rows}×${cols} ${dtype} equals the reference exactly`, () => {
          const matrix = { data: randomElements(dtype, rows * cols, rows * 31 + cols), rows, cols, dtype };
          expectSameNumbers('means', api.columnMeans(matrix), referenceKernels.columnMeans(matrix));
        });
      }
    }

    test('a misaligned view (byteOffset 1) gives the aligned result', () => {
      for (const dtype of dtypes) {
        const matrix = { data: randomElements(dtype, 9 * 131, 8), rows: 9, cols: 131, dtype };
        expectSameNumbers(dtype, api.columnMeans({ ...matrix, data: misaligned(matrix.data, 1) }), referenceKernels.columnMeans(matrix));
      }
    });

    test('NaN and ±Inf propagate; a column of one row is that row', () => {
      const data = Float32Array.from([1, NaN, Infinity, Infinity, 3, 2, 1, -Infinity]);
      expect(Array.from(api.columnMeans({ data, rows: 2, cols: 4, dtype: 'f32' }))).toEqual([2, NaN, Infinity, NaN]);
      expect(Array.from(api.columnMeans({ data, rows: 1, cols: 8, dtype: 'f32' }))).toEqual(Array.from(data));
    });
  });

  describe('gatherColumns', () => {
    /** Columns kept at random (seeded), each dropped with probability `dropShare`; column 0 always kept: uneven runs. */
    const keptColumns = (cols: number, dropShare: number, seed: number) => {
      const random = rng(seed);
      return Int32Array.from({ length: cols }, (_, c) => c).filter((c) => c === 0 || random() >= dropShare);
    };
    const bytesOf = (data: ElementData) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    for (const [rows, cols, dropShare] of [[1, 1, 0], [5, 37, 0.1], [64, 14336, 0.1], [3, 1031, 0.9], [700, 40, 0.5]] as const) {
      for (const dtype of dtypes) {
        test(`${rows}×${cols} ${dtype}, ${dropShare * 100}% dropped: the reference's bytes`, () => {
          const matrix = { data: randomElements(dtype, rows * cols, rows + cols), rows, cols, dtype };
          const kept = keptColumns(cols, dropShare, cols);
          const outBytes = rows * kept.length * (dtype === 'f32' ? 4 : 2);
          const [actual, expected] = [new Uint8Array(outBytes), new Uint8Array(outBytes)];
          api.gatherColumns(matrix, kept, actual);
          referenceKernels.gatherColumns(matrix, kept, expected);
          expect(Buffer.compare(actual, expected)).toBe(0);
        });
      }
    }

    test('misaligned input and output views (byteOffset 1 and 3) give the aligned bytes', () => {
      for (const dtype of dtypes) {
        const matrix = { data: randomElements(dtype, 9 * 131, 8), rows: 9, cols: 131, dtype };
        const kept = keptColumns(131, 0.3, 2);
        const expected = new Uint8Array(9 * kept.length * (dtype === 'f32' ? 4 : 2));
        referenceKernels.gatherColumns(matrix, kept, expected);
        const out = misaligned(new Uint8Array(expected.length), 3);
        api.gatherColumns({ ...matrix, data: misaligned(matrix.data, 1) }, kept, out);
        expect(Buffer.compare(out, expected)).toBe(0);
        expect(Buffer.compare(bytesOf(matrix.data).subarray(0, 2), out.subarray(0, 2))).toBe(0);
      }
    });
  });

  describe('accumulateColumns', () => {
    for (const op of ['sum', 'max'] as const) {
      for (const [rows, cols, termCount] of [[1, 1, 1], [8, 8192, 2], [3, 1031, 3]] as const) {
        test(`${op}: ${termCount} terms of [${rows}, ${cols}] into running totals equal the reference exactly`, () => {
          const terms = Array.from({ length: termCount }, (_, k) => randomElements('f32', rows * cols, 90 + k) as Float32Array);
          const start = Float64Array.from(randomElements('f32', cols, 89) as Float32Array);
          const [actual, expected] = [start.slice(), start.slice()];
          api.accumulateColumns(actual, terms, { rows, cols }, op);
          referenceKernels.accumulateColumns(expected, terms, rows, cols, op);
          expectSameNumbers(op, actual, expected);
        });
      }
    }

    test('independent check: float sum of the terms per row, then double sum or max over rows; NaN never wins a max', () => {
      const gate = Float32Array.from([0.1, NaN, 5, 1e8, 2, 3]);
      const up = Float32Array.from([0.2, 1, 1, 1, 4, -3]);
      const sums = new Float64Array(3);
      const maxes = new Float64Array(3).fill(-Infinity);
      api.accumulateColumns(sums, [gate, up], { rows: 2, cols: 3 }, 'sum');
      api.accumulateColumns(maxes, [gate, up], { rows: 2, cols: 3 }, 'max');
      const f = Math.fround;
      expect(Array.from(sums)).toEqual([f(f(0.1) + f(0.2)) + f(1e8 + 1), NaN, f(5 + 1) + 0]);
      expect(Array.from(maxes)).toEqual([f(1e8 + 1), 6, 6]);
    });
  });
});
