// Argument checks done in TS before anything crosses into C++; every message names the function and argument.
import type { Axis, ColumnOp, Device, DType, ElementData, MatrixView, TensorView3 } from './types.js';

const dtypes: readonly DType[] = ['f32', 'f16', 'bf16'];
/** Every {@link Device}, for argument checks and UIs (the CLI's `--kernel-device` choices). */
export const DEVICES: readonly Device[] = ['auto', 'cpu', 'cuda'];
const axes: readonly Axis[] = ['rows', 'cols'];
const columnOps: readonly ColumnOp[] = ['sum', 'max'];

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(byteLength ${value.byteLength})`;
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'object') return 'an object';
  return `${String(value)} (${typeof value})`;
}

/** The one error helper: "fn: argument 'name': expected X but received Y". */
export function invalidArgument(fn: string, name: string, expected: string, actual: unknown, kind: 'type' | 'range' = 'type'): Error {
  const message = `${fn}: argument '${name}': expected ${expected} but received ${describe(actual)}`;
  return kind === 'type' ? new TypeError(message) : new RangeError(message);
}

export function bytesPerElement(dtype: DType): number {
  return dtype === 'f32' ? 4 : 2;
}

function checkPositiveInteger(fn: string, name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number') throw invalidArgument(fn, name, 'a positive integer', value);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw invalidArgument(fn, name, 'a positive integer (empty input is an error)', value, 'range');
  }
}

function checkOneOf<T extends string>(fn: string, name: string, value: unknown, allowed: readonly T[]): asserts value is T {
  if (!allowed.includes(value as T)) throw invalidArgument(fn, name, allowed.map((v) => `'${v}'`).join(' | '), value, 'range');
}

export function checkDevice(fn: string, name: string, value: unknown): asserts value is Device {
  checkOneOf(fn, name, value, DEVICES);
}

export function checkAxis(fn: string, name: string, value: unknown): asserts value is Axis {
  checkOneOf(fn, name, value, axes);
}

export function checkColumnOp(fn: string, name: string, value: unknown): asserts value is ColumnOp {
  checkOneOf(fn, name, value, columnOps);
}

/** totals: a Float64Array of `cols` values; terms: at least one Float32Array of rows × cols values each. */
export function checkTerms(fn: string, totals: unknown, terms: unknown, shape: { rows: number; cols: number }): void {
  if (typeof shape !== 'object' || shape === null) throw invalidArgument(fn, 'shape', '{ rows, cols }', shape);
  checkPositiveInteger(fn, 'shape.rows', shape.rows);
  checkPositiveInteger(fn, 'shape.cols', shape.cols);
  if (!(totals instanceof Float64Array)) throw invalidArgument(fn, 'totals', 'a Float64Array', totals);
  if (totals.length !== shape.cols) throw invalidArgument(fn, 'totals', `${shape.cols} values (shape.cols)`, totals, 'range');
  if (!Array.isArray(terms) || terms.length === 0) throw invalidArgument(fn, 'terms', 'a non-empty array of Float32Arrays', terms);
  terms.forEach((term: unknown, k) => {
    if (!(term instanceof Float32Array)) throw invalidArgument(fn, `terms[${k}]`, 'a Float32Array', term);
    if (term.length !== shape.rows * shape.cols) {
      throw invalidArgument(fn, `terms[${k}]`, `${shape.rows * shape.cols} values (shape.rows × shape.cols)`, term, 'range');
    }
  });
}

/** data (the argument `label`) must suit dtype (Float32Array ↔ f32, Uint16Array ↔ f16/bf16, Uint8Array ↔ any) and
 *  hold exactly `elements` elements. */
function checkData(fn: string, label: string, data: unknown, dtype: DType, elements: number, shape: string): asserts data is ElementData {
  const suits = data instanceof Uint8Array || (dtype === 'f32' ? data instanceof Float32Array : data instanceof Uint16Array);
  if (!suits) {
    const expected = dtype === 'f32' ? 'a Float32Array or Uint8Array' : 'a Uint16Array or Uint8Array';
    throw invalidArgument(fn, label, `${expected} (dtype ${dtype})`, data);
  }
  const needed = elements * bytesPerElement(dtype);
  if ((data as ElementData).byteLength !== needed) {
    throw invalidArgument(fn, label, `${needed} bytes (shape ${shape} × ${dtype})`, data, 'range');
  }
}

export function checkMatrix(fn: string, name: string, matrix: unknown): asserts matrix is MatrixView {
  if (typeof matrix !== 'object' || matrix === null) throw invalidArgument(fn, name, 'a matrix { data, rows, cols, dtype }', matrix);
  const m = matrix as Record<string, unknown>;
  checkOneOf(fn, `${name}.dtype`, m['dtype'], dtypes);
  checkPositiveInteger(fn, `${name}.rows`, m['rows']);
  checkPositiveInteger(fn, `${name}.cols`, m['cols']);
  checkData(fn, `${name}.data`, m['data'], m['dtype'], m['rows'] * m['cols'], `[${m['rows']}, ${m['cols']}]`);
}

export function checkTensor3(fn: string, name: string, tensor: unknown): asserts tensor is TensorView3 {
  if (typeof tensor !== 'object' || tensor === null) {
    throw invalidArgument(fn, name, 'a tensor { data, pairs, tokens, width, dtype }', tensor);
  }
  const t = tensor as Record<string, unknown>;
  checkOneOf(fn, `${name}.dtype`, t['dtype'], dtypes);
  checkPositiveInteger(fn, `${name}.pairs`, t['pairs']);
  checkPositiveInteger(fn, `${name}.tokens`, t['tokens']);
  checkPositiveInteger(fn, `${name}.width`, t['width']);
  checkData(fn, `${name}.data`, t['data'], t['dtype'], t['pairs'] * t['tokens'] * t['width'], `[${t['pairs']}, ${t['tokens']}, ${t['width']}]`);
}

/** a and b of one activation difference must agree in shape and dtype. */
export function checkSameShape(fn: string, a: Record<string, unknown>, b: Record<string, unknown>, keys: readonly string[]): void {
  for (const key of [...keys, 'dtype']) {
    if (a[key] !== b[key]) throw invalidArgument(fn, `b.${key}`, `${describe(a[key])} (same as a.${key})`, b[key], 'range');
  }
}

/** kept: an Int32Array of strictly increasing column indices below `cols`. */
export function checkKeptColumns(fn: string, name: string, kept: unknown, cols: number): asserts kept is Int32Array {
  if (!(kept instanceof Int32Array)) throw invalidArgument(fn, name, 'an Int32Array of column indices', kept);
  for (let k = 0; k < kept.length; k++) {
    if (kept[k]! < 0 || kept[k]! >= cols || (k > 0 && kept[k]! <= kept[k - 1]!)) {
      throw invalidArgument(fn, `${name}[${k}]`, `a column index below ${cols}, above ${name}[${k - 1}]`, kept[k], 'range');
    }
  }
}

/** out: element storage of exactly `elements` elements of `dtype`, not sharing bytes with `data`. */
export function checkOutput(fn: string, name: string, out: unknown, dtype: DType, elements: number, data: ElementData): asserts out is ElementData {
  checkData(fn, name, out, dtype, elements, `[${elements}]`);
  const o = out as ElementData;
  if (o.buffer === data.buffer && o.byteOffset < data.byteOffset + data.byteLength && data.byteOffset < o.byteOffset + o.byteLength) {
    throw invalidArgument(fn, name, 'storage not overlapping the input', out, 'range');
  }
}
