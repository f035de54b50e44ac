/**
 * Batch pruning: sweeps of many models × pruning configurations with one shared analysis per model, run by worker
 * processes (one per device) on a shared output folder, resumable and exactly-once through core's output protocol.
 * @packageDocumentation
 */
export { parseJob, readJob, JobFileError, DEFAULT_RETRIES, DEFAULT_RETRY_DELAY_MS, type BatchJob, type BatchConfig, type JobModel, type JobEval } from './job.js';
export { planBatch, estimateTaskMemory, configId, configAnalysisSettings, canonicalJson, modelWeightsHash, type BatchPlan, type PlannedModel, type AnalysisTask, type RunTask, type PlanBatchOptions } from './plan.js';
export { runAnalysisTask, runConfigurationTask, BATCH_FILES, type RunResult, type EvalMetrics, type WorkerPlacement, type TaskHooks } from './tasks.js';
export { runLocalWorker, runTask, attemptTask, type LocalWorkerOptions, type AttemptOutcome } from './worker.js';
export {
  batchStatus,
  readBatchPlan,
  readEvents,
  readFailures,
  readHeartbeats,
  taskKey,
  taskDone,
  claimPath,
  type BatchStatus,
  type BatchEvent,
  type TaskFailure,
  type WorkerHeartbeat,
} from './state.js';
export { buildSummary, writeSummary, summaryCsv, summaryRow, type BatchSummary, type SummaryRow, type EvalDelta, type HeldOutBehaviour } from './summary.js';
export { deviceMemory, visibleGpus } from './devices.js';
export { runBatch, placeWorkers, startWorkerProcesses, unplaceableTasks, type WorkerProcess, type WorkerPlacementSpec, type RunBatchOptions, type BatchRunResult, type BatchRunEvent } from './run.js';
export {
  submitToQueue,
  runQueueWorker,
  processQueuedTask,
  redisConnection,
  runJobId,
  QUEUE_NAME,
  QUEUE_LOCK_MS,
  QUEUE_STALLED_CHECK_MS,
  QUEUE_DEFER_MS,
  type QueueJobData,
  type QueueWorkerOptions,
} from './queue.js';
