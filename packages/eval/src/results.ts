import { bootstrapPerplexityStderr, mean, meanStderr, perplexity } from './metrics/aggregate.js';
import type { MetricName, TaskDefinition } from './tasks.js';

/** One task's aggregated metrics, named as lm-evaluation-harness names them (without its ",none" filter suffix). */
export interface TaskMetrics {
  alias: string;
  acc: number;
  acc_stderr: number | 'N/A';
  perplexity?: number;
  perplexity_stderr?: number | 'N/A';
}

/** A per-document log entry, like the harness's `--log_samples`. */
export interface Sample {
  doc_id: number;
  /** The dataset row the document was made from. */
  doc: Record<string, unknown>;
  target: string;
  /** (context, continuation) of each request. */
  arguments: [string, string][];
  /** (log-likelihood, is_greedy) of each request. */
  resps: [number, boolean][];
  acc?: number;
  perplexity?: number;
}

/** Harness aggregation: acc → mean with mean_stderr; perplexity → exp(−mean) with a bootstrap stderr. */
export function aggregateTask(task: TaskDefinition, perDoc: readonly Partial<Record<MetricName, number>>[], bootstrapIters: number): TaskMetrics {
  const values = (metric: MetricName): number[] => perDoc.map((m, i) => {
    const value = m[metric];
    if (value === undefined) throw new Error(`${task.name}: document ${i} has no ${metric}`);
    return value;
  });
  // The harness reports "N/A" when a stderr cannot be computed (one document, or bootstrap disabled).
  const acc = values('acc');
  const metrics: TaskMetrics = { alias: task.name, acc: mean(acc), acc_stderr: acc.length > 1 ? meanStderr(acc) : 'N/A' };
  if (task.metrics.includes('perplexity')) {
    const lls = values('perplexity');
    metrics.perplexity = perplexity(lls);
    metrics.perplexity_stderr = lls.length > 1 && bootstrapIters > 0 ? bootstrapPerplexityStderr(lls, bootstrapIters) : 'N/A';
  }
  return metrics;
}
