/** optiPfair-compatible bias metrics (`calculate_bias_metrics`), computed from per-key activation differences
 *  d(l,h) = mean_{t,j} |A[t,j] − B[t,j]| of each prompt pair. */

/** The six hook types optiPfair captures by default, in report order. */
export const HOOK_TYPES = ['input_norm', 'attention_output', 'gate_proj', 'up_proj', 'down_proj', 'mlp_output'] as const;
/** One of {@link HOOK_TYPES}. */
export type HookType = (typeof HOOK_TYPES)[number];

/** Components that pruning shrinks: removed neurons vanish from them, which lowers their d mechanically. */
export const PRUNED_HOOK_TYPES: readonly string[] = ['gate_proj', 'up_proj'];

export function activationKey(type: string, layer: number): string {
  return `${type}_layer_${layer}`;
}

export function parseActivationKey(key: string): { type: string; layer: number } {
  const match = /^(.+)_layer_(\d+)$/.exec(key);
  if (!match) throw new Error(`Activation key "${key}" is not of the form <type>_layer_<index>`);
  return { type: match[1]!, layer: Number(match[2]) };
}

/** d(l,h) for every captured key of one prompt pair. */
export type PairDifferences = Readonly<Record<string, number>>;

/** optiPfair's statistics block. `std_difference` is the unbiased (n − 1) standard deviation like torch.std,
 *  except that a single value has std 0 (torch gives NaN, which is not valid JSON and means "no spread" here). */
export interface DifferenceStats {
  /** Mean of the values. */
  mean_difference: number;
  /** Largest value. */
  max_difference: number;
  /** Smallest value. */
  min_difference: number;
  /** Unbiased standard deviation (0 for a single value). */
  std_difference: number;
  /** Σ |v|. */
  l1_norm: number;
  /** √Σ v². */
  l2_norm: number;
  /** Number of values. */
  count: number;
}

/** How d evolves across layers for one component. Ratios are null where optiPfair would print inf (d_first = 0). */
export interface ProgressionMetrics {
  /** d of the last layer / d of the first. */
  first_to_last_ratio: number | null;
  /** Largest d / d of the first layer. */
  max_to_first_ratio: number | null;
  /** d of the last layer exceeds d of the first. */
  is_increasing: boolean;
  /** Key (`<type>_layer_<i>`) with the largest d. */
  layer_with_max_diff: string;
  /** d per key, in layer order. */
  mean_diffs_by_layer: Record<string, number>;
}

/** Statistics of one hook type across layers (over the pair-averaged d of each of its keys). */
export interface ComponentMetrics extends DifferenceStats {
  /** Layers this component was measured at. */
  num_layers: number;
  /** Present when the component has at least two layers (as in optiPfair). */
  progression_metrics?: ProgressionMetrics;
}

/** Per key: `mean_difference` is d averaged over pairs (optiPfair's value for one pair); max/min/std run across pairs. */
export type LayerMetrics = DifferenceStats;

/**
 * The optiPfair bias metrics of a pair set. Keys are `<hook type>_layer_<i>`; d of a key is
 * mean over tokens and values of |A − B| between the two prompts' activations.
 */
export interface BiasMetrics {
  /** Number of pairs averaged (pairs with equal token counts). */
  pairs: number;
  /** THE bias metric is `overall.mean_difference`: the unweighted mean of d over every key, averaged over pairs. */
  overall: DifferenceStats & {
    /** Keys averaged (components × layers). */
    total_layers: number;
  };
  /** Same statistics without gate_proj / up_proj, whose pruned neurons vanish from the measurement. */
  overall_excluding_gate_up: DifferenceStats & {
    /** Keys averaged. */
    total_layers: number;
  };
  /** Per hook type (e.g. `mlp_output`). */
  components: Record<string, ComponentMetrics>;
  /** Per key (e.g. `mlp_output_layer_3`). */
  layers: Record<string, LayerMetrics>;
}

/** Statistics of a list of values; see DifferenceStats for the std convention. */
export function differenceStats(values: readonly number[]): DifferenceStats {
  if (values.length === 0) throw new Error('differenceStats: no values');
  let sum = 0;
  let sumSquares = 0;
  let l1 = 0;
  let max = -Infinity;
  let min = Infinity;
  for (const v of values) {
    sum += v;
    sumSquares += v * v;
    l1 += Math.abs(v);
    if (v > max) max = v;
    if (v < min) min = v;
  }
  const mean = sum / values.length;
  let squaredDeviations = 0;
  for (const v of values) squaredDeviations += (v - mean) * (v - mean);
  const std = values.length > 1 ? Math.sqrt(squaredDeviations / (values.length - 1)) : 0;
  return {
    mean_difference: mean,
    max_difference: max,
    min_difference: min,
    std_difference: std,
    l1_norm: l1,
    l2_norm: Math.sqrt(sumSquares),
    count: values.length,
  };
}

/** Orders keys by layer, then by hook type (unknown types last, alphabetically). */
function compareKeys(x: string, y: string): number {
  const a = parseActivationKey(x);
  const b = parseActivationKey(y);
  if (a.layer !== b.layer) return a.layer - b.layer;
  const rank = (type: string) => {
    const i = (HOOK_TYPES as readonly string[]).indexOf(type);
    return i < 0 ? HOOK_TYPES.length : i;
  };
  return rank(a.type) - rank(b.type) || a.type.localeCompare(b.type);
}

/**
 * The bias metrics over several pairs. Every pair must carry the same keys. For one pair every number equals
 * optiPfair's `calculate_bias_metrics`; for several, overall/component statistics are taken over the
 * pair-averaged d of each key, so `overall.mean_difference` is the mean over pairs of each pair's metric.
 */
export function computeBiasMetrics(perPair: readonly PairDifferences[]): BiasMetrics {
  if (perPair.length === 0) throw new Error('computeBiasMetrics: no pairs with equal token counts to measure');
  const keys = Object.keys(perPair[0]!).sort(compareKeys);
  if (keys.length === 0) throw new Error('computeBiasMetrics: the first pair has no activation differences');
  perPair.forEach((pair, index) => {
    const other = Object.keys(pair);
    if (other.length !== keys.length || keys.some((k) => !(k in pair))) {
      throw new Error(`computeBiasMetrics: pair ${index} has keys [${other.join(', ')}], pair 0 has [${keys.join(', ')}]`);
    }
  });

  const layers: Record<string, LayerMetrics> = {};
  const averaged: Record<string, number> = {};
  for (const key of keys) {
    const stats = differenceStats(perPair.map((pair) => pair[key]!));
    layers[key] = stats;
    averaged[key] = stats.mean_difference;
  }

  const byType = new Map<string, string[]>();
  for (const key of keys) {
    const { type } = parseActivationKey(key);
    byType.set(type, [...(byType.get(type) ?? []), key]);
  }
  const components: Record<string, ComponentMetrics> = {};
  for (const [type, typeKeys] of byType) {
    const values = typeKeys.map((k) => averaged[k]!);
    const component: ComponentMetrics = { ...differenceStats(values), num_layers: typeKeys.length };
    if (typeKeys.length >= 2) component.progression_metrics = progression(typeKeys, values);
    components[type] = component;
  }

  const unprunedKeys = keys.filter((k) => !PRUNED_HOOK_TYPES.includes(parseActivationKey(k).type));
  return {
    pairs: perPair.length,
    overall: { ...differenceStats(keys.map((k) => averaged[k]!)), total_layers: keys.length },
    overall_excluding_gate_up: {
      ...differenceStats(unprunedKeys.length > 0 ? unprunedKeys.map((k) => averaged[k]!) : [0]),
      total_layers: unprunedKeys.length,
    },
    components,
    layers,
  };
}

/** `keys` are sorted by layer already (compareKeys). */
function progression(keys: readonly string[], values: readonly number[]): ProgressionMetrics {
  const first = values[0]!;
  const last = values[values.length - 1]!;
  const max = Math.max(...values);
  const mean_diffs_by_layer: Record<string, number> = {};
  keys.forEach((k, i) => (mean_diffs_by_layer[k] = values[i]!));
  return {
    first_to_last_ratio: first !== 0 ? last / first : null,
    max_to_first_ratio: first !== 0 ? max / first : null,
    is_increasing: last > first,
    layer_with_max_diff: keys[values.indexOf(max)]!,
    mean_diffs_by_layer,
  };
}
