import type { ActivationDiff, DType, ElementData, MatrixView, TensorView3 } from '../types.js';
import { decodeElements } from './elements.js';

function diffOfDecoded(a: Float64Array, b: Float64Array, offset: number, tokens: number, width: number): ActivationDiff {
  const sumAbs = new Float64Array(width);
  const sumA = new Float64Array(width);
  const sumB = new Float64Array(width);
  let total = 0;
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < width; j++) {
      const x = a[offset + t * width + j]!;
      const y = b[offset + t * width + j]!;
      const d = Math.abs(x - y);
      sumAbs[j]! += d;
      sumA[j]! += x;
      sumB[j]! += y;
      total += d;
    }
  }
  const positionwise = new Float32Array(width);
  const pooled = new Float32Array(width);
  for (let j = 0; j < width; j++) {
    positionwise[j] = sumAbs[j]! / tokens;
    pooled[j] = Math.abs(sumA[j]! / tokens - sumB[j]! / tokens);
  }
  return { positionwise, pooled, meanAbs: total / (tokens * width) };
}

/** Reference activation difference of two [tokens, width] matrices, in double precision. */
export function activationDiff(a: MatrixView, b: MatrixView): ActivationDiff {
  return activationDiffBatched(
    { data: a.data, pairs: 1, tokens: a.rows, width: a.cols, dtype: a.dtype },
    { data: b.data, pairs: 1, tokens: b.rows, width: b.cols, dtype: b.dtype },
  )[0]!;
}

/** Reference batched activation difference: one result per pair of [pairs, tokens, width] tensors. */
export function activationDiffBatched(a: TensorView3, b: TensorView3): ActivationDiff[] {
  const count = a.pairs * a.tokens * a.width;
  const decode = (data: ElementData, dtype: DType) => decodeElements(data, dtype, count);
  const da = decode(a.data, a.dtype);
  const db = decode(b.data, b.dtype);
  const results: ActivationDiff[] = [];
  for (let p = 0; p < a.pairs; p++) results.push(diffOfDecoded(da, db, p * a.tokens * a.width, a.tokens, a.width));
  return results;
}
