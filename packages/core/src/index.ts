/**
 * Fairness Pruning for LLMs: measure how differently a decoder model treats prompt pairs that differ only in a
 * demographic word, score every GLU MLP neuron by that bias and by its weight importance, and write a model folder
 * with the most biased, least important neurons removed.
 *
 * Most users need {@link analyzeBias} and {@link runFairnessPruning}; the lower layers are exported for tools that
 * reuse single stages.
 * @packageDocumentation
 */

/** The npm package name of this library. */
export const packageName = '@fairprune/core';

// JSON inputs: one reader whose errors name the file and field.
export { readJsonFile, readJsonObject, parseJson, asJsonObject, jsonField, describeJson, JsonInputError, type JsonObject, type JsonFieldKind, type JsonFieldType } from './io/read-json.js';

// Model folder & tokenizer: open a Hugging Face-style folder (config.json, tokenizer.json, ONNX, safetensors), inspect it.
export { openModelFolder, requireOnnxPath, ModelFolderError, type ModelConfig, type ModelFolder, type OpenModelFolderOptions } from './model/folder.js';
export { loadTokenizer, TokenizerLoadError, type TextTokenizer } from './model/tokenizer.js';
export {
  resolveModelSource,
  downloadHubFile,
  parseHubId,
  hubCacheDir,
  hubRepoFolder,
  HubError,
  type HubOptions,
  type HubId,
  type HubRepoType,
  type HubFileRequest,
  type ModelSourceOptions,
} from './model/hub.js';
export { inspectModel, type ModelInspection } from './model/inspect.js';
export { SafetensorsError } from './model/safetensors.js';
export { validateModel, requireConsistentModel, ModelMismatchError, type ModelValidation, type InputChecks } from './model/validate.js';
export { f32ToF16, type WeightDType } from './model/dtype.js';

// ONNX codec & graph map: decode/encode ModelProto with external data, and find each decoder layer's GLU MLP by structure.
export { readOnnxModel, encodeOnnxModel, checkExternalData, tensorByteLength, tensorDtype, ExternalDataWriter, OnnxFormatError } from './model/onnx-codec.js';
export { mapGraph, GraphMapError, type GraphMap, type LayerMap, type LayerTensors, type ActivationKey, type WeightInfo, type WeightLayout } from './model/graph-map.js';
export { segmentGraph, type GraphSegment, type GraphSegments } from './model/segments.js';

// Runtime: onnxruntime sessions, activation capture, decoding with or without a KV cache, HF-compatible generation.
export { ModelSession, tensorToFloat32, SESSION_DEVICES, type ModelSessionOptions, type SessionDevice, type KvLayout, type ForwardResult } from './runtime/session.js';
export { NonFiniteError, firstNonFinite, requireFinite } from './runtime/finite.js';
export { NeuronMaskedModel, addNeuronMaskInputs, zeroMasks, type NeuronMaskedModelOptions, type NeuronMaskInputs, type LayerRows } from './runtime/neuron-masks.js';
export { ActivationCapture, type ActivationCaptureOptions, type CapturedTensor, type CapturedActivations, type SimulatedPruning } from './runtime/capture.js';
export { SegmentedModel, type SegmentedModelOptions, type SegmentHandlers } from './runtime/segmented-model.js';
export { openDecoder, KvCacheDecoder, RecomputeDecoder, type Decoder } from './runtime/kv-cache.js';
export { generate, checkGenerationInputs, greedySearch, beamSearch, readGenerationDefaults, type GenerationOptions, type GeneratedSequence } from './runtime/generate.js';

// Bias: prompt pairs, the optiPfair activation metric, per-neuron bias scores, behavioural log-odds, the analysis entry point.
export { loadPairs, loadPairSets, type LoadedPairSets, BIAS_ESTIMATORS, type PromptPair, type BiasEstimator } from './bias/pairs.js';
export { HOOK_TYPES, type HookType, type BiasMetrics, type ComponentMetrics, type DifferenceStats, type LayerMetrics, type ProgressionMetrics } from './bias/metrics.js';
export { PAIR_AGGREGATIONS, type PairAggregation, type NeuronBiasScores } from './bias/neuron-scores.js';
export { measureBehaviour, type BehaviourResult, type ContinuationLogProbs, type ContinuationTokenizer, type LogitsModel } from './bias/behaviour.js';
export {
  analyzeBias,
  openForAnalysis,
  resolveAnalyzeOptions,
  type OpenedModel,
  METRIC_COMPONENTS,
  type ResolvedAnalyzeOptions,
  type AnalyzeOptions,
  type BiasAnalysis,
  type BiasReport,
  type PairReport,
  type PairSetMeasurement,
  type PairTokenActivations,
  type PromptTokenActivations,
} from './bias/analyze.js';
export { analyzeStreamed } from './bias/streamed-measure.js';
export { planMeasure, analysisWorkload, type MeasurePlan } from './bias/measure-path.js';
export {
  estimateWorkingSet,
  chooseMeasurePath,
  defaultMemoryBudget,
  DEFAULT_BUDGET_FRACTION,
  RUNTIME_BYTES,
  type MeasurePath,
  type WorkingSetEstimate,
  type Workload,
} from './model/working-set.js';

// Prune: weight importance, neuron selection, the pruning plan, writing the pruned folder, and the end-to-end run.
export { OnnxWeights, SafetensorsWeights, type LayerMlpMatrices, type WeightMatrix } from './model/weights.js';
export { modelImportance, scanModelImportance, IMPORTANCE_METHODS, type ModelWeightScan, type ImportanceMethod, type ModelImportance, type MlpWeightSource, type LayerMlpWeights } from './prune/importance.js';
export { selectNeurons, SCORE_METHODS, type ScoreMethod, type SelectionOptions, type LayerSelection } from './prune/select.js';
export { readPlan, validatePlan, PRUNE_MODES, type PruneMode, type PruningPlan, type PlanModelIdentity } from './prune/plan.js';
export { writePrunedFolder, type WritePrunedFolderOptions, type PrunedFolderResult } from './prune/apply.js';
export { SurgeryError } from './prune/surgery.js';
export type { NeuronSelection } from './model/neurons.js';
export {
  renderModelCard,
  renderCardEvalSection,
  updateCardEval,
  updateModelCardEval,
  readCardEval,
  baseModelInfo,
  writeModelCard,
  type ModelCardInput,
  type CardEvalEntry,
  type BaseModelInfo,
} from './prune/model-card.js';
export { analyzeModel, analysisSettingsOf, type ModelAnalysis } from './prune/model-analysis.js';
export { PRUNE_DEFAULTS, invalidOption, requireOneOf } from './pipeline/options.js';
export { runFairnessPruning, resolvePruneOptions, pruneModeOf, PRUNE_METHODS, type ResolvedPruneOptions, type PruneMethod, type PruneOptions, type PruneResult, type NeuronScoresFile, type LayerNeuronScores } from './prune/run.js';
export {
  BehaviourProbe,
  selectByBehaviour,
  meanGap,
  BEHAVIOUR_DEFAULTS,
  COMPENSATIONS,
  type Compensation,
  type NeuronRef,
  type NeuronEffect,
  type ProbeCost,
  type VariantScore,
  type BehaviourSelection,
  type BehaviourSelectionOptions,
  type ChoiceItem,
  type CalibrationData,
} from './prune/behaviour-select.js';
export { type BehaviourPruneOptions, type BehaviourPlanRecord, type BehaviourSettings, type AbilityGuard, type AbilityGuardRecord, type ScoreSummary, type SelectionCost } from './prune/behaviour-run.js';
export { meanActivations, compensationBiases, addOnnxMlpBiases, MLP_BIAS_MODEL_TYPES } from './prune/compensate.js';

// Outputs: the names of the files fairprune writes, and the protocol every command writes through (lock, temp sibling,
// fsync, one rename, replacement of earlier outputs only, cleanup on SIGINT/SIGTERM).
export { ARTIFACTS, siblingName } from './io/artifacts.js';
export {
  openOutput,
  writeOutput,
  writeTextOutput,
  writeJsonOutput,
  produceJsonOutput,
  jsonText,
  readMarker,
  lockHolderAlive,
  removeStaleLock,
  OutputError,
  type OutputOptions,
  type OutputLock,
  type OutputMarker,
  type PendingOutput,
} from './io/output.js';
export { onnxruntimeTelemetry, ORT_TELEMETRY_OPT_IN, type OnnxruntimeTelemetry } from './runtime/ort-env.js';

// Report data: PCA of token activations and the 2-D projection of one pair that the report draws.
export {
  pca,
  projectPair,
  type PcaResult,
  type RowMatrix,
  type PairProjection,
  type PromptActivations,
  type ProjectedPrompt,
  type ProjectedToken,
  type ProjectPairOptions,
  type TokenLink,
} from './report-data/index.js';
