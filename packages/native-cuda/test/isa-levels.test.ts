// The CPU kernels are compiled once per instruction-set level (AVX-512, AVX2 + F16C, baseline; see
// native/common/cpu_isa.h) and the addon runs the best one the CPU has. FAIRPRUNE_CPU_ISA, read by the addon on
// every call, caps the level, so each level's code is checked here against the reference on any x86-64 machine that
// has the level (a machine without AVX-512 runs its AVX2 code twice). Shapes cover the vector tails, the 'cols' scan's
// column blocks (512 wide) with a partial last block and the row split, and every f16/bf16 bit pattern.
import { afterAll, describe, expect, test } from 'vitest';
import * as api from '../src/index.js';
import * as referenceKernels from '../src/reference/index.js';
import type { DType } from '../src/types.js';
import { checkDiff, checkScan, expectClose, expectSameNumbers, pairOf, randomElements, referenceIntended, relative } from './helpers.js';

const dtypes: DType[] = ['f32', 'f16', 'bf16'];
const savedCap = process.env['FAIRPRUNE_CPU_ISA'];
afterAll(() => {
  if (savedCap === undefined) delete process.env['FAIRPRUNE_CPU_ISA'];
  else process.env['FAIRPRUNE_CPU_ISA'] = savedCap;
});

test('the native addon is loaded (otherwise this file would check the reference against itself)', () => {
  expect(api.backendInfo().backend).toBe(referenceIntended ? 'reference' : 'native');
});

describe.each(['baseline', 'avx2', 'best'])('CPU level %s', (level) => {
  const useLevel = () => {
    if (level === 'best') delete process.env['FAIRPRUNE_CPU_ISA'];
    else process.env['FAIRPRUNE_CPU_ISA'] = level;
  };

  test.each(dtypes)('scanWeights %s, both axes, tails and column blocks', async (dtype) => {
    useLevel();
    // 1537×517 makes the 'cols' scan split rows into several ranges and merge them, even with 2 threads.
    for (const [rows, cols] of [[33, 2085], [40, 4100], [3, 37], [1537, 517]] as const) {
      const matrix = { data: randomElements(dtype, rows * cols, rows + cols), rows, cols, dtype };
      for (const axis of ['rows', 'cols'] as const) {
        checkScan(`${rows}×${cols} ${axis}`, await api.scanWeights(matrix, { axis, device: 'cpu' }),
          referenceKernels.scanWeights(matrix, axis));
      }
    }
  });

  test.each(['f16', 'bf16'] as const)('%s: all 65536 patterns through both scans', async (dtype) => {
    useLevel();
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    // One element per neuron ('cols' of one row), and 32-element rows / 2048-row columns through the vector loops.
    // Squares are taken in float, so the tiniest patterns' squares round (or underflow) by up to 2^-150 each: the
    // sumSquares tolerance adds that per element to the relative one.
    for (const [rows, cols, axis] of [[1, 65536, 'cols'], [2048, 32, 'rows'], [32, 2048, 'cols']] as const) {
      const matrix = { data: all, rows, cols, dtype };
      const actual = await api.scanWeights(matrix, { axis, device: 'cpu' });
      const expected = referenceKernels.scanWeights(matrix, axis);
      const label = `${rows}×${cols} ${axis}`, perNeuron = axis === 'rows' ? cols : rows;
      for (const key of ['max', 'min', 'maxAbs'] as const) expectSameNumbers(`${label} ${key}`, actual[key], expected[key]);
      expectClose(`${label} sum`, actual.sum, expected.sum, (i) => relative * Math.abs(expected.sumAbs[i]!));
      expectClose(`${label} sumAbs`, actual.sumAbs, expected.sumAbs, (i) => relative * Math.abs(expected.sumAbs[i]!));
      expectClose(`${label} sumSquares`, actual.sumSquares, expected.sumSquares,
        (i) => relative * Math.abs(expected.sumSquares[i]!) + perNeuron * 2 ** -150);
    }
  });

  test.each(dtypes)('activationDiffBatched %s with a width tail', async (dtype) => {
    useLevel();
    const pairs = 3, tokens = 19, width = 1061;
    const a = { data: randomElements(dtype, pairs * tokens * width, 1), pairs, tokens, width, dtype };
    const b = { data: randomElements(dtype, pairs * tokens * width, 2), pairs, tokens, width, dtype };
    const actual = await api.activationDiffBatched(a, b, { device: 'cpu' });
    const expected = referenceKernels.activationDiffBatched(a, b);
    for (let p = 0; p < pairs; p++) checkDiff(`pair ${p}`, pairOf(actual, p, width), pairOf(expected, p, width));
  });

  test.each(dtypes)('columnMeans %s with vector tails and several column blocks: equal to the reference', (dtype) => {
    useLevel();
    for (const [rows, cols] of [[19, 2085], [2, 37]] as const) {
      const matrix = { data: randomElements(dtype, rows * cols, rows + 7), rows, cols, dtype };
      expectSameNumbers(`${rows}×${cols}`, api.columnMeans(matrix), referenceKernels.columnMeans(matrix));
    }
  });
});
