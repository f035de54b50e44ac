// Grounds the TS reference: it is checked against plainly written double-precision loops and an independent
// bit-level decoding of every f16/bf16 pattern, so "matches the reference" means "is correct".
import { describe, expect, test } from 'vitest';
import { reference } from '../src/index.js';
import { expectSameNumbers, randomElements, rng } from './helpers.js';

// Independent decoders: build the binary32 bit pattern (f16 normals/Inf/NaN) or use exact arithmetic (subnormals).
function f16ByBits(h: number): number {
  const sign = h >> 15, exponent = (h >> 10) & 31, mantissa = h & 1023;
  if (exponent === 0) return (sign ? -1 : 1) * (mantissa / 16777216);
  const bits = exponent === 31 ? (sign << 31) | (0xff << 23) | (mantissa << 13) : (sign << 31) | ((exponent - 15 + 127) << 23) | (mantissa << 13);
  return new Float32Array(new Uint32Array([bits >>> 0]).buffer)[0]!;
}
function bf16ByBits(h: number): number {
  return new DataView(new Uint8Array([0, 0, h & 0xff, h >> 8]).buffer).getFloat32(0, true);
}

describe('reference element decoding', () => {
  test('every f16 pattern decodes exactly (subnormals, ±0, ±Inf, NaN)', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const decoded = reference.decodeElements(all, 'f16', 65536);
    expectSameNumbers('f16', decoded, Array.from(all, f16ByBits));
    expect(decoded[0x0001]).toBe(2 ** -24);
    expect(decoded[0x3c00]).toBe(1);
    expect(decoded[0x7bff]).toBe(65504);
    expect(decoded[0xfc00]).toBe(-Infinity);
    expect(decoded[0x7e00]).toBeNaN();
  });

  test('every bf16 pattern decodes exactly', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const decoded = reference.decodeElements(all, 'bf16', 65536);
    expectSameNumbers('bf16', decoded, Array.from(all, bf16ByBits));
    expect(decoded[0x3f80]).toBe(1);
  });
});

describe('reference kernels vs naive loops', () => {
  test('scanWeights on both axes equals per-neuron double loops', () => {
    const rows = 13, cols = 7;
    const data = randomElements('f32', rows * cols, 11) as Float32Array;
    for (const axis of ['rows', 'cols'] as const) {
      const stats = reference.scanWeights({ data, rows, cols, dtype: 'f32' }, axis);
      const neurons = axis === 'rows' ? rows : cols;
      for (let n = 0; n < neurons; n++) {
        const values: number[] = [];
        for (let k = 0; k < (axis === 'rows' ? cols : rows); k++) values.push(axis === 'rows' ? data[n * cols + k]! : data[k * cols + n]!);
        const round = Math.fround;
        expect(stats.max[n]).toBe(round(Math.max(...values)));
        expect(stats.min[n]).toBe(round(Math.min(...values)));
        expect(stats.maxAbs[n]).toBe(round(Math.max(...values.map(Math.abs))));
        expect(stats.sum[n]).toBe(round(values.reduce((s, v) => s + v, 0)));
        expect(stats.sumSquares[n]).toBe(round(values.reduce((s, v) => s + v * v, 0)));
        expect(stats.sumAbs[n]).toBe(round(values.reduce((s, v) => s + Math.abs(v), 0)));
      }
      expect(stats.count).toBe(axis === 'rows' ? cols : rows);
    }
  });

  test('scanWeights marks a NaN neuron entirely NaN and lets ±Inf through', () => {
    // rows: [NaN, 1], [Inf, -Inf], [Inf, 2]
    const data = Float32Array.from([NaN, 1, Infinity, -Infinity, Infinity, 2]);
    const stats = reference.scanWeights({ data, rows: 3, cols: 2, dtype: 'f32' }, 'rows');
    for (const key of ['max', 'min', 'maxAbs', 'sum', 'sumSquares', 'sumAbs'] as const) expect(stats[key][0]).toBeNaN();
    expect([stats.max[1], stats.min[1], stats.maxAbs[1], stats.sumAbs[1]]).toEqual([Infinity, -Infinity, Infinity, Infinity]);
    expect(stats.sum[1]).toBeNaN();
    expect([stats.max[2], stats.min[2], stats.sum[2], stats.sumSquares[2]]).toEqual([Infinity, 2, Infinity, Infinity]);
  });

  test('activationDiff equals the three definitions written out', () => {
    const tokens = 5, width = 3;
    const a = randomElements('f32', tokens * width, 21) as Float32Array;
    const b = randomElements('f32', tokens * width, 22) as Float32Array;
    const diff = reference.activationDiff({ data: a, rows: tokens, cols: width, dtype: 'f32' }, { data: b, rows: tokens, cols: width, dtype: 'f32' });
    let total = 0;
    for (let j = 0; j < width; j++) {
      let abs = 0, meanA = 0, meanB = 0;
      for (let t = 0; t < tokens; t++) {
        abs += Math.abs(a[t * width + j]! - b[t * width + j]!) / tokens;
        meanA += a[t * width + j]! / tokens;
        meanB += b[t * width + j]! / tokens;
        total += Math.abs(a[t * width + j]! - b[t * width + j]!);
      }
      expect(diff.positionwise[j]).toBeCloseTo(abs, 6);
      expect(diff.pooled[j]).toBeCloseTo(Math.abs(meanA - meanB), 6);
    }
    expect(diff.meanAbs).toBeCloseTo(total / (tokens * width), 12);
  });

  test('columnMeans and accumulateColumns equal the definitions written out', () => {
    const random = rng(5);
    const rows = 4, cols = 3;
    const data = Float32Array.from({ length: rows * cols }, () => random() * 4 - 2);
    const means = reference.columnMeans({ data, rows, cols, dtype: 'f32' });
    for (let j = 0; j < cols; j++) {
      expect(means[j]).toBe(Math.fround((data[j]! + data[cols + j]! + data[2 * cols + j]! + data[3 * cols + j]!) / rows));
    }
    const other = Float32Array.from({ length: rows * cols }, () => random());
    const sums = new Float64Array(cols);
    const maxes = new Float64Array(cols).fill(-Infinity);
    reference.accumulateColumns(sums, [data, other], rows, cols, 'sum');
    reference.accumulateColumns(maxes, [data, other], rows, cols, 'max');
    for (let j = 0; j < cols; j++) {
      const perRow = Array.from({ length: rows }, (_, p) => Math.fround(data[p * cols + j]! + other[p * cols + j]!));
      expect(sums[j]).toBe(perRow.reduce((s, v) => s + v, 0));
      expect(maxes[j]).toBe(Math.max(...perRow));
    }
  });

  test('gatherColumns copies the kept columns of each row, bit patterns unchanged, aligned or not', () => {
    // f16 bit patterns including a NaN payload and -0: a copy, never a conversion.
    const data = Uint16Array.from([0x7e01, 0x8000, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const kept = Int32Array.from([0, 1, 3]);
    const out = new Uint16Array(9);
    reference.gatherColumns({ data, rows: 3, cols: 4, dtype: 'f16' }, kept, out);
    expect(Array.from(out)).toEqual([0x7e01, 0x8000, 4, 5, 6, 8, 9, 10, 12]);
    const bytes = new Uint8Array(new ArrayBuffer(40), 1, 36);
    bytes.set(new Uint8Array(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]).buffer));
    const odd = new Uint8Array(new ArrayBuffer(20), 3, 12);
    reference.gatherColumns({ data: bytes, rows: 3, cols: 3, dtype: 'f32' }, Int32Array.from([2]), odd);
    expect(Array.from(new Float32Array(odd.slice().buffer))).toEqual([3, 6, 9]);
  });
});
