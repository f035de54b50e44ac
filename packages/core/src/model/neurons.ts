/**
 * One vocabulary for MLP neurons in stored weights, used by the weight readers, the validation and the surgery:
 * which axis holds the neurons, the Hugging Face tensor names, the fused gate_up index mapping, and the matrix edit
 * that prunes them.
 */
import type { MatrixEdit } from '../prune/surgery-matrix.js';
import type { PruneMode } from '../prune/plan.js';
import type { WeightLayout } from './graph-map.js';

/**
 * The neurons a pruning removes or zeroes: layer index → neuron indices. The one in-memory form from selection to
 * the written model and its verification; a plan file stores it as `layers` (see `selectionOfPlan` / `buildPlan`).
 */
export type NeuronSelection = ReadonlyMap<number, readonly number[]>;

/** Axis of a stored 2-D weight: its first (`rows`) or second (`cols`) dimension. */
export type NeuronAxis = 'rows' | 'cols';

/** gate/up (and their biases) produce the neurons: `output`; down consumes them: `input`. */
export type NeuronRole = 'input' | 'output';

/** An MLP projection as Hugging Face names it; `gate_up_proj` is Phi-3's fused gate and up. */
export type MlpProjection = 'gate_proj' | 'up_proj' | 'down_proj' | 'gate_up_proj';

/**
 * The axis of a stored weight that indexes the MLP neurons. `in_out` is an ONNX MatMul initializer ([in, out]),
 * `out_in` the HF layout ([out, in]); a 1-D tensor (a bias) has one axis, reported as `cols` (one row).
 */
export function neuronAxis(layout: WeightLayout, role: NeuronRole, dims = 2): NeuronAxis {
  if (dims === 1) return 'cols';
  return (role === 'output') === (layout === 'in_out') ? 'cols' : 'rows';
}

/** `…layers.{i}.mlp.{projection}.{weight|bias}`: Hugging Face's MLP tensor names. */
const HF_MLP_TENSOR = /(?:^|\.)layers\.(\d+)\.mlp\.(gate_proj|up_proj|down_proj|gate_up_proj)\.(weight|bias)$/;

/** What a Hugging Face tensor name says about an MLP tensor, or undefined for any other tensor. */
export function parseHfMlpTensor(name: string): { layer: number; projection: MlpProjection; kind: 'weight' | 'bias' } | undefined {
  const match = HF_MLP_TENSOR.exec(name);
  return match ? { layer: Number(match[1]), projection: match[2] as MlpProjection, kind: match[3] as 'weight' | 'bias' } : undefined;
}

/** Where neurons lie on a fused gate_up axis of 2·I entries: neuron n is gate entry n and up entry I + n. */
export function fusedGateUpIndices(neurons: readonly number[], fusedSpan: number): number[] {
  return [...neurons, ...neurons.map((n) => n + fusedSpan / 2)];
}

/**
 * The edit that prunes `indices` of a stored [rows, cols] weight along `axis`: drop them (`remove`) or zero them.
 * @param indices  Positions along `axis`, in any order (the edit lists them ascending).
 */
export function neuronEdit(shape: { rows: number; cols: number; elementBytes: number }, axis: NeuronAxis, indices: readonly number[], mode: PruneMode): MatrixEdit {
  const key = `${mode === 'remove' ? 'drop' : 'zero'}${axis === 'rows' ? 'Rows' : 'Cols'}` as const;
  return { ...shape, [key]: [...indices].sort((a, b) => a - b) };
}
