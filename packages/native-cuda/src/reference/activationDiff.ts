import type { ActivationDiff, ActivationDiffBatch, DType, ElementData, MatrixView, TensorView3 } from '../types.js';
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
  const count = a.rows * a.cols;
  return diffOfDecoded(decodeElements(a.data, a.dtype, count), decodeElements(b.data, b.dtype, count), 0, a.rows, a.cols);
}

/** Reference batched activation difference of [pairs, tokens, width] tensors: [pairs, width] results, pair-major. */
export function activationDiffBatched(a: TensorView3, b: TensorView3): ActivationDiffBatch {
  const count = a.pairs * a.tokens * a.width;
  const decode = (data: ElementData, dtype: DType) => decodeElements(data, dtype, count);
  const da = decode(a.data, a.dtype);
  const db = decode(b.data, b.dtype);
  const batch: ActivationDiffBatch = {
    positionwise: new Float32Array(a.pairs * a.width), pooled: new Float32Array(a.pairs * a.width), meanAbs: new Float64Array(a.pairs),
  };
  for (let p = 0; p < a.pairs; p++) {
    const one = diffOfDecoded(da, db, p * a.tokens * a.width, a.tokens, a.width);
    batch.positionwise.set(one.positionwise, p * a.width);
    batch.pooled.set(one.pooled, p * a.width);
    batch.meanAbs[p] = one.meanAbs;
  }
  return batch;
}
