export { evaluate, type EvaluateOptions, type EvalProgress, type EvalResults } from './evaluate.js';
export { tasks, taskNames, getTask, lambadaRequest, boolqContext, type TaskName, type TaskDefinition, type Doc, type LambadaDoc, type BoolqDoc, type TextRequest, type LoglikelihoodResult } from './tasks.js';
export { loadDocs, type DataSource, type LoadedDocs } from './data/load-docs.js';
export { readRows, countRows, formatOf, type Row, type DataFormat } from './data/read-rows.js';
export { encodePair, modelInput, resolveMaxLength, type EncodedPair } from './requests.js';
export { scoreRows, type ScoringRow, type RowScores } from './scoring.js';
export { openScorer, defaultScorerThread, type RowScorer, type ScorerThread } from './scorer.js';
export {
  lmEvalResults,
  lmEvalSample,
  writeLmEvalFiles,
  writeLmEvalSamples,
  hashString,
  sanitizeModelName,
  pythonFloat,
  fileDateId,
  type LmEvalRun,
  type LmEvalOutput,
  type WrittenLmEvalFiles,
  lmEvalJson,
} from './lm-eval-files.js';
export { aggregateTask, type TaskMetrics, type Sample } from './results.js';
export { mean, meanStderr, sampleStddev, perplexity, bootstrapPerplexityStderr } from './metrics/aggregate.js';
export { PythonRandom } from './metrics/python-random.js';
export { formatProgress, formatDuration, progressPrinter } from './progress.js';
export { version } from './version.js';
