// Bad arguments are rejected in TS with a message naming the argument, and the C++ checks behind them hold too.
import { describe, expect, test } from 'vitest';
import { loadNativeAddon } from '../src/binding.js';
import { DiffAccumulator, activationDiff, activationDiffBatched, scanWeights } from '../src/index.js';
import { referenceIntended } from './helpers.js';

const f32 = (n: number) => new Float32Array(n);
const matrix = (rows: number, cols: number) => ({ data: f32(rows * cols), rows, cols, dtype: 'f32' as const });

describe('TS argument validation', () => {
  test.each([
    ['shape × dtype ≠ byte length', { data: f32(5), rows: 2, cols: 3, dtype: 'f32' }, /'matrix\.data'.*24 bytes \(shape \[2, 3\] × f32\)/],
    ['empty (rows 0)', { data: f32(0), rows: 0, cols: 3, dtype: 'f32' }, /'matrix\.rows'.*positive integer/],
    ['fractional cols', { data: f32(6), rows: 2, cols: 3.5, dtype: 'f32' }, /'matrix\.cols'/],
    ['unknown dtype', { data: f32(6), rows: 2, cols: 3, dtype: 'f64' }, /'matrix\.dtype'.*'f32' \| 'f16' \| 'bf16'/],
    ['Float32Array for f16', { data: f32(6), rows: 2, cols: 3, dtype: 'f16' }, /'matrix\.data'.*Uint16Array or Uint8Array/],
    ['Uint16Array for f32', { data: new Uint16Array(6), rows: 2, cols: 3, dtype: 'f32' }, /'matrix\.data'.*Float32Array or Uint8Array/],
    ['plain array', { data: [1, 2], rows: 1, cols: 2, dtype: 'f32' }, /'matrix\.data'/],
  ])('scanWeights rejects %s', async (_, bad, message) => {
    await expect(scanWeights(bad as never, { axis: 'rows' })).rejects.toThrow(message);
  });

  test('scanWeights rejects a bad axis or device', async () => {
    await expect(scanWeights(matrix(2, 2), { axis: 'columns' } as never)).rejects.toThrow(/'options\.axis'.*'rows' \| 'cols'.*'columns'/);
    await expect(scanWeights(matrix(2, 2), { axis: 'rows', device: 'gpu' } as never)).rejects.toThrow(/'options\.device'/);
    await expect(scanWeights(matrix(2, 2), undefined as never)).rejects.toThrow(/'options'/);
  });

  test('activationDiff needs a and b of one shape and dtype', async () => {
    await expect(activationDiff(matrix(2, 3), matrix(3, 2))).rejects.toThrow(/'b\.rows'.*same as a\.rows/);
    await expect(activationDiff(matrix(2, 3), { data: new Uint16Array(6), rows: 2, cols: 3, dtype: 'bf16' })).rejects.toThrow(/'b\.dtype'/);
    await expect(activationDiffBatched({ data: f32(6), pairs: 2, tokens: 1, width: 3, dtype: 'f32' },
      { data: f32(5), pairs: 2, tokens: 1, width: 3, dtype: 'f32' })).rejects.toThrow(/'b\.data'.*24 bytes/);
  });

  test('DiffAccumulator checks width, statistic and each pair', async () => {
    expect(() => new DiffAccumulator(0)).toThrow(/'width'/);
    expect(() => new DiffAccumulator(3, { statistic: 'median' as never })).toThrow(/'options\.statistic'/);
    const acc = new DiffAccumulator(3);
    expect(() => acc.add(matrix(2, 4), matrix(2, 4))).toThrow(/'a\.width'.*3 \(the accumulator's width\)/);
    acc.dispose();
    expect(() => acc.add(matrix(2, 3), matrix(2, 3))).toThrow(/disposed/);
  });
});

describe('C++ argument checks (direct addon calls)', () => {
  const load = loadNativeAddon();
  test('the addon loaded', () => {
    expect(load.addon !== undefined || referenceIntended, 'error' in load ? load.error : '').toBe(true);
  });
  test.skipIf(!load.addon)('wrong byte length, dtype, axis and array type become errors naming the argument', () => {
    const addon = load.addon!;
    expect(() => addon.scanWeights(f32(3), 2, 2, 'f32', 'rows', 'cpu')).toThrow(/scanWeights: argument 'data' has 12 bytes but its shape and dtype need 16/);
    expect(() => addon.scanWeights(f32(4), 2, 2, 'f8' as never, 'rows', 'cpu')).toThrow(/argument 'dtype'/);
    expect(() => addon.scanWeights(f32(4), 2, 2, 'f32', 'diag' as never, 'cpu')).toThrow(/argument 'axis'/);
    expect(() => addon.scanWeights(new Int32Array(4) as never, 2, 2, 'f32', 'rows', 'cpu')).toThrow(TypeError);
    expect(() => addon.scanWeights(f32(4), 0, 2, 'f32', 'rows', 'cpu')).toThrow(/argument 'rows' must be a positive integer/);
    expect(() => addon.activationDiff(f32(4), f32(3), 1, 2, 2, 'f32', 'cpu')).toThrow(/argument 'b' has 12 bytes/);
    expect(() => new addon.DiffAccumulator(4, 'mean' as never, 'cpu')).toThrow(/argument 'statistic'/);
  });
});
