import { openModelFolder, requireOnnxPath, type ModelFolder } from '../model/folder.js';
import type { WeightDType } from '../model/dtype.js';
import { mapGraph, type GraphMap } from '../model/graph-map.js';
import { pruningMasks } from '../runtime/neuron-masks.js';
import { SegmentedModel, type SegmentedModelOptions } from '../runtime/segmented-model.js';
import { asWritten, type SimulatedPruning } from '../runtime/capture.js';
import {
  analysisSettings,
  biasReport,
  captureKeys,
  pairSetMeasurement,
  tokenActivationsOf,
  checkBeforeLoading,
  validateAnalyzeOptions,
  type AnalyzeOptions,
  type BiasAnalysis,
  type PairSetMeasurement,
  type PairTokenActivations,
} from './analyze.js';
import { continuationIds, measureBehaviour, type LogitsModel } from './behaviour.js';
import { comparePairs, type ActivationSet } from './compare.js';
import { activationKey, parseActivationKey } from './metrics.js';
import { NeuronBiasAggregator } from './neuron-scores.js';
import { checkPairs, SEED_PAIRS, type CheckedPair } from './pairs.js';

/** One pair being measured: where its two prompts sit among the streamed sequences, and its differences so far. */
interface StreamedPair {
  pair: CheckedPair;
  /** Index of the pair in its set. */
  index: number;
  /** Its neuron bias enters the scores (selection set), not only the metric (held-out set). */
  scoring: boolean;
  /** Sequence indices of sides a and b. */
  a: number;
  b: number;
  /** d per metric key, filled layer by layer. */
  differences: Record<string, number>;
}

/**
 * {@link analyzeBias} one decoder layer at a time ({@link SegmentedModel}): every prompt of both pair sets goes
 * through the prefix, then each layer's segment, and each layer's captured tensors are reduced to the metric's
 * differences and the per-neuron bias as soon as they come out, so only the residual streams and one layer's
 * activations are held. The behaviour forwards (pairs with continuations) ride in the same pass. Same report and scores as the
 * whole-model path; the segments run on `sessionDevice` (CUDA falls back to CPU, saying why).
 * @throws on invalid options, unusable pairs (before any weight is read), and the errors of {@link SegmentedModel.open}.
 */
export async function analyzeStreamed(modelDir: string, options: AnalyzeOptions = {}): Promise<BiasAnalysis> {
  return measureStreamed(modelDir, options);
}

/** A pruned model as the original model's weights and the plan's neurons: what {@link measurePrunedStreamed} runs. */
export interface MaskedPruning extends SimulatedPruning {
  /** The original model's ONNX file (its segments run, masked). */
  sourceOnnx: string;
}

/**
 * The streamed analysis of the pruned folder `prunedDir` without reading its weights: the original model's segments
 * run with neuron masks (zeros at the pruned neurons, the calibration means where compensated), and the pruned
 * neurons' columns are dropped (`remove`) or zeroed (`zero`) in the captured gate/up/GLU tensors, so the report has
 * the shape and values a fresh streamed analysis of `prunedDir` gives. The folder itself is validated as that
 * analysis would, its graph's MLP widths are checked against the plan, and one short prompt runs through its written
 * layers, segment by segment, whose last hidden state must equal the masked model's.
 * @throws as {@link analyzeStreamed}, and naming the written ONNX file when its widths or hidden states disagree.
 */
export async function measurePrunedStreamed(prunedDir: string | ModelFolder, pruning: MaskedPruning, options: AnalyzeOptions = {}): Promise<BiasAnalysis> {
  return measureStreamed(prunedDir, options, pruning);
}

/** {@link analyzeStreamed}, or with `pruning` {@link measurePrunedStreamed}. */
async function measureStreamed(target: string | ModelFolder, options: AnalyzeOptions, pruning?: MaskedPruning): Promise<BiasAnalysis> {
  validateAnalyzeOptions(options);
  const started = performance.now();
  const progress = options.onProgress ?? (() => {});
  const folder = typeof target === 'string' ? openModelFolder(target, options.onnxFile !== undefined ? { onnxFile: options.onnxFile } : {}) : target;
  progress(`opening ${folder.dir} (streamed, one layer at a time)${pruning ? `: the segments of ${pruning.sourceOnnx} with the plan's neurons masked` : ''}`);
  const onnxPath = requireOnnxPath(folder);
  const { estimator, aggregation, components } = analysisSettings(options);
  const source = options.pairsSource ?? (options.pairs ? 'pairs' : 'builtin:seed');
  const checked = checkPairs(options.pairs ?? SEED_PAIRS, folder.tokenizer, estimator);
  const { inputChecks, validation } = checkBeforeLoading(folder, onnxPath, options);
  const evalChecked = options.evalPairs ? checkPairs(options.evalPairs, folder.tokenizer, estimator) : undefined;

  const segmentOptions = {
    config: folder.config,
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
    ...(options.sessionDevice ? { device: options.sessionDevice } : {}),
    allowNonfinite: options.allowNonfinite ?? false,
    // The CUDA fallback is said once, with the progress lines (the CLI prints both on stderr).
    ...(options.onProgress ? { onFallback: options.onProgress } : {}),
  } satisfies SegmentedModelOptions;
  const model = SegmentedModel.open(pruning?.sourceOnnx ?? onnxPath, {
    ...segmentOptions,
    keys: captureKeys(options),
    ...(pruning ? { neuronMasks: (map: GraphMap) => pruningMasks(map.layers.map((l) => l.intermediateSize), pruning.selection, pruning.means) } : {}),
  });
  try {
    const numLayers = model.map.layers.length;
    // The written graph's map: its MLP widths are the report's, and must be the plan's.
    const reportMap = pruning ? mapGraph(validation.model, onnxPath) : model.map;
    if (pruning) requirePrunedWidths(model.map.layers.map((l) => l.intermediateSize), reportMap.layers.map((l) => l.intermediateSize), pruning, onnxPath);
    const timings: Record<string, number> = { open: performance.now() - started, capture: 0, scores: 0, behaviour: 0 };
    const sequences: number[][] = [];
    const streamed: StreamedPair[] = [];
    const enqueue = (set: readonly CheckedPair[], scoring: boolean) =>
      set.forEach((pair, index) => {
        if (pair.skipped) return;
        sequences.push(folder.tokenizer.encode(pair.a), folder.tokenizer.encode(pair.b));
        streamed.push({ pair, index, scoring, a: sequences.length - 2, b: sequences.length - 1, differences: {} });
      });
    enqueue(checked, true);
    if (evalChecked) enqueue(evalChecked, false);
    // The behaviour forwards ride in the same pass: their logits are kept for measureBehaviour.
    const kept = new KeptLogits(model);
    for (const pair of [...checked, ...(evalChecked ?? [])]) {
      if (!pair.negative || !pair.positive) continue;
      for (const text of [...pair.negative, ...pair.positive]) {
        for (const prompt of [pair.a, pair.b]) kept.want(continuationIds(folder.tokenizer, prompt, text), sequences);
      }
    }

    // One aggregator per layer: the pairs arrive layer by layer, in the same order the whole-model path adds them.
    const aggregators = Array.from({ length: numLayers }, () => new NeuronBiasAggregator(estimator, aggregation));
    const tokenRequest = options.tokenActivations === false ? undefined : (options.tokenActivations ?? { pair: 0 });
    const tokenKey = tokenRequest?.key ?? activationKey('mlp_output', Math.floor(numLayers / 2));
    const tokenLayer = parseActivationKey(tokenKey).layer;
    let tokenActivations: PairTokenActivations | undefined;
    // comparePairs reduces layers 0..numLayers−1 of a set; a segment's tensors are presented as layer 0.
    const asLayerZero = (set: ActivationSet): ActivationSet =>
      new Map([...set].map(([key, tensor]) => [activationKey(parseActivationKey(key).type, 0), tensor]));
    const layerZeroMetricKeys = components.map((c) => activationKey(c, 0));

    // The masked model's last hidden state of the first prompt: the written weights must give it too.
    let maskedHidden: Float32Array | undefined;
    const runStarted = performance.now();
    await model.run(sequences, {
      onLayer: async (layer, captured) => {
        progress(`layer ${layer + 1} of ${numLayers}: reducing ${streamed.length} pairs`);
        const t0 = performance.now();
        const pruned = pruning?.selection.get(layer);
        if (pruned && pruned.length > 0) for (const set of captured) asWritten(set, pruning!.selection, pruning!.mode);
        // Selection pairs feed this layer's aggregator; held-out pairs only the metric.
        for (const scoring of [true, false]) {
          const entries = streamed.filter((entry) => entry.scoring === scoring);
          if (entries.length === 0) continue;
          const differences = await comparePairs(
            entries.map((entry) => ({
              a: asLayerZero(captured[entry.a]!),
              b: asLayerZero(captured[entry.b]!),
              metricKeys: entry.pair.inMetric ? layerZeroMetricKeys : [],
            })),
            { numLayers: 1, estimator, ...(options.kernelDevice ? { device: options.kernelDevice } : {}) },
            scoring ? aggregators[layer] : undefined,
          );
          entries.forEach((entry, k) => {
            const d = differences[k];
            if (d && entry.pair.inMetric) {
              for (const [key, value] of Object.entries(d)) entry.differences[activationKey(parseActivationKey(key).type, layer)] = value;
            }
          });
        }
        for (const entry of streamed) {
          if (entry.scoring && layer === tokenLayer && tokenRequest && entry.index === tokenRequest.pair) {
            const [a, b] = [entry.a, entry.b];
            tokenActivations = tokenActivationsOf(entry.pair, sequences[a]!, sequences[b]!, captured[a]!, captured[b]!, tokenKey, folder);
          }
        }
        timings['scores']! += performance.now() - t0;
      },
      ...(kept.wanted ? { onLogits: (sequence: number, logits: Float32Array, vocab: number) => kept.keep(sequence, logits, vocab) } : {}),
      ...(pruning
        ? {
            onHidden: (sequence: number, hidden: Float32Array) => {
              if (sequence === 0) maskedHidden = hidden;
            },
          }
        : {}),
    });
    timings['capture']! += performance.now() - runStarted - timings['scores']!;
    if (pruning) await requireWrittenHidden(onnxPath, sequences[0]!, maskedHidden!, reportMap.activationDtype, segmentOptions);

    const measure = async (set: readonly CheckedPair[], setSource: string, scoring: boolean): Promise<PairSetMeasurement> => {
      const differences = streamed.filter((e) => e.scoring === scoring && e.pair.inMetric).map((e) => e.differences);
      const withContinuations = set.filter((p) => p.negative && p.positive);
      if (withContinuations.length > 0) progress(`behaviour: ${withContinuations.length} pairs of ${setSource}`);
      const t0 = performance.now();
      const behaviour = await measureBehaviour(kept, folder.tokenizer, withContinuations);
      timings['behaviour']! += performance.now() - t0;
      return pairSetMeasurement(set, setSource, differences, behaviour);
    };
    const main = await measure(checked, source, true);
    const evalMeasurement = evalChecked ? await measure(evalChecked, options.evalPairsSource ?? 'eval pairs', false) : undefined;
    const layers = aggregators.map((aggregator) => aggregator.result());
    return {
      report: biasReport({ folder, onnxPath, inputChecks }, reportMap, options, main, evalMeasurement, timings),
      neuronBias: { estimator, aggregation, pairs: layers[0]!.pairs, layers: layers.map((l) => l.layers[0]!) },
      ...(tokenActivations ? { tokenActivations } : {}),
    };
  } finally {
    model.close();
  }
}

/** Written-vs-masked agreement allowed, relative to the largest |value|: summation order in float32, rounding in fp16/bf16. */
const WRITTEN_TOLERANCE = { float32: 1e-4, reduced: 2e-2 } as const;

/** The written graph's MLP widths are the original's, less the removed neurons (`remove`) or unchanged (`zero`). */
function requirePrunedWidths(original: readonly number[], written: readonly number[], pruning: MaskedPruning, onnxPath: string): void {
  const expected = original.map((width, layer) => (pruning.mode === 'remove' ? width - (pruning.selection.get(layer)?.length ?? 0) : width));
  if (written.join(',') !== expected.join(',')) {
    throw new Error(`${onnxPath}: the written model's MLP widths are [${written.join(', ')}], the plan (${pruning.mode}) gives [${expected.join(', ')}]`);
  }
}

/**
 * Runs `ids` through the written model, one segment at a time, and requires its last hidden state (the residual
 * stream after every pruned layer) to equal the masked original's within {@link WRITTEN_TOLERANCE} of its largest
 * |value|: an end-to-end check of the written layers' bytes. The suffix (final norm, lm_head) is left out: pruning
 * copies it unchanged, and its float32 copy of lm_head alone would be 2.1 GB on an 8B model.
 */
async function requireWrittenHidden(onnxPath: string, ids: readonly number[], masked: Float32Array, dtype: WeightDType, options: SegmentedModelOptions): Promise<void> {
  const written = SegmentedModel.open(onnxPath, options);
  try {
    let hidden: Float32Array | undefined;
    await written.run([ids], { onHidden: (_, data) => (hidden = data) });
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < masked.length; i++) {
      diff = Math.max(diff, Math.abs(hidden![i]! - masked[i]!));
      scale = Math.max(scale, Math.abs(masked[i]!));
    }
    const allowed = (dtype === 'f32' ? WRITTEN_TOLERANCE.float32 : WRITTEN_TOLERANCE.reduced) * Math.max(1, scale);
    if (!(diff <= allowed) || hidden!.length !== masked.length) {
      throw new Error(
        `${onnxPath}: the written model's last hidden state for a ${ids.length}-token prompt differs from the masked original's by ${diff} ` +
          `(largest |value| ${scale}, allowed ${allowed}${hidden!.length !== masked.length ? `; ${hidden!.length} values, expected ${masked.length}` : ''})`,
      );
    }
  } finally {
    written.close();
  }
}

/**
 * Logits of the behaviour sequences, kept from one streamed pass instead of a pass per forward: each sequence's
 * rows from the last prompt position on (the rows continuation scoring reads); earlier rows read as NaN, so a
 * reader that needed them would show NaN rather than a wrong number. A sequence not kept goes through the segments.
 */
class KeptLogits implements LogitsModel {
  /** Sequence index in the pass → its key. */
  private readonly bySequence = new Map<number, string>();
  /** Sequence ids joined → the first row kept, and the rows once the pass produced them. */
  private readonly byKey = new Map<string, { from: number; rows?: Float32Array; vocab?: number }>();

  constructor(private readonly model: SegmentedModel) {}

  /** Whether any sequence is wanted (the suffix then runs in the pass). */
  get wanted(): boolean {
    return this.byKey.size > 0;
  }

  /** Adds prompt + continuation to `sequences` (once per distinct sequence) and remembers to keep its logits. */
  want(ids: { prompt: number[]; continuation: number[] }, sequences: number[][]): void {
    const sequence = [...ids.prompt, ...ids.continuation];
    const key = sequence.join(',');
    const from = ids.prompt.length - 1;
    const known = this.byKey.get(key);
    if (known) {
      known.from = Math.min(known.from, from);
      return;
    }
    this.byKey.set(key, { from });
    sequences.push(sequence);
    this.bySequence.set(sequences.length - 1, key);
  }

  /** The pass's logits [T, V] of one sequence. */
  keep(sequence: number, logits: Float32Array, vocab: number): void {
    const key = this.bySequence.get(sequence);
    if (key === undefined) return;
    const entry = this.byKey.get(key)!;
    entry.rows = logits.slice(entry.from * vocab);
    entry.vocab = vocab;
  }

  /** Logits [B, T, V] of equal-length sequences: from the kept rows, else through the segments. */
  async forward(batch: readonly (readonly number[])[]): Promise<{ logits: Float32Array; dims: [number, number, number] }> {
    const entries = batch.map((ids) => this.byKey.get(ids.join(',')));
    if (entries.some((e) => e?.rows === undefined)) return this.model.forward(batch);
    const t = batch[0]!.length;
    const vocab = entries[0]!.vocab!;
    const logits = new Float32Array(batch.length * t * vocab).fill(Number.NaN);
    entries.forEach((entry, b) => logits.set(entry!.rows!, (b * t + entry!.from) * vocab));
    return { logits, dims: [batch.length, t, vocab] };
  }
}
