import { afterAll, expect, test } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtureDir } from '@fairprune/fixtures';
import { openModelFolder } from '../../src/model/folder.js';
import { validateModel } from '../../src/model/validate.js';
import { encodeSafetensors, llamaCopy, readRawSafetensors } from './model-copies.js';

/**
 * Seeded mutations of the three model formats (config.json, safetensors header and bytes, ONNX protobuf bytes) fed to
 * the validation every command runs first. Each must end in one of two ways: an error that is not an internal
 * TypeError/RangeError/SyntaxError and names the folder, or a success whose config.json, graph and safetensors all
 * describe the same model (checked here against an independent parse of the mutated safetensors header).
 */
const root = mkdtempSync(join(tmpdir(), 'fp-fuzz-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** mulberry32: small, seedable, good enough to pick mutations. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const VALUES: unknown[] = [null, [], {}, 'x', '', -1, 0, 1, 1.5, 3, 4, 5, 64, 65, 128, 255, 256, 1e9, 2 ** 31 - 1, 1e300, -1e300, 2 ** 53, true, false, [1, 2], [64, 256], { a: 1 }, ['F32']];

interface Fuzz {
  random: () => number;
  pick: <T>(list: readonly T[]) => T;
  int: (n: number) => number;
}

function fuzz(seed: number): Fuzz {
  const random = rng(seed);
  const int = (n: number) => Math.floor(random() * n);
  return { random, int, pick: (list) => list[int(list.length)]! };
}

/** 1–4 random byte edits (flip, set, delete a span, duplicate a span) or a truncation. */
function mutateBytes(bytes: Uint8Array, f: Fuzz, region = bytes.length): { bytes: Uint8Array; what: string } {
  const out = Buffer.from(bytes);
  const kind = f.int(5);
  const at = f.int(Math.max(1, region));
  if (kind === 0) return { bytes: out.subarray(0, at), what: `truncate at ${at}` };
  if (kind === 1) {
    const end = Math.min(out.length, at + 1 + f.int(64));
    return { bytes: Buffer.concat([out.subarray(0, at), out.subarray(end)]), what: `delete ${at}..${end}` };
  }
  if (kind === 2) {
    const end = Math.min(out.length, at + 1 + f.int(64));
    return { bytes: Buffer.concat([out.subarray(0, end), out.subarray(at, end), out.subarray(end)]), what: `duplicate ${at}..${end}` };
  }
  const edits: string[] = [];
  for (let n = 1 + f.int(4); n > 0; n--) {
    const i = f.int(Math.max(1, region));
    const value = kind === 3 ? out[i]! ^ (1 << f.int(8)) : f.int(256);
    out[i] = value;
    edits.push(`${i}=${value}`);
  }
  return { bytes: out, what: `set ${edits.join(',')}` };
}

const config = JSON.parse(readFileSync(join(fixtureDir('llama'), 'config.json'), 'utf8')) as Record<string, unknown>;
const raw = readRawSafetensors();
const KEYS = [...Object.keys(config), 'text_config', 'fairprune_intermediate_sizes', 'head_dim'];

function mutateConfig(f: Fuzz): { text: string; what: string } {
  if (f.int(4) === 0) {
    const { bytes, what } = mutateBytes(Buffer.from(JSON.stringify(config, null, 1)), f);
    return { text: Buffer.from(bytes).toString('utf8'), what: `config bytes: ${what}` };
  }
  const changed: Record<string, unknown> = structuredClone(config);
  const edits: string[] = [];
  for (let n = 1 + f.int(3); n > 0; n--) {
    const key = f.pick(KEYS);
    if (f.int(5) === 0) {
      delete changed[key];
      edits.push(`-${key}`);
    } else {
      changed[key] = f.pick(VALUES);
      edits.push(`${key}=${JSON.stringify(changed[key])}`);
    }
  }
  return { text: f.int(10) === 0 ? JSON.stringify(f.pick(VALUES)) : JSON.stringify(changed), what: `config ${edits.join(' ')}` };
}

function mutateSafetensors(f: Fuzz): { bytes: Uint8Array; what: string } {
  const kind = f.int(4);
  if (kind === 0) {
    const { bytes, what } = mutateBytes(encodeSafetensors(raw.header, raw.data), f, 8 + JSON.stringify(raw.header).length);
    return { bytes, what: `safetensors header bytes: ${what}` };
  }
  if (kind === 1) {
    const { bytes, what } = mutateBytes(encodeSafetensors(raw.header, raw.data), f);
    return { bytes, what: `safetensors bytes: ${what}` };
  }
  const header = structuredClone(raw.header) as Record<string, Record<string, unknown> | unknown>;
  const names = Object.keys(header);
  const edits: string[] = [];
  for (let n = 1 + f.int(3); n > 0; n--) {
    const name = f.pick(names);
    const entry = header[name];
    const field = f.pick(['dtype', 'shape', 'data_offsets', 'entry', 'delete', 'offset+']);
    if (field === 'delete') delete header[name];
    else if (field === 'entry') header[name] = f.pick(VALUES);
    else if (typeof entry === 'object' && entry !== null && !Array.isArray(entry)) {
      const e = entry as Record<string, unknown>;
      if (field === 'offset+' && Array.isArray(e['data_offsets'])) {
        const delta = f.pick([-4, -1, 1, 4, 256]);
        e['data_offsets'] = (e['data_offsets'] as number[]).map((o, i) => (i === f.int(2) ? o + delta : o));
      } else {
        e[field === 'offset+' ? 'data_offsets' : field] = f.pick([...VALUES, 'F16', 'BF16', 'I64', [0, 4], [256, 64]]);
      }
    }
    edits.push(`${name}.${field}`);
  }
  return { bytes: encodeSafetensors(header, raw.data), what: `safetensors header ${edits.join(' ')}` };
}

const onnxBytes = readFileSync(join(fixtureDir('llama'), 'onnx/model_external.onnx'));

/** What the mutated folder describes, parsed here: config layers and width, and the safetensors MLP shapes. */
function describedModel(dir: string): { layers: number; width: number; hidden: number; shapes: string[] } | undefined {
  try {
    const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, number>;
    const header = readRawSafetensors(join(dir, 'model.safetensors')).header as Record<string, { shape: number[] }>;
    const shapes = Array.from({ length: c['num_hidden_layers']! }, (_, i) =>
      ['gate_proj', 'up_proj', 'down_proj'].map((p) => header[`model.layers.${i}.mlp.${p}.weight`]?.shape.join('x')).join(' '),
    );
    return { layers: c['num_hidden_layers']!, width: c['intermediate_size']!, hidden: c['hidden_size']!, shapes };
  } catch {
    return undefined;
  }
}

const INTERNAL = [TypeError, RangeError, SyntaxError, ReferenceError];

test('a few thousand seeded mutations of config.json, safetensors and ONNX: a named error or the same model, never an internal error or a hang', () => {
  const budgetMs = 45_000;
  const started = performance.now();
  const dir = llamaCopy(root, 'fuzz', {}, 'model_external.onnx');
  const counts = { runs: 0, refused: 0, findings: 0, clean: 0 };
  const plan: ['config' | 'safetensors' | 'onnx', number][] = [['config', 1000], ['safetensors', 1000], ['onnx', 1000]];
  for (const [format, runs] of plan) {
    // FAIRPRUNE_FUZZ_SEED explores other mutations; CI runs the default, so a failure reproduces.
    const f = fuzz(format.length * 7919 + runs + Number(process.env['FAIRPRUNE_FUZZ_SEED'] ?? 0));
    const formatStarted = performance.now();
    for (let i = 0; i < runs && performance.now() - started < budgetMs; i++) {
      // Each run mutates one file of a clean copy (the other two are never changed).
      let what: string;
      if (format === 'config') {
        const m = mutateConfig(f);
        writeFileSync(join(dir, 'config.json'), m.text);
        what = m.what;
      } else if (format === 'safetensors') {
        const m = mutateSafetensors(f);
        writeFileSync(join(dir, 'model.safetensors'), m.bytes);
        what = m.what;
      } else {
        const m = mutateBytes(onnxBytes, f);
        writeFileSync(join(dir, 'onnx/model.onnx'), m.bytes);
        what = `onnx bytes: ${m.what}`;
      }
      const t0 = performance.now();
      counts.runs++;
      try {
        const folder = openModelFolder(dir);
        const validation = validateModel(folder, folder.onnxPath!);
        if (validation.findings.length > 0) {
          counts.findings++;
          continue;
        }
        counts.clean++;
        // Accepted without findings: config.json, the graph and the safetensors header describe one model.
        const described = describedModel(dir);
        expect(described, `${format} run ${i} (${what}): accepted, but config.json or the safetensors header does not parse here`).toBeDefined();
        const { layers, width, hidden, shapes } = described!;
        expect(validation.map.layers.map((l) => [l.intermediateSize, l.hiddenSize]), `${format} run ${i} (${what})`).toEqual(Array(layers).fill([width, hidden]));
        expect(shapes, `${format} run ${i} (${what})`).toEqual(Array(layers).fill(`${width}x${hidden} ${width}x${hidden} ${hidden}x${width}`));
      } catch (error) {
        if (error instanceof Error && error.name === 'AssertionError') throw error;
        counts.refused++;
        const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        expect(INTERNAL.some((type) => error instanceof type), `${format} run ${i} (${what}) raised an internal ${message}`).toBe(false);
        expect(message, `${format} run ${i} (${what}): the error does not name the file`).toContain(dir);
      } finally {
        expect(performance.now() - t0, `${format} run ${i} (${what}) took too long`).toBeLessThan(5_000);
      }
    }
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(raw.header, raw.data));
    writeFileSync(join(dir, 'onnx/model.onnx'), onnxBytes);
    console.log(`${format}: ${Math.round(performance.now() - formatStarted)} ms`);
  }
  console.log(`model fuzz: ${JSON.stringify(counts)} in ${Math.round(performance.now() - started)} ms`);
  // Every kind of outcome occurs, so the mutations reach past the first check.
  expect(counts.refused).toBeGreaterThan(100);
  expect(counts.findings).toBeGreaterThan(10);
  expect(counts.clean).toBeGreaterThan(10);
}, 120_000);
