/**
 * `--method behaviour`: choose neurons by their measured effect on the behaviour, not by activation differences.
 * The objective of a prompt is L = log Σ p(negative) − log Σ p(positive) (see measureBehaviour); side A is the
 * pair's `a`, the group the bias hurts. Every effect is measured by ablation on one {@link NeuronMaskedModel}, many
 * variants per forward.
 */
import { continuationIds, logSumExp, sequenceLogProb, type ContinuationTokenizer } from '../bias/behaviour.js';
import type { PromptPair } from '../bias/pairs.js';
import type { NeuronMaskedModel } from '../runtime/neuron-masks.js';

/** One MLP neuron. */
export interface NeuronRef {
  /** Decoder layer. */
  layer: number;
  /** Neuron index in the layer's GLU product. */
  neuron: number;
}

/** What is done to a removed neuron when measuring: zeroed (`none`) or replaced by its mean activation (`mean`). */
export type Compensation = 'none' | 'mean';
/** Every {@link Compensation}, for option validation. */
export const COMPENSATIONS: readonly Compensation[] = ['none', 'mean'];

/** Options of {@link selectByBehaviour}; defaults in {@link BEHAVIOUR_DEFAULTS}. */
export interface BehaviourSelectionOptions {
  /** Most neurons removed in all. */
  maxNeurons: number;
  /** Stop once the mean gap (L_A − L_B) over the selection pairs is at or below this (nats). */
  targetGap: number;
  /** A neuron, and the chosen set, may raise the mean L_B by at most this (nats). */
  sideBTolerance: number;
  /** A neuron, and the chosen set, may raise the mean next-token NLL on the calibration texts by at most this (nats). */
  maxNllIncrease: number;
  /** A neuron, and the chosen set, may lower the mean answer margin on the calibration choice items by at most this (nats). */
  maxMarginDrop: number;
  /** Re-measure the best remaining candidates after each choice instead of ranking once. */
  greedy: boolean;
  /** Candidates re-measured per greedy step. */
  greedyCandidates: number;
  /** Ablate blocks of this many adjacent neurons first and measure single neurons only inside the best blocks (1 = every neuron). */
  blockSize: number;
  /** With blocks: single neurons are measured in the best blocks until this many times `maxNeurons` are covered. */
  refineFactor: number;
  /** Only these layers (default all). */
  layers?: readonly number[];
  /** Removed neurons are zeroed or replaced by their mean activation. */
  compensate: Compensation;
}

/** The defaults of `--method behaviour` (stated in the README). */
export const BEHAVIOUR_DEFAULTS = {
  /** Budget: at most this fraction of all MLP neurons (the calibration-NLL guard usually binds first). */
  maxNeuronsFraction: 0.3,
  /** Stop at parity on the selection pairs. */
  targetGap: 0,
  /** Side B may become at most this much more hostile (nats). */
  sideBTolerance: 0.1,
  /** The calibration NLL may rise at most this much (nats per token). */
  maxNllIncrease: 0.02,
  /** The answer margin on the calibration choice items (bundled: BoolQ-format, disjoint from the evaluated set) may fall at most this much (nats). */
  maxMarginDrop: 0.15,
  /** Rank once (prefixes measured exactly) rather than greedy re-measurement. */
  greedy: false,
  /** Candidates re-measured per greedy step. */
  greedyCandidates: 32,
  /** Every neuron measured alone. */
  blockSize: 1,
  /** Shortlist: this many times the budget, by effect on L_A. */
  refineFactor: 4,
  /** Removed neurons are measured mean-replaced and their mean contribution kept as an MLP-output bias. */
  compensate: 'mean' as Compensation,
} as const;

/** What measuring cost: forward passes, and tokens (batch rows × positions). */
export interface ProbeCost {
  /** Forward passes run. */
  forwards: number;
  /** Batch rows × positions run. */
  tokens: number;
}

/** Mean objective of one variant over the selection pairs (and the calibration NLL when measured). */
export interface VariantScore {
  /** L_A per pair; empty when side A was not measured. */
  logOddsA: number[];
  /** L_B per pair; empty when side B was not measured. */
  logOddsB: number[];
  /** Mean L_A (NaN when not measured). */
  meanA: number;
  /** Mean L_B (NaN when not measured). */
  meanB: number;
  /** Mean next-token NLL per token on the calibration texts (NaN when not measured). */
  nll: number;
  /**
   * Mean answer margin on the calibration choice items, log p(right) − log Σ p(wrong), averaged within each right
   * answer and then over the answers, so a variant that merely shifts every answer towards one choice does not gain
   * (NaN when not measured or without items).
   */
  margin: number;
}

/** The measured effect of removing one neuron (alone, from the base model) on the selection pairs. */
export interface NeuronEffect extends NeuronRef {
  /** Change of the mean L_A (negative = side A less often pushed to the negative continuations). */
  deltaA: number;
  /** Change of the mean L_B (NaN when not measured). */
  deltaB: number;
  /** Change of the calibration NLL (NaN when not measured). */
  deltaNll: number;
  /** Change of the calibration answer margin (NaN when not measured or without choice items). */
  deltaMargin: number;
}

/** What {@link selectByBehaviour} chose and measured. */
export interface BehaviourSelection {
  /** Chosen neurons per layer (index = layer), ascending. */
  layers: number[][];
  /** The chosen neurons in the order they were admitted, with their effects measured alone. */
  chosen: NeuronEffect[];
  /** The base model on the selection pairs. */
  before: VariantScore;
  /** The chosen set, measured exactly (all neurons masked at once). */
  after: VariantScore;
  /** Forward passes and tokens (rows × positions) spent. */
  cost: ProbeCost;
  /** Candidates whose single-neuron effect was measured (after block refinement). */
  measured: number;
  /** Every single-neuron side-A effect measured (side B and NLL only for the shortlist, NaN otherwise). */
  effects: NeuronEffect[];
}

interface Sequence {
  ids: number[];
  promptLength: number;
  continuation: number[];
  pair: number;
  side: 'a' | 'b';
  negative: boolean;
}

/** A multiple-choice ability item (e.g. a BoolQ document): after `context`, `choices[label]` should be the likelier. */
export interface ChoiceItem {
  /** The prompt. */
  context: string;
  /** The continuations to choose from (e.g. " no", " yes"). */
  choices: readonly string[];
  /** Index of the right choice. */
  label: number;
}

/** What the ability guard measures: next-token NLL on texts, and the answer margin on choice items. */
export interface CalibrationData {
  /** Texts whose mean next-token NLL may rise by at most `maxNllIncrease`. */
  texts: readonly string[];
  /** Items whose mean answer margin may fall by at most `maxMarginDrop` (none: no margin guard). */
  choices?: readonly ChoiceItem[];
}

interface ChoiceSequence {
  ids: number[];
  promptLength: number;
  continuation: number[];
  item: number;
  choice: number;
}

/**
 * Measures variants of one model (sets of removed neurons) on the selection pairs' continuations and calibration
 * texts, many variants per forward: each batch row carries its own mask.
 */
export class BehaviourProbe {
  /** Forwards and tokens run so far. */
  readonly cost: ProbeCost = { forwards: 0, tokens: 0 };
  private readonly sequences: Sequence[];
  private readonly calibration: number[][];
  private readonly choiceSequences: ChoiceSequence[];
  private readonly choiceLabels: number[];
  private readonly pairCount: number;

  /**
   * @param model  The masked model (opened with replacement inputs when `means` is given).
   * @param means  Per layer, each neuron's mean activation: removed neurons are replaced by it instead of zeroed.
   * @param maxRows  Batch rows per forward.
   * @throws when no pair has both `negative` and `positive` continuations, or a choice item's label is not one of its choices.
   */
  constructor(
    private readonly model: NeuronMaskedModel,
    tokenizer: ContinuationTokenizer,
    pairs: readonly PromptPair[],
    calibration: CalibrationData,
    private readonly means?: readonly Float32Array[],
    private readonly maxRows = 256,
  ) {
    const scored = pairs.filter((p) => p.negative && p.positive);
    if (scored.length === 0) throw new Error('--method behaviour needs pairs with "negative" and "positive" continuations; none of the given pairs has both');
    this.pairCount = scored.length;
    this.sequences = scored.flatMap((pair, index) =>
      (['a', 'b'] as const).flatMap((side) =>
        [...pair.negative!.map((t) => [t, true] as const), ...pair.positive!.map((t) => [t, false] as const)].map(([text, negative]) => {
          const { prompt, continuation } = continuationIds(tokenizer, pair[side], text);
          return { ids: [...prompt, ...continuation], promptLength: prompt.length, continuation, pair: index, side, negative };
        }),
      ),
    );
    this.calibration = calibration.texts.map((text) => tokenizer.encode(text)).filter((ids) => ids.length > 1);
    const items = calibration.choices ?? [];
    items.forEach((item, i) => {
      if (!(Number.isInteger(item.label) && item.label >= 0 && item.label < item.choices.length) || item.choices.length < 2) {
        throw new Error(`Calibration choice item ${i}: label ${item.label} is not one of its ${item.choices.length} choices (need at least 2)`);
      }
    });
    this.choiceLabels = items.map((item) => item.label);
    this.choiceSequences = items.flatMap((item, index) =>
      item.choices.map((text, choice) => {
        const { prompt, continuation } = continuationIds(tokenizer, item.context, text);
        return { ids: [...prompt, ...continuation], promptLength: prompt.length, continuation, item: index, choice };
      }),
    );
  }

  /** Scores each variant (a set of removed neurons) on the asked parts: side A, side B, the ability guard (`nll`: calibration NLL and answer margin). */
  async score(variants: readonly (readonly NeuronRef[])[], parts: { a?: boolean; b?: boolean; nll?: boolean }): Promise<VariantScore[]> {
    const items: { ids: number[]; behaviour?: Sequence; choice?: ChoiceSequence }[] = [
      ...this.sequences.filter((s) => (s.side === 'a' ? parts.a : parts.b)).map((s) => ({ ids: s.ids, behaviour: s })),
      ...(parts.nll ? this.calibration.map((ids) => ({ ids })) : []),
      ...(parts.nll ? this.choiceSequences.map((c) => ({ ids: c.ids, choice: c })) : []),
    ];
    // Per variant and item: the log-probability of the continuation (behaviour) or of every next token (calibration).
    const logProbs = variants.map(() => new Float64Array(items.length));
    const byLength = new Map<number, number[]>();
    items.forEach((item, i) => byLength.set(item.ids.length, [...(byLength.get(item.ids.length) ?? []), i]));
    const widths = this.model.widths;
    for (const group of byLength.values()) {
      for (let start = 0; start < group.length; start += this.maxRows) {
        const piece = group.slice(start, start + this.maxRows);
        const perForward = Math.max(1, Math.floor(this.maxRows / piece.length));
        for (let v0 = 0; v0 < variants.length; v0 += perForward) {
          const chunk = variants.slice(v0, v0 + perForward);
          const rows = chunk.length * piece.length;
          const masks: (Float32Array | undefined)[] = widths.map(() => undefined);
          const replacements: (Float32Array | undefined)[] = widths.map(() => undefined);
          chunk.forEach((variant, v) => {
            for (const { layer, neuron } of variant) {
              const width = widths[layer]!;
              const mask = (masks[layer] ??= new Float32Array(rows * width).fill(1));
              const replacement = this.means ? (replacements[layer] ??= new Float32Array(rows * width)) : undefined;
              for (let r = 0; r < piece.length; r++) {
                mask[(v * piece.length + r) * width + neuron] = 0;
                if (replacement) replacement[(v * piece.length + r) * width + neuron] = this.means![layer]![neuron]!;
              }
            }
          });
          const batch = chunk.flatMap(() => piece.map((i) => items[i]!.ids));
          const { logits, dims } = await this.model.forward(batch, masks, this.means ? replacements : undefined);
          this.cost.forwards++;
          this.cost.tokens += rows * dims[1];
          chunk.forEach((_, v) =>
            piece.forEach((itemIndex, r) => {
              const item = items[itemIndex]!;
              const row = v * piece.length + r;
              const scored = item.behaviour ?? item.choice;
              logProbs[v0 + v]![itemIndex] = scored
                ? sequenceLogProb(logits, dims[1], dims[2], row, scored.promptLength, scored.continuation)
                : sequenceLogProb(logits, dims[1], dims[2], row, 1, item.ids.slice(1));
            }),
          );
        }
      }
    }
    const calibrationTokens = this.calibration.reduce((n, ids) => n + ids.length - 1, 0);
    return logProbs.map((values) => {
      const side = (which: 'a' | 'b'): number[] => {
        if (!(which === 'a' ? parts.a : parts.b)) return [];
        const negative: number[][] = Array.from({ length: this.pairCount }, () => []);
        const positive: number[][] = Array.from({ length: this.pairCount }, () => []);
        items.forEach((item, i) => {
          const s = item.behaviour;
          if (s && s.side === which) (s.negative ? negative : positive)[s.pair]!.push(values[i]!);
        });
        return negative.map((neg, p) => logSumExp(neg) - logSumExp(positive[p]!));
      };
      const logOddsA = side('a');
      const logOddsB = side('b');
      let nllSum = 0;
      const choiceLogProbs = this.choiceLabels.map(() => [] as number[]);
      items.forEach((item, i) => {
        if (item.choice) choiceLogProbs[item.choice.item]![item.choice.choice] = values[i]!;
        else if (!item.behaviour) nllSum -= values[i]!;
      });
      return {
        logOddsA,
        logOddsB,
        meanA: mean(logOddsA),
        meanB: mean(logOddsB),
        nll: parts.nll && calibrationTokens > 0 ? nllSum / calibrationTokens : Number.NaN,
        margin: parts.nll ? balancedMargin(choiceLogProbs, this.choiceLabels) : Number.NaN,
      };
    });
  }
}

/** Most prefix sets measured per batch in the non-greedy walk (the window halves after a rejection, doubles after a clean pass). */
const PREFIX_WINDOW = 32;

function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((s, v) => s + v, 0) / values.length;
}

/** Mean over the right answers of the mean margin log p(right) − log Σ p(wrong) of their items; NaN without items. */
function balancedMargin(logProbs: readonly number[][], labels: readonly number[]): number {
  const byLabel = new Map<number, number[]>();
  labels.forEach((label, i) => {
    const wrong = logProbs[i]!.filter((_, c) => c !== label);
    byLabel.set(label, [...(byLabel.get(label) ?? []), logProbs[i]![label]! - logSumExp(wrong)]);
  });
  return mean([...byLabel.values()].map(mean));
}

/** Mean gap L_A − L_B over the pairs. */
export function meanGap(score: VariantScore): number {
  return score.meanA - score.meanB;
}

/** Single-neuron side-A effects of `candidates`, by ablating each alone; with `blockSize` > 1, blocks first. */
async function sideAEffects(probe: BehaviourProbe, candidates: NeuronRef[], base: VariantScore, options: BehaviourSelectionOptions): Promise<NeuronEffect[]> {
  const single = async (neurons: NeuronRef[]): Promise<NeuronEffect[]> => {
    const scores = await probe.score(neurons.map((n) => [n]), { a: true });
    return neurons.map((n, i) => ({ ...n, deltaA: scores[i]!.meanA - base.meanA, deltaB: Number.NaN, deltaNll: Number.NaN, deltaMargin: Number.NaN }));
  };
  if (options.blockSize <= 1) return single(candidates);
  const blocks: NeuronRef[][] = [];
  for (const n of candidates) {
    const last = blocks[blocks.length - 1];
    if (last && last.length < options.blockSize && last[0]!.layer === n.layer) last.push(n);
    else blocks.push([n]);
  }
  const scores = await probe.score(blocks, { a: true });
  const order = blocks.map((_, i) => i).sort((x, y) => scores[x]!.meanA - scores[y]!.meanA);
  const refined: NeuronRef[] = [];
  for (const i of order) {
    if (refined.length >= options.refineFactor * options.maxNeurons || scores[i]!.meanA >= base.meanA) break;
    refined.push(...blocks[i]!);
  }
  return single(refined);
}

/**
 * Chooses neurons whose removal lowers side A's log-odds of the negative continuations on the selection pairs:
 * ranks every candidate by its measured effect on L_A, admits one only when it (alone) and the set with it raise
 * L_B by at most `sideBTolerance` and the calibration NLL by at most `maxNllIncrease`, and stops at `targetGap` or
 * `maxNeurons`. Every set-level figure is measured exactly with all chosen neurons masked at once.
 */
export async function selectByBehaviour(probe: BehaviourProbe, widths: readonly number[], options: BehaviourSelectionOptions): Promise<BehaviourSelection> {
  const layers = options.layers ?? widths.map((_, i) => i);
  const candidates = layers.flatMap((layer) => Array.from({ length: widths[layer]! }, (_, neuron) => ({ layer, neuron })));
  const [base] = await probe.score([[]], { a: true, b: true, nll: true });
  // A NaN margin (no choice items) passes: the comparison below is false, not a violation.
  const fits = (score: VariantScore): boolean =>
    score.meanB - base!.meanB <= options.sideBTolerance && score.nll - base!.nll <= options.maxNllIncrease && !(base!.margin - score.margin > options.maxMarginDrop);

  // Candidates that lower L_A, best first; their side-B and ability effects measured alone.
  const measured = await sideAEffects(probe, candidates, base!, options);
  const effectsA = measured.filter((e) => e.deltaA < 0).sort((x, y) => x.deltaA - y.deltaA || x.layer - y.layer || x.neuron - y.neuron);
  const shortlist = effectsA.slice(0, options.refineFactor * options.maxNeurons);
  const alone = await probe.score(shortlist.map((e) => [e]), { b: true, nll: true });
  const admissible = shortlist
    .map((e, i) => ({ ...e, deltaB: alone[i]!.meanB - base!.meanB, deltaNll: alone[i]!.nll - base!.nll, deltaMargin: alone[i]!.margin - base!.margin }))
    .filter((e, i) => fits(alone[i]!))
    // Among the neurons that lower L_A most, those that narrow the gap most first: a neuron that lowers both sides alike narrows nothing.
    .sort((x, y) => x.deltaA - x.deltaB - (y.deltaA - y.deltaB) || x.layer - y.layer || x.neuron - y.neuron);

  const chosen: NeuronEffect[] = [];
  let current = base!;
  if (options.greedy) {
    // Lazy greedy: each candidate keeps its last measured narrowing of the gap (alone at first, then with the chosen
    // set); each step re-measures the best few by that score with the chosen set and takes the best fresh one.
    let pool = admissible.map((e) => ({ e, gain: e.deltaB - e.deltaA }));
    while (chosen.length < options.maxNeurons && meanGap(current) > options.targetGap && pool.length > 0) {
      pool.sort((x, y) => y.gain - x.gain);
      const trial = pool.slice(0, options.greedyCandidates);
      const scores = await probe.score(trial.map(({ e }) => [...chosen, e]), { a: true, b: true, nll: true });
      const gap = meanGap(current);
      const rejected = new Set<NeuronEffect>();
      trial.forEach((t, i) => {
        const s = scores[i]!;
        t.gain = gap - meanGap(s);
        // Candidates that break a limit or no longer narrow the gap with the chosen set leave the pool.
        if (!fits(s) || t.gain <= 0 || s.meanA >= base!.meanA) rejected.add(t.e);
      });
      const best = trial
        .map((t, i) => ({ t, s: scores[i]! }))
        .filter(({ t }) => !rejected.has(t.e))
        .sort((x, y) => y.t.gain - x.t.gain)[0];
      if (best) {
        chosen.push(best.t.e);
        current = best.s;
        rejected.add(best.t.e);
      }
      pool = pool.filter(({ e }) => !rejected.has(e));
    }
  } else {
    // Prefixes of the ranking measured a window at a time; a neuron whose prefix breaks a limit or does not narrow the
    // gap is dropped and the prefixes after it measured again. Once a limit binds, most candidates are rejected: the window shrinks so that
    // each rejection wastes few measured prefixes (the choice does not depend on the window).
    let ranked = admissible;
    let settled = 0;
    let done = false;
    let window = PREFIX_WINDOW;
    while (!done && settled < Math.min(options.maxNeurons, ranked.length)) {
      const end = Math.min(options.maxNeurons, ranked.length, settled + window);
      const prefixes = Array.from({ length: end - settled }, (_, k) => ranked.slice(0, settled + k + 1));
      const scores = await probe.score(prefixes, { a: true, b: true, nll: true });
      let next = end;
      for (let k = 0; k < scores.length; k++) {
        // A neuron that breaks a limit, or no longer narrows the gap together with the ones before it, is skipped.
        if (!fits(scores[k]!) || meanGap(scores[k]!) >= meanGap(current)) {
          ranked = [...ranked.slice(0, settled + k), ...ranked.slice(settled + k + 1)];
          next = settled + k;
          window = Math.max(1, window >> 1);
          break;
        }
        current = scores[k]!;
        if (meanGap(current) <= options.targetGap) {
          next = settled + k + 1;
          done = true;
          break;
        }
      }
      if (next === end) window = Math.min(PREFIX_WINDOW, window * 2);
      settled = next;
    }
    chosen.push(...ranked.slice(0, settled));
  }
  const [after] = chosen.length > 0 ? await probe.score([chosen], { a: true, b: true, nll: true }) : [base!];
  const byLayer = widths.map(() => [] as number[]);
  for (const { layer, neuron } of chosen) byLayer[layer]!.push(neuron);
  return {
    layers: byLayer.map((l) => l.sort((a, b) => a - b)),
    chosen,
    before: base!,
    after: after!,
    cost: { ...probe.cost },
    measured: measured.length,
    effects: measured,
  };
}
