import type { ColumnOp, MatrixView } from '../types.js';
import { decodeElements } from './elements.js';

/** Reference column means: per column, the sum in double in row order divided by the row count, rounded to float. */
export function columnMeans(matrix: MatrixView): Float32Array {
  const { rows, cols } = matrix;
  const values = decodeElements(matrix.data, matrix.dtype, rows * cols);
  const sums = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) sums[c]! += values[r * cols + c]!;
  return Float32Array.from(sums, (s) => s / rows);
}

/** Reference fold of [rows, cols] float32 terms into per-column totals, row by row: v = Σ_k terms[k] (float adds in
 *  term order), then totals += v ('sum') or totals = max(totals, v) ('max'; NaN never replaces a total). */
export function accumulateColumns(totals: Float64Array, terms: readonly Float32Array[], rows: number, cols: number, op: ColumnOp): void {
  const v = new Float32Array(1);
  for (let p = 0; p < rows; p++) {
    for (let j = 0; j < cols; j++) {
      v[0] = terms[0]![p * cols + j]!;
      for (let k = 1; k < terms.length; k++) v[0] = v[0]! + terms[k]![p * cols + j]!;
      if (op === 'sum') totals[j]! += v[0]!;
      else if (v[0]! > totals[j]!) totals[j] = v[0]!;
    }
  }
}
