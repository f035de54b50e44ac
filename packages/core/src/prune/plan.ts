import { asJsonObject, describeJson, jsonField, readJsonFile, type JsonObject } from '../io/read-json.js';
import type { NeuronSelection } from '../model/neurons.js';
import type { BehaviourPlanRecord } from './behaviour-run.js';

/** `remove` slices gate/up outputs and down inputs (smaller model); `zero` keeps the shapes and zeroes them. */
export type PruneMode = 'remove' | 'zero';
/** Every {@link PruneMode}, for option validation and UIs. */
export const PRUNE_MODES: readonly PruneMode[] = ['remove', 'zero'];

export const PLAN_FORMAT = 'fairprune.pruning-plan';
export const PLAN_VERSION = 1;

/** Which model a plan was computed on: the folder, and a hash of the weight bytes that were read. */
export interface PlanModelIdentity {
  /** Absolute path of the model folder the plan was made on. */
  path: string;
  /** The weight file the neurons were scored on (relative to `path`). */
  weightsFile: string;
  /** {@link ModelImportance.weightsHash} of the weights the neurons were scored on; a plan re-applied to other weights is refused. */
  weightsHash: string;
  /** Decoder layers. */
  numLayers: number;
  /** Residual width. */
  hiddenSize: number;
  /** Expansion width per layer before pruning. */
  intermediateSizes: number[];
}

/** A manifest that says exactly which neurons go, with every option that led there; `apply` re-applies it. */
export interface PruningPlan {
  /** File format tag, `fairprune.pruning-plan`. */
  format: typeof PLAN_FORMAT;
  /** File format version (1). */
  version: typeof PLAN_VERSION;
  /** ISO 8601 time the plan was made. */
  createdAt: string;
  /** What made it (`@fairprune/core`). */
  tool: string;
  /** The model the plan was computed on. */
  model: PlanModelIdentity;
  /** Every option of the run (pairs, estimator, aggregation, importance, method, w, fractions, …), as given. */
  options: Record<string, unknown>;
  /** Remove or zero the neurons. */
  mode: PruneMode;
  /** Pruned neuron indices per layer, ascending; every decoder layer is listed ([] when untouched). */
  layers: Record<string, number[]>;
  /** Parameter counts of the model (safetensors tensors, else the ONNX float initializers). */
  parameters: {
    /** Before pruning. */
    before: number;
    /** After pruning (equal to `before` in zero mode). */
    after: number;
    /** Parameters removed (remove) or set to zero (zero). */
    affected: number;
  };
  /** Expansion width per layer after pruning (unchanged in zero mode). */
  intermediateSizes: number[];
  /** When a plan made on other weights was applied to this model: the model and time it was made on. */
  origin?: {
    /** The model the neurons were selected on. */
    model: PlanModelIdentity;
    /** When that plan was made. */
    createdAt: string;
  };
  /** With `method: 'behaviour'`: the objective, the limits, and the measured effects of the chosen neurons. */
  behaviour?: BehaviourPlanRecord;
}

export interface BuildPlanInput {
  model: PlanModelIdentity;
  options: Record<string, unknown>;
  mode: PruneMode;
  /** The neurons pruned; the plan lists every layer of `model` (empty when untouched). */
  selection: NeuronSelection;
  parametersBefore: number;
  /** Parameters tied to one expansion neuron: gate row + up row + down column (+ gate/up biases). */
  parametersPerNeuron: number;
  tool: string;
  /** Set when the neurons were selected on another model (a plan re-applied to other weights). */
  origin?: PruningPlan['origin'];
  /** The behaviour selection's record, when it chose the neurons. */
  behaviour?: BehaviourPlanRecord;
}

export function buildPlan(input: BuildPlanInput): PruningPlan {
  const outside = [...input.selection.keys()].filter((layer) => !(layer >= 0 && layer < input.model.intermediateSizes.length));
  if (outside.length > 0) throw new Error(`Pruning plan: the selection names layers ${outside.join(', ')}, the model has layers 0..${input.model.intermediateSizes.length - 1}`);
  const layers: Record<string, number[]> = {};
  input.model.intermediateSizes.forEach((_, layer) => (layers[String(layer)] = [...(input.selection.get(layer) ?? [])].sort((a, b) => a - b)));
  const plan: PruningPlan = {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    createdAt: new Date().toISOString(),
    tool: input.tool,
    model: input.model,
    options: input.options,
    mode: input.mode,
    layers,
    parameters: { before: input.parametersBefore, after: 0, affected: 0 },
    intermediateSizes: [],
    ...(input.origin ? { origin: input.origin } : {}),
    ...(input.behaviour ? { behaviour: input.behaviour } : {}),
  };
  const affected = Object.values(layers).reduce((sum, pruned) => sum + pruned.length, 0) * input.parametersPerNeuron;
  plan.parameters.affected = affected;
  plan.parameters.after = input.mode === 'remove' ? input.parametersBefore - affected : input.parametersBefore;
  plan.intermediateSizes = input.model.intermediateSizes.map((width, layer) =>
    input.mode === 'remove' ? width - layers[String(layer)]!.length : width,
  );
  validatePlan(plan, 'the new plan');
  return plan;
}

/** A plan's pruned neurons in memory (the plan file's `layers`, empty layers left out). */
export function planSelection(plan: PruningPlan): NeuronSelection {
  const map = new Map<number, number[]>();
  for (const [layer, indices] of Object.entries(plan.layers)) if (indices.length > 0) map.set(Number(layer), indices);
  return map;
}

/**
 * Checks a parsed plan's format, version, mode and neuron indices (in range, no repeats, at least one neuron kept per
 * layer) and returns it typed; `where` names the file in messages.
 * @throws naming `where` and the first problem found.
 */
export function validatePlan(value: unknown, where: string): PruningPlan {
  const fail = (message: string): never => {
    throw new Error(`Pruning plan ${where}: ${message}`);
  };
  const checked = <T>(read: () => T): T => {
    try {
      return read();
    } catch (error) {
      return fail((error as Error).message);
    }
  };
  const plan = checked(() => asJsonObject(value, 'the file')) as unknown as PruningPlan;
  if (plan.format !== PLAN_FORMAT) fail(`"format" is ${JSON.stringify(plan.format)}, expected "${PLAN_FORMAT}"`);
  if (plan.version !== PLAN_VERSION) fail(`unsupported version ${JSON.stringify(plan.version)} (this fairprune reads ${PLAN_VERSION})`);
  if (!PRUNE_MODES.includes(plan.mode)) fail(`"mode" must be remove or zero, got ${JSON.stringify(plan.mode)}`);
  const model = checked(() => jsonField(plan as unknown as JsonObject, 'model', 'object', 'the file', true));
  checked(() => jsonField(model, 'weightsHash', 'string', '"model"', true));
  const sizes = checked(() => jsonField(model, 'intermediateSizes', 'array', '"model"', true));
  if (!sizes.every((w) => Number.isSafeInteger(w) && (w as number) > 0)) fail('"model.intermediateSizes" must list positive integers');
  const parameters = checked(() => jsonField(plan as unknown as JsonObject, 'parameters', 'object', 'the file', true));
  for (const key of ['before', 'after', 'affected']) checked(() => jsonField(parameters, key, 'integer', '"parameters"', true));
  const layers = checked(() => jsonField(plan as unknown as JsonObject, 'layers', 'object', 'the file', true));
  for (const [layer, indices] of Object.entries(layers)) {
    const l = Number(layer);
    const width = sizes[l] as number | undefined;
    if (!/^\d+$/.test(layer) || width === undefined) fail(`layer "${layer}" is not one of the model's ${sizes.length} layers`);
    if (!Array.isArray(indices)) fail(`layer ${layer}: expected an array of neuron indices, found ${describeJson(indices)}`);
    const seen = new Set<number>();
    for (const index of indices as unknown[]) {
      if (!Number.isInteger(index) || (index as number) < 0 || (index as number) >= width!) {
        fail(`layer ${layer}: neuron ${JSON.stringify(index)} is outside 0..${width! - 1}`);
      }
      if (seen.has(index as number)) fail(`layer ${layer}: neuron ${index as number} is listed twice`);
      seen.add(index as number);
    }
    if ((indices as unknown[]).length >= width!) fail(`layer ${layer}: would prune all ${width} neurons`);
  }
  return plan;
}

/**
 * A plan's neuron indices mean something only for the MLP widths it was made on; checked before any analysis.
 * @throws naming both width lists.
 */
export function requirePlanFitsModel(plan: PruningPlan, widths: readonly number[], where: string): void {
  if (plan.model.intermediateSizes.join() !== widths.join()) {
    throw new Error(`Pruning plan ${where} was made for MLP widths [${plan.model.intermediateSizes.join(', ')}], this model has [${widths.join(', ')}]`);
  }
}

/**
 * Reads and validates a `pruning-plan.json`, e.g. to re-apply it with {@link PruneOptions.plan}.
 * @throws when the file is unreadable, not JSON, or fails {@link validatePlan}.
 */
export async function readPlan(file: string): Promise<PruningPlan> {
  return validatePlan(readJsonFile(file), file);
}
