import type { DiffAccumulatorResult, DiffStatistic, MatrixView, TensorView3 } from '../types.js';
import { activationDiffBatched } from './activationDiff.js';

/** Reference accumulator: Welford's running mean/M2 in double plus max, fed the float32 statistic vectors that the
 *  reference activation difference returns (as the native accumulator is). A NaN statistic sticks. */
export class ReferenceDiffAccumulator {
  private count = 0;
  private readonly mean: Float64Array;
  private readonly m2: Float64Array;
  private readonly max: Float32Array;

  constructor(readonly width: number, readonly statistic: DiffStatistic) {
    this.mean = new Float64Array(width);
    this.m2 = new Float64Array(width);
    this.max = new Float32Array(width).fill(-Infinity);
  }

  add(a: MatrixView, b: MatrixView): void {
    this.addBatched(
      { data: a.data, pairs: 1, tokens: a.rows, width: a.cols, dtype: a.dtype },
      { data: b.data, pairs: 1, tokens: b.rows, width: b.cols, dtype: b.dtype },
    );
  }

  addBatched(a: TensorView3, b: TensorView3): void {
    for (const diff of activationDiffBatched(a, b)) {
      const values = diff[this.statistic];
      this.count++;
      for (let j = 0; j < this.width; j++) {
        const x = values[j]!;
        const delta = x - this.mean[j]!;
        this.mean[j]! += delta / this.count;
        this.m2[j]! += delta * (x - this.mean[j]!);
        if (x > this.max[j]! || Number.isNaN(x)) this.max[j] = x;
      }
    }
  }

  result(): DiffAccumulatorResult {
    const variance = new Float32Array(this.width);
    for (let j = 0; j < this.width; j++) variance[j] = this.count === 0 ? 0 : this.m2[j]! / this.count;
    return { count: this.count, mean: Float32Array.from(this.mean), variance, max: Float32Array.from(this.max) };
  }
}
