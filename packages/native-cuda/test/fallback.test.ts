// Without the addon the package still works through the reference and says so once, with the fix.
import { afterEach, expect, test, vi } from 'vitest';
import * as referenceKernels from '../src/reference/index.js';
import { randomElements } from './helpers.js';

afterEach(() => {
  vi.restoreAllMocks();
  vi.resetModules();
});

test('a missing addon falls back to the reference, announces it once on stderr and refuses device cuda', async () => {
  const saved = process.env['FAIRPRUNE_NATIVE_ADDON'];
  process.env['FAIRPRUNE_NATIVE_ADDON'] = '/nonexistent/fairprune_native.node';
  vi.resetModules();
  const api = await import('../src/index.js');
  if (saved === undefined) delete process.env['FAIRPRUNE_NATIVE_ADDON'];
  else process.env['FAIRPRUNE_NATIVE_ADDON'] = saved;

  const info = api.backendInfo();
  expect(info.backend).toBe('reference');
  expect(info.reason).toMatch(/nonexistent.*npx nx run @fairprune\/native-cuda:build-native/);
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  const matrix = { data: randomElements('f16', 35, 1), rows: 5, cols: 7, dtype: 'f16' as const };
  const stats = await api.scanWeights(matrix, { axis: 'cols' });
  await api.scanWeights(matrix, { axis: 'rows' });
  expect(stderr).toHaveBeenCalledTimes(1);
  expect(String(stderr.mock.calls[0]![0])).toMatch(/TypeScript reference.*build-native/);
  expect(Array.from(stats.maxAbs)).toEqual(Array.from(referenceKernels.scanWeights(matrix, 'cols').maxAbs));
  await expect(api.scanWeights(matrix, { axis: 'rows', device: 'cuda' })).rejects.toThrow(/device 'cuda' needs the native addon/);
  expect(Array.from(api.columnMeans(matrix))).toEqual(Array.from(referenceKernels.columnMeans(matrix)));
  const totals = new Float64Array(7);
  api.accumulateColumns(totals, [Float32Array.from({ length: 14 }, (_, i) => i)], { rows: 2, cols: 7 }, 'max');
  expect(Array.from(totals)).toEqual([7, 8, 9, 10, 11, 12, 13]);
  const gathered = new Uint16Array(10);
  api.gatherColumns(matrix, Int32Array.from([1, 6]), gathered);
  expect(Array.from(gathered)).toEqual(Array.from({ length: 5 }, (_, r) => [matrix.data[r * 7 + 1]!, matrix.data[r * 7 + 6]!]).flat());
  expect(stderr).toHaveBeenCalledTimes(1);
});
