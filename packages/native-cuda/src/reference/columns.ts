import type { ColumnOp, ElementData, MatrixView } from '../types.js';
import { bytesPerElement } from '../validate.js';
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

/** Reference column gather: out[r, k] = matrix[r, kept[k]], element bytes unchanged. Whole-element views when both
 *  sides are aligned to the element size (the fallback's speed), else byte by byte. */
export function gatherColumns(matrix: MatrixView, kept: Int32Array, out: ElementData): void {
  const { rows, cols } = matrix;
  const bytes = bytesPerElement(matrix.dtype);
  const source = new Uint8Array(matrix.data.buffer, matrix.data.byteOffset, matrix.data.byteLength);
  const target = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  if (source.byteOffset % bytes === 0 && target.byteOffset % bytes === 0) {
    const view = (bytesOf: Uint8Array, length: number) =>
      bytes === 2 ? new Uint16Array(bytesOf.buffer, bytesOf.byteOffset, length) : new Uint32Array(bytesOf.buffer, bytesOf.byteOffset, length);
    const from = view(source, rows * cols);
    const to = view(target, rows * kept.length);
    for (let r = 0; r < rows; r++) for (let k = 0; k < kept.length; k++) to[r * kept.length + k] = from[r * cols + kept[k]!]!;
    return;
  }
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < kept.length; k++) {
      for (let b = 0; b < bytes; b++) target[(r * kept.length + k) * bytes + b] = source[(r * cols + kept[k]!) * bytes + b]!;
    }
  }
}
