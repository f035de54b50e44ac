// Bad arguments are rejected in TS with a message naming the argument, and the C++ checks behind them hold too.
import { describe, expect, test } from 'vitest';
import { loadNativeAddon } from '../src/binding.js';
import { accumulateColumns, activationDiff, activationDiffBatched, columnMeans, gatherColumns, scanWeights } from '../src/index.js';
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

  test('columnMeans checks its matrix; accumulateColumns its totals, terms, shape and op', () => {
    expect(() => columnMeans({ data: f32(5), rows: 2, cols: 3, dtype: 'f32' })).toThrow(/columnMeans: argument 'matrix\.data'.*24 bytes/);
    const totals = new Float64Array(3);
    expect(() => accumulateColumns(totals, [f32(6)], { rows: 2, cols: 3 }, 'mean' as never)).toThrow(/'op'.*'sum' \| 'max'/);
    expect(() => accumulateColumns(f32(3) as never, [f32(6)], { rows: 2, cols: 3 }, 'sum')).toThrow(/'totals'.*Float64Array/);
    expect(() => accumulateColumns(new Float64Array(4), [f32(6)], { rows: 2, cols: 3 }, 'sum')).toThrow(/'totals'.*3 values/);
    expect(() => accumulateColumns(totals, [], { rows: 2, cols: 3 }, 'sum')).toThrow(/'terms'.*non-empty/);
    expect(() => accumulateColumns(totals, [f32(6), f32(5)], { rows: 2, cols: 3 }, 'sum')).toThrow(/'terms\[1\]'.*6 values/);
    expect(() => accumulateColumns(totals, [new Float64Array(6) as never], { rows: 2, cols: 3 }, 'sum')).toThrow(/'terms\[0\]'.*Float32Array/);
    expect(() => accumulateColumns(totals, [f32(6)], { rows: 0, cols: 3 }, 'sum')).toThrow(/'shape\.rows'/);
  });

  test('gatherColumns checks its matrix, the kept columns and the output', () => {
    const m = { data: f32(6), rows: 2, cols: 3, dtype: 'f32' as const };
    expect(() => gatherColumns(m, Int32Array.from([0, 2]), f32(3))).toThrow(/gatherColumns: argument 'out': expected 16 bytes/);
    expect(() => gatherColumns(m, [0, 2] as never, f32(4))).toThrow(/argument 'kept': expected an Int32Array/);
    expect(() => gatherColumns(m, Int32Array.from([2, 2]), f32(4))).toThrow(/argument 'kept\[1\]': expected a column index below 3, above kept\[0\] but received 2/);
    expect(() => gatherColumns(m, Int32Array.from([-1]), f32(2))).toThrow(/argument 'kept\[0\]'.*received -1/);
    expect(() => gatherColumns(m, Int32Array.from([0]), new Uint16Array(4))).toThrow(/argument 'out': expected a Float32Array or Uint8Array/);
    const shared = f32(10);
    expect(() => gatherColumns({ ...m, data: shared.subarray(0, 6) }, Int32Array.from([0, 2]), shared.subarray(4, 8))).toThrow(/'out': expected storage not overlapping the input/);
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
    expect(() => addon.columnMeans(f32(5), 2, 3, 'f32')).toThrow(/columnMeans: argument 'data' has 20 bytes but its shape and dtype need 24/);
    expect(() => addon.accumulateColumns(new Float64Array(3), [f32(6)], 2, 3, 'mean' as never)).toThrow(/argument 'op'/);
    expect(() => addon.accumulateColumns(new Float64Array(2), [f32(6)], 2, 3, 'sum')).toThrow(/argument 'totals' has 2 values but cols is 3/);
    expect(() => addon.accumulateColumns(new Float64Array(3), [f32(5)], 2, 3, 'sum')).toThrow(/argument 'terms\[0\]' has 5 values/);
    expect(() => addon.accumulateColumns(new Float64Array(3), [new Uint16Array(6) as never], 2, 3, 'sum')).toThrow(TypeError);
    expect(() => addon.accumulateColumns(new Float64Array(3), [], 2, 3, 'sum')).toThrow(/argument 'terms' is empty/);
    expect(() => (addon.columnMeans as (...args: unknown[]) => unknown)(f32(6), 2, 3)).toThrow(/expected 4 arguments/);
    const kept = Int32Array.from([0, 2]);
    expect(() => addon.gatherColumns(f32(5), 2, 3, 'f32', kept, f32(4))).toThrow(/gatherColumns: argument 'data' has 20 bytes but its shape and dtype need 24/);
    expect(() => addon.gatherColumns(f32(6), 2, 3, 'f32', Int32Array.from([2, 1]), f32(4))).toThrow(/argument 'kept' must be strictly increasing column indices below 3, got 1 at 1/);
    expect(() => addon.gatherColumns(f32(6), 2, 3, 'f32', Int32Array.from([0, 3]), f32(4))).toThrow(/argument 'kept'.*got 3 at 1/);
    expect(() => addon.gatherColumns(f32(6), 2, 3, 'f32', [0, 2] as never, f32(4))).toThrow(/argument 'kept' must be an Int32Array/);
    expect(() => addon.gatherColumns(f32(6), 2, 3, 'f32', kept, f32(3))).toThrow(/argument 'out' has 12 bytes but its shape and dtype need 16/);
    const shared = f32(10);
    expect(() => addon.gatherColumns(shared.subarray(0, 6), 2, 3, 'f32', kept, shared.subarray(5, 9))).toThrow(/arguments 'data' and 'out' overlap/);
  });
});
