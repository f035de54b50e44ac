import type { BiasEstimator } from '../bias/pairs.js';
import type { PairAggregation } from '../bias/neuron-scores.js';
import type { ImportanceMethod } from '../prune/importance.js';
import type { PruneMode } from '../prune/plan.js';
import type { ScoreMethod } from '../prune/select.js';

/**
 * The defaults of every analysis and prune option, in one place: core fills them in ({@link resolveAnalyzeOptions},
 * {@link resolvePruneOptions}) and the CLI shows them as its flags' defaults.
 */
export const PRUNE_DEFAULTS: {
  /** Per-neuron bias estimator. */
  readonly estimator: BiasEstimator;
  /** Aggregation of neuron bias over pairs. */
  readonly aggregation: PairAggregation;
  /** Name of the built-in pair set used when no pairs are given. */
  readonly pairsSource: string;
  /** Weight-importance method. */
  readonly importance: ImportanceMethod;
  /** Prunability formula. */
  readonly method: ScoreMethod;
  /** w in P = w·bias_n + (1 − w)·(1 − imp_n). */
  readonly biasWeight: number;
  /** Uniform fraction per layer when no other selection mode is given. */
  readonly fraction: number;
  /** Remove neurons (a smaller model) rather than zero them. */
  readonly mode: PruneMode;
} = { estimator: 'positionwise', aggregation: 'mean', pairsSource: 'builtin:seed', importance: 'maw', method: 'hybrid', biasWeight: 0.5, fraction: 0.002, mode: 'remove' };

/**
 * The error for an option outside its domain, naming the option (as the API spells it), what it accepts and what it got.
 * @param expected  e.g. `one of remove, zero` or `a number in [0, 1]`.
 */
export function invalidOption(name: string, expected: string, actual: unknown): Error {
  return new Error(`Option ${name}: expected ${expected}, got ${typeof actual === 'string' ? JSON.stringify(actual) : String(actual)}`);
}

/** Throws {@link invalidOption} unless `value` is one of `allowed`. */
export function requireOneOf<T>(name: string, allowed: readonly T[], value: unknown): asserts value is T {
  if (!allowed.includes(value as T)) throw invalidOption(name, `one of ${allowed.join(', ')}`, value);
}
