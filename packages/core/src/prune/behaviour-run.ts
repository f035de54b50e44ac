/** The prune pipeline's side of `--method behaviour` and `--compensate mean`: options, defaults, and the model work. */
import type { PromptPair } from '../bias/pairs.js';
import type { ModelFolder } from '../model/folder.js';
import type { NeuronSelection } from '../model/neurons.js';
import { OnnxWeights } from '../model/weights.js';
import { ActivationCapture } from '../runtime/capture.js';
import { NeuronMaskedModel } from '../runtime/neuron-masks.js';
import type { SessionDevice } from '../runtime/session.js';
import {
  BEHAVIOUR_DEFAULTS,
  BehaviourProbe,
  COMPENSATIONS,
  meanGap,
  selectByBehaviour,
  type BehaviourSelection,
  type BehaviourSelectionOptions,
  type ChoiceItem,
  type Compensation,
  type NeuronEffect,
  type ProbeCost,
  type VariantScore,
} from './behaviour-select.js';
import { compensationBiases, meanActivations } from './compensate.js';

/** Settings of `--method behaviour`; every field defaults to {@link BEHAVIOUR_DEFAULTS}. */
export interface BehaviourPruneOptions {
  /** Most neurons removed in all (default: `fraction` of all neurons, else 30%). */
  maxNeurons?: number;
  /** Stop once the selection pairs' mean gap is at or below this (nats). */
  targetGap?: number;
  /** Largest allowed rise of the mean L_B, per neuron and for the set (nats). */
  sideBTolerance?: number;
  /** Largest allowed rise of the calibration NLL, per neuron and for the set (nats per token). */
  maxNllIncrease?: number;
  /** Largest allowed fall of the answer margin on `ability`'s items, per neuron and for the set (nats). */
  maxMarginDrop?: number;
  /** Multiple-choice items guarding an ability (e.g. BoolQ-format documents disjoint from any evaluated set); none: no margin guard. */
  ability?: AbilityGuard;
  /** Re-measure the best candidates with the chosen set after each choice. */
  greedy?: boolean;
  /** Ablate blocks of this many adjacent neurons before single neurons (1 = every neuron alone). */
  blockSize?: number;
}

/** The items of the answer-margin guard and where they came from. */
export interface AbilityGuard {
  /** The items. */
  items: readonly ChoiceItem[];
  /** Their source, for the plan. */
  source: string;
}

/** What the plan keeps of the answer-margin guard. */
export interface AbilityGuardRecord {
  /** Where the items came from. */
  source: string;
  /** How many items. */
  items: number;
}

/** Selection settings and the margin guard's items, as the prune pipeline resolves them. */
export interface BehaviourSettings extends BehaviourSelectionOptions {
  /** The answer-margin guard's items (none: no margin guard). */
  ability?: AbilityGuard;
}

/** What the plan records of a behaviour selection: the objective, the limits, and what was measured. */
export interface BehaviourPlanRecord {
  /** The objective, in words. */
  objective: string;
  /** The selection settings used. */
  settings: Omit<BehaviourSelectionOptions, 'layers'>;
  /** Where the calibration texts came from. */
  calibration: string;
  /** Where the answer-margin guard's items came from, and how many (absent: no margin guard). */
  ability?: AbilityGuardRecord;
  /** Mean L_A, L_B, gap and calibration NLL on the selection pairs before pruning. */
  before: ScoreSummary;
  /** The same with every chosen neuron removed at once. */
  after: ScoreSummary;
  /** Each chosen neuron's effect measured alone, in the order admitted. */
  chosen: NeuronEffect[];
  /** Forward passes and tokens the selection ran, and the candidates measured one by one. */
  cost: SelectionCost;
}

/** A selection's cost: its forwards and tokens, and how many candidates were measured one by one. */
export interface SelectionCost extends ProbeCost {
  /** Candidates whose single-neuron effect was measured. */
  measured: number;
}

/** Mean objective values of one model variant. */
export interface ScoreSummary {
  /** Mean L_A (nats). */
  meanA: number;
  /** Mean L_B (nats). */
  meanB: number;
  /** meanA − meanB. */
  gap: number;
  /** Mean next-token NLL on the calibration texts (nats per token). */
  nll: number;
  /** Mean answer margin on the guard's items (nats; null without items). */
  margin: number | null;
}

function summary(score: VariantScore): ScoreSummary {
  return { meanA: score.meanA, meanB: score.meanB, gap: meanGap(score), nll: score.nll, margin: Number.isNaN(score.margin) ? null : score.margin };
}

/** Full selection settings from the prune options; `numNeurons` is the model's total MLP width. */
export function behaviourSettings(
  options: { behaviour?: BehaviourPruneOptions; fraction?: number; layers?: readonly number[]; compensate?: Compensation },
  numNeurons: number,
): BehaviourSettings {
  const b = options.behaviour ?? {};
  return {
    maxNeurons: b.maxNeurons ?? Math.floor((options.fraction ?? BEHAVIOUR_DEFAULTS.maxNeuronsFraction) * numNeurons),
    targetGap: b.targetGap ?? BEHAVIOUR_DEFAULTS.targetGap,
    sideBTolerance: b.sideBTolerance ?? BEHAVIOUR_DEFAULTS.sideBTolerance,
    maxNllIncrease: b.maxNllIncrease ?? BEHAVIOUR_DEFAULTS.maxNllIncrease,
    maxMarginDrop: b.maxMarginDrop ?? BEHAVIOUR_DEFAULTS.maxMarginDrop,
    greedy: b.greedy ?? BEHAVIOUR_DEFAULTS.greedy,
    greedyCandidates: BEHAVIOUR_DEFAULTS.greedyCandidates,
    blockSize: b.blockSize ?? BEHAVIOUR_DEFAULTS.blockSize,
    refineFactor: BEHAVIOUR_DEFAULTS.refineFactor,
    compensate: options.compensate ?? BEHAVIOUR_DEFAULTS.compensate,
    ...(options.layers !== undefined ? { layers: options.layers } : {}),
    ...(b.ability ? { ability: b.ability } : {}),
  };
}

/** Checks the behaviour and compensation options that need no model, naming the flag. */
export function validateBehaviourOptions(options: {
  behaviour?: BehaviourPruneOptions;
  compensate?: Compensation;
  calibrationTexts?: readonly string[];
  needsCalibration: boolean;
}): void {
  const b = options.behaviour ?? {};
  const nonNegative = (value: number | undefined, flag: string) => {
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) throw new Error(`${flag} must be a number ≥ 0, got ${String(value)}`);
  };
  nonNegative(b.sideBTolerance, '--side-b-tolerance');
  nonNegative(b.maxNllIncrease, '--max-nll-increase');
  nonNegative(b.maxMarginDrop, '--max-margin-drop');
  if (b.ability && b.ability.items.length === 0) throw new Error(`--ability-guard ${b.ability.source}: no items`);
  if (b.targetGap !== undefined && !Number.isFinite(b.targetGap)) throw new Error(`--target-gap must be a number, got ${String(b.targetGap)}`);
  if (b.maxNeurons !== undefined && !(Number.isInteger(b.maxNeurons) && b.maxNeurons >= 1)) throw new Error(`--max-neurons must be a positive integer, got ${String(b.maxNeurons)}`);
  if (b.blockSize !== undefined && !(Number.isInteger(b.blockSize) && b.blockSize >= 1)) throw new Error(`The block size must be a positive integer, got ${String(b.blockSize)}`);
  if (options.compensate !== undefined && !COMPENSATIONS.includes(options.compensate)) {
    throw new Error(`Unknown compensation "${String(options.compensate)}" (use ${COMPENSATIONS.join(' or ')})`);
  }
  if (options.needsCalibration && (options.calibrationTexts ?? []).filter((t) => t.trim() !== '').length === 0) {
    throw new Error('--method behaviour and --compensate mean need calibration texts (--calibration FILE); none were given');
  }
}

/** Common inputs of the model work below. */
export interface BehaviourModelInputs {
  folder: ModelFolder;
  onnxPath: string;
  calibrationTexts: readonly string[];
  device?: SessionDevice;
  threads?: number;
}

/** Each layer's mean GLU activation over the calibration texts (for mean replacement and compensation). */
export async function calibrationMeans(inputs: BehaviourModelInputs): Promise<Float32Array[]> {
  const capture = await ActivationCapture.create(inputs.onnxPath, {
    keys: ['glu_product'],
    ...(inputs.device ? { device: inputs.device } : {}),
    ...(inputs.threads !== undefined ? { threads: inputs.threads } : {}),
  });
  try {
    return await meanActivations(capture, inputs.folder.tokenizer, inputs.calibrationTexts);
  } finally {
    await capture.release();
  }
}

/**
 * Runs the behaviour selection on one masked session over the model: measures, chooses, and returns the choice with
 * the record the plan keeps.
 */
export async function chooseByBehaviour(
  inputs: BehaviourModelInputs & { pairs: readonly PromptPair[]; calibrationSource: string; means?: readonly Float32Array[] },
  settings: BehaviourSettings,
  onProgress: (message: string) => void,
): Promise<{ selection: BehaviourSelection; record: BehaviourPlanRecord }> {
  const model = await NeuronMaskedModel.create(inputs.onnxPath, {
    replacement: inputs.means !== undefined,
    ...(inputs.device ? { device: inputs.device } : {}),
    ...(inputs.threads !== undefined ? { threads: inputs.threads } : {}),
  });
  try {
    const { layers: _layers, ability, ...recorded } = settings;
    const calibration = { texts: inputs.calibrationTexts, ...(ability ? { choices: ability.items } : {}) };
    const probe = new BehaviourProbe(model, inputs.folder.tokenizer, inputs.pairs, calibration, inputs.means);
    onProgress(`behaviour: measuring the effect of every candidate neuron on ${inputs.pairs.length} pairs`);
    const selection = await selectByBehaviour(probe, model.widths, settings);
    return {
      selection,
      record: {
        objective: 'per prompt L = log Σ p(negative continuations) − log Σ p(positive continuations); side A = each pair\'s "a"; gap = mean L_A − mean L_B',
        settings: recorded,
        calibration: inputs.calibrationSource,
        ...(ability ? { ability: { source: ability.source, items: ability.items.length } } : {}),
        before: summary(selection.before),
        after: summary(selection.after),
        chosen: selection.chosen,
        cost: { ...selection.cost, measured: selection.measured },
      },
    };
  } finally {
    await model.release();
  }
}

/** The compensation biases for a selection, from the calibration means and the model's down projections. */
export function meanCompensation(onnxPath: string, means: readonly Float32Array[], selection: NeuronSelection): Map<number, Float32Array> {
  const weights = new OnnxWeights(onnxPath);
  try {
    return compensationBiases(weights, means, selection);
  } finally {
    weights.close();
  }
}
