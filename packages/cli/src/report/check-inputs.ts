import { describeJson } from '@fairprune/core';

/**
 * The shapes of the report's JSON inputs, as far as the report reads them, so a file with `null`, an array or a
 * string where a number belongs is refused naming the file and the field instead of failing deep in the rendering.
 */
export type Shape =
  | 'string'
  | 'number'
  | 'boolean'
  | 'object'
  | { array: Shape }
  | { record: Shape }
  | { fields: Record<string, Shape>; optional?: readonly string[] }
  | { nullable: Shape };

const stats: Shape = { fields: { mean_difference: 'number' } };
const metric: Shape = {
  fields: { overall: stats, overall_excluding_gate_up: stats, components: { record: stats }, layers: { record: stats } },
  optional: ['overall_excluding_gate_up', 'components'],
};
const behaviour: Shape = { array: { fields: { a: 'string', b: 'string', logOddsA: 'number', logOddsB: 'number', gap: 'number' } } };

/** `bias-report.json` (and `.before` / `.after`). */
export const BIAS_REPORT: Shape = {
  fields: {
    pairs: { array: { fields: { a: 'string', b: 'string' } } },
    metric: { nullable: metric },
    behaviour,
    eval: { fields: { metric: { nullable: metric }, behaviour }, optional: ['metric', 'behaviour'] },
    model: { fields: { path: 'string' }, optional: ['path'] },
  },
  optional: ['pairs', 'metric', 'behaviour', 'eval', 'model'],
};

const sizes: Shape = { array: 'number' };
/** `pruning-plan.json`, the fields the report shows. */
export const PLAN: Shape = {
  fields: {
    model: { fields: { path: 'string', intermediateSizes: sizes }, optional: ['path', 'intermediateSizes'] },
    options: 'object',
    mode: 'string',
    parameters: { fields: { before: 'number', after: 'number' } },
    intermediateSizes: sizes,
  },
  optional: ['model', 'options', 'mode', 'parameters', 'intermediateSizes'],
};

const side: Shape = { fields: { text: 'string', tokens: { array: 'string' }, activations: { array: 'number' } } };
/** `token-activations.json`, or the `tokenActivations` of `neuron-scores.json`. */
export const TOKEN_ACTIVATIONS: Shape = { fields: { key: 'string', width: 'number', a: side, b: side } };

/** `neuron-scores.json`. */
export const NEURON_SCORES: Shape = {
  fields: {
    estimator: 'string',
    aggregation: 'string',
    importance: 'string',
    layers: { array: { fields: { layer: 'number', bias: { array: 'number' }, importance: { array: 'number' }, pruned: { array: 'boolean' } } } },
    tokenActivations: TOKEN_ACTIVATIONS,
  },
  optional: ['estimator', 'aggregation', 'importance', 'tokenActivations'],
};

/**
 * Checks `value` against `shape`; `file` names the input in the error.
 * @throws `"report: <file>: <field path> must be <what>, found <what>"`.
 */
export function checkShape(value: unknown, shape: Shape, file: string, path = ''): void {
  const fail = (expected: string): never => {
    throw new Error(`report: ${file}: ${path === '' ? 'the file' : `field "${path}"`} must be ${expected}, found ${describeJson(value)}`);
  };
  const join = (key: string | number) => (typeof key === 'number' ? `${path}[${key}]` : path === '' ? key : `${path}.${key}`);
  if (typeof shape === 'string') {
    if (shape === 'number' ? typeof value !== 'number' || !Number.isFinite(value) : shape === 'object' ? !isObject(value) : typeof value !== shape) {
      fail(shape === 'object' ? 'an object' : `a ${shape}`);
    }
    return;
  }
  if ('nullable' in shape) {
    if (value !== null) checkShape(value, shape.nullable, file, path);
    return;
  }
  if ('array' in shape) {
    if (!Array.isArray(value)) return fail('an array');
    value.forEach((item, i) => checkShape(item, shape.array, file, join(i)));
    return;
  }
  if (!isObject(value)) return fail('an object');
  if ('record' in shape) {
    for (const [key, item] of Object.entries(value)) checkShape(item, shape.record, file, join(key));
    return;
  }
  for (const [key, field] of Object.entries(shape.fields)) {
    if (value[key] === undefined && shape.optional?.includes(key)) continue;
    checkShape(value[key], field, file, join(key));
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
