import { readFileSync } from 'node:fs';

/** A JSON input is missing, unreadable, not JSON, or has a field of the wrong type; the message names the file and field. */
export class JsonInputError extends Error {
  /** Always `'JsonInputError'`. */
  override name = 'JsonInputError';
}

/** A parsed JSON object. */
export type JsonObject = Record<string, unknown>;

/** What a JSON value is, for messages: `null`, `an array`, `a string`, `a number`, `a boolean`, `an object`. */
export function describeJson(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

/**
 * Parses JSON text; `where` names the source (a file, a header) in the error.
 * @throws {@link JsonInputError} `"<where> is not valid JSON: …"`.
 */
export function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new JsonInputError(`${where} is not valid JSON: ${(error as Error).message}`);
  }
}

/**
 * Reads and parses a JSON file.
 * @throws {@link JsonInputError} naming the file when it cannot be read or is not valid JSON.
 */
export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new JsonInputError(`Cannot read ${path}: ${(error as Error).message}`);
  }
  return parseJson(text, path);
}

/**
 * `value` as a JSON object.
 * @throws {@link JsonInputError} `"<where>: expected a JSON object, found null"` (or an array, a string, …).
 */
export function asJsonObject(value: unknown, where: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new JsonInputError(`${where}: expected a JSON object, found ${describeJson(value)}`);
  }
  return value as JsonObject;
}

/** Reads a JSON file that must hold an object; errors name the file. */
export function readJsonObject(path: string): JsonObject {
  return asJsonObject(readJsonFile(path), path);
}

/** Field types {@link jsonField} checks. */
export type JsonFieldKind = 'string' | 'number' | 'integer' | 'positive integer' | 'boolean' | 'array' | 'object';

/** The TypeScript type {@link jsonField} returns for a {@link JsonFieldKind}. */
export type JsonFieldType<K extends JsonFieldKind> = K extends 'string'
  ? string
  : K extends 'number' | 'integer' | 'positive integer'
    ? number
    : K extends 'boolean'
      ? boolean
      : K extends 'array'
        ? unknown[]
        : JsonObject;

function withArticle(kind: JsonFieldKind): string {
  return `${/^[aeiou]/.test(kind) ? 'an' : 'a'} ${kind}`;
}

function isKind(value: unknown, kind: JsonFieldKind): boolean {
  switch (kind) {
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return Number.isSafeInteger(value);
    case 'positive integer':
      return Number.isSafeInteger(value) && (value as number) > 0;
    case 'boolean':
      return typeof value === 'boolean';
    case 'array':
      return Array.isArray(value);
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
  }
}

/**
 * Field `key` of `object`, checked to be of `kind`; absent (or `null`) gives `undefined` unless `required`.
 * @throws {@link JsonInputError} `"<where>: field "<key>" must be a(n) <kind>, found <what>"`.
 */
export function jsonField<K extends JsonFieldKind>(object: JsonObject, key: string, kind: K, where: string, required: true): JsonFieldType<K>;
export function jsonField<K extends JsonFieldKind>(object: JsonObject, key: string, kind: K, where: string, required?: boolean): JsonFieldType<K> | undefined;
export function jsonField<K extends JsonFieldKind>(object: JsonObject, key: string, kind: K, where: string, required = false): JsonFieldType<K> | undefined {
  const value = object[key];
  if (value === undefined || (value === null && !required)) {
    if (required) throw new JsonInputError(`${where}: field "${key}" is missing (expected ${withArticle(kind)})`);
    return undefined;
  }
  if (!isKind(value, kind)) {
    const shown = typeof value === 'number' || typeof value === 'boolean' ? `${describeJson(value)} ${String(value)}` : describeJson(value);
    throw new JsonInputError(`${where}: field "${key}" must be ${withArticle(kind)}, found ${shown}`);
  }
  return value as JsonFieldType<K>;
}
