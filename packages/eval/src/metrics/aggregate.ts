import { PythonRandom } from './python-random.js';

/**
 * Aggregations and standard errors exactly as lm-evaluation-harness computes them
 * (`lm_eval/api/metrics.py`): `mean`, `mean_stderr` (sample stddev with n−1, over sqrt(n)),
 * `perplexity` = exp(−mean of per-document log-likelihoods), and `bootstrap_stderr` for perplexity.
 */

/** Python's `sum(xs) / len(xs)`: left-to-right double additions, so results match to the last bit. */
export function mean(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('mean of an empty list');
  let total = 0;
  for (const x of xs) total += x;
  return total / xs.length;
}

/** `sample_stddev`: sqrt(Σ(x−μ)² / (n−1)). */
export function sampleStddev(xs: readonly number[]): number {
  const mu = mean(xs);
  let total = 0;
  for (const x of xs) total += (x - mu) ** 2;
  return Math.sqrt(total / (xs.length - 1));
}

/** `mean_stderr`: the harness's stderr for `acc` (for 0/1 data, sqrt(p(1−p)/(n−1))). */
export function meanStderr(xs: readonly number[]): number {
  return sampleStddev(xs) / Math.sqrt(xs.length);
}

/** The harness's `perplexity` aggregation over per-document summed log-likelihoods. */
export function perplexity(logLikelihoods: readonly number[]): number {
  return Math.exp(-mean(logLikelihoods));
}

/**
 * `bootstrap_stderr(perplexity, xs, iters)`: `iters // min(1000, iters)` chunks of `min(1000, iters)` resamples;
 * chunk i draws with `random.Random(i).choices(xs, k=len(xs))`; the result is the sample stddev of all resampled
 * perplexities. The harness's default is 100000 iterations.
 */
export function bootstrapPerplexityStderr(logLikelihoods: readonly number[], iterations: number): number {
  if (!Number.isInteger(iterations) || iterations <= 0) {
    throw new Error(`bootstrap iterations must be a positive integer, got ${iterations}`);
  }
  const n = logLikelihoods.length;
  const xs = Float64Array.from(logLikelihoods);
  const chunkSize = Math.min(1000, iterations);
  const chunks = Math.floor(iterations / chunkSize);
  const resampled: number[] = [];
  for (let chunk = 0; chunk < chunks; chunk++) {
    const rng = new PythonRandom(chunk);
    for (let r = 0; r < chunkSize; r++) {
      // the resample's elements in draw order, summed left to right like Python's sum()
      let total = 0;
      for (let i = 0; i < n; i++) total += xs[Math.floor(rng.random() * n)]!;
      resampled.push(Math.exp(-(total / n)));
    }
  }
  return sampleStddev(resampled);
}
