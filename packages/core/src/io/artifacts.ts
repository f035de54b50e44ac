/**
 * Every file name fairprune writes, in one place: the commands, the report loader and the tests use these instead of
 * literals, so a rename cannot leave a reader looking for the old name.
 */
export const ARTIFACTS = {
  /** The plan `prune` applied; `prune --plan` re-applies it. */
  plan: 'pruning-plan.json',
  /** Bias of the original model, written by `prune`. */
  biasBefore: 'bias-report.before.json',
  /** Bias of the pruned model, written by `prune`. */
  biasAfter: 'bias-report.after.json',
  /** Bias of one model, written by `analyze --out`. */
  biasReport: 'bias-report.json',
  /** Per-neuron scores and what was pruned, written by `prune`. */
  neuronScores: 'neuron-scores.json',
  /** Token activations of one pair (older prune outputs; now inside neuron-scores.json). */
  tokenActivations: 'token-activations.json',
  /** Inside every folder fairprune writes: which command wrote it, so `--force` replaces only fairprune's own output. */
  marker: '.fairprune-output.json',
  /** The model card of a pruned folder (Hugging Face shows it on the model's page); `eval` updates its results section. */
  modelCard: 'README.md',
  /** The HTML report (`report`'s default `--out`, and inside the demo's folder). */
  report: 'report.html',
  /** The JSON summary of `demo`. */
  demoSummary: 'report.json',
} as const;

/** A name fairprune writes beside an output while it is being written (temp, lock, journal, replaced output). */
export function siblingName(outputName: string, role: 'lock' | 'journal' | 'tmp' | 'old', id = ''): string {
  return `.${outputName}.fairprune-${role}${id === '' ? '' : `-${id}`}`;
}
