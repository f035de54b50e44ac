import { InvalidArgumentError } from 'commander';

/**
 * Value parsers for commander options, used by every command instead of `Number(flags.x)`. Each throws commander's
 * `InvalidArgumentError`, which commander prints as `option '--flag <x>' argument 'value' is invalid. <reason>`
 * (the flag as typed, the value as given) and `main` turns into exit status 2.
 */

/** A number written out in full: `Number()` alone reads '' as 0 and `parseFloat` reads '1.5x' as 1.5. */
function toNumber(value: string): number {
  const n = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError('expected a number.');
  return n;
}

/** An integer ≥ `min`. */
export function integerFlag(min: number): (value: string) => number {
  return (value) => {
    const n = toNumber(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer ≥ ${min}.`);
    return n;
  };
}

/** Bounds of {@link numberFlag}; `exclusive` makes both bounds strict. */
export interface NumberRange {
  min?: number;
  max?: number;
  exclusive?: boolean;
}

function describeRange({ min, max, exclusive }: NumberRange): string {
  if (min !== undefined && max !== undefined) return exclusive ? `strictly between ${min} and ${max}` : `in [${min}, ${max}]`;
  if (min !== undefined) return `${exclusive ? '>' : '≥'} ${min}`;
  if (max !== undefined) return `${exclusive ? '<' : '≤'} ${max}`;
  return '';
}

function inRange(n: number, { min, max, exclusive }: NumberRange): boolean {
  if (!Number.isFinite(n)) return false;
  if (min !== undefined && (exclusive ? n <= min : n < min)) return false;
  if (max !== undefined && (exclusive ? n >= max : n > max)) return false;
  return true;
}

/** A finite number, optionally within a range. */
export function numberFlag(range: NumberRange = {}): (value: string) => number {
  return (value) => {
    const n = toNumber(value);
    if (!inRange(n, range)) throw new InvalidArgumentError(`expected a number ${describeRange(range)}.`);
    return n;
  };
}

/** A comma-separated list of integers ≥ `min`, e.g. `0,3,5`. */
export function integerListFlag(min: number): (value: string) => number[] {
  return (value) =>
    value.split(',').map((part) => {
      const n = part.trim() === '' ? Number.NaN : Number(part);
      if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`"${part}" is not an integer ≥ ${min}; expected a list like 0,3,5.`);
      return n;
    });
}

/** A comma-separated list of `<layer>:<fraction>`, fractions strictly between 0 and 1, e.g. `13:0.1,14:0.15`. */
export function layerFractionsFlag(value: string): Record<number, number> {
  const out: Record<number, number> = {};
  for (const part of value.split(',')) {
    const [layer, fraction, extra] = part.split(':');
    const l = layer === undefined || layer.trim() === '' ? Number.NaN : Number(layer);
    const f = fraction === undefined || fraction.trim() === '' ? Number.NaN : Number(fraction);
    if (extra !== undefined || !Number.isInteger(l) || l < 0 || !inRange(f, { min: 0, max: 1, exclusive: true })) {
      throw new InvalidArgumentError(`"${part}" is not <layer>:<fraction> with a fraction strictly between 0 and 1; expected a list like 13:0.1,14:0.15.`);
    }
    out[l] = f;
  }
  return out;
}

/** A comma-separated list of some of `choices`, blanks dropped; an empty list or an unknown name is refused. */
export function choiceListFlag(choices: readonly string[]): (value: string) => string[] {
  return (value) => {
    const names = value.split(',').map((c) => c.trim()).filter((c) => c !== '');
    const unknown = names.filter((name) => !choices.includes(name));
    if (names.length === 0 || unknown.length > 0) {
      throw new InvalidArgumentError(`${unknown.length ? `unknown ${unknown.map((u) => `"${u}"`).join(', ')}; ` : ''}expected a comma-separated list of ${choices.join(', ')}.`);
    }
    return names;
  };
}
