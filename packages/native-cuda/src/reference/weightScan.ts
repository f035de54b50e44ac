import type { Axis, MatrixView, WeightStats } from '../types.js';
import { decodeElements } from './elements.js';

/** Reference weight scan: plain double-precision loops over the decoded matrix. Defines what the native kernels
 *  must return (NaN in a neuron → all six statistics NaN; ±Inf by IEEE arithmetic). */
export function scanWeights(matrix: MatrixView, axis: Axis): WeightStats {
  const { rows, cols } = matrix;
  const values = decodeElements(matrix.data, matrix.dtype, rows * cols);
  const neurons = axis === 'rows' ? rows : cols;
  const count = axis === 'rows' ? cols : rows;
  const max = new Float64Array(neurons).fill(-Infinity);
  const min = new Float64Array(neurons).fill(Infinity);
  const maxAbs = new Float64Array(neurons);
  const sum = new Float64Array(neurons);
  const sumSquares = new Float64Array(neurons);
  const sumAbs = new Float64Array(neurons);
  const hasNaN = new Uint8Array(neurons);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c]!;
      const n = axis === 'rows' ? r : c;
      if (Number.isNaN(v)) hasNaN[n] = 1;
      if (v > max[n]!) max[n] = v;
      if (v < min[n]!) min[n] = v;
      if (Math.abs(v) > maxAbs[n]!) maxAbs[n] = Math.abs(v);
      sum[n]! += v;
      sumSquares[n]! += v * v;
      sumAbs[n]! += Math.abs(v);
    }
  }
  for (let n = 0; n < neurons; n++) {
    if (hasNaN[n]) max[n] = min[n] = maxAbs[n] = NaN;
  }
  return {
    max: Float32Array.from(max), min: Float32Array.from(min), maxAbs: Float32Array.from(maxAbs),
    sum: Float32Array.from(sum), sumSquares: Float32Array.from(sumSquares), sumAbs: Float32Array.from(sumAbs),
    count,
  };
}
