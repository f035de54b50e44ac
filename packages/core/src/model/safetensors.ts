import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { asJsonObject, describeJson, parseJson, type JsonObject } from '../io/read-json.js';

/** A .safetensors file breaks the format (header, dtype, shape, byte ranges) or lacks a tensor; names the file and tensor. */
export class SafetensorsError extends Error {
  /** Always `'SafetensorsError'`. */
  override name = 'SafetensorsError';
}

export interface SafetensorsEntry {
  name: string;
  /** Safetensors dtype string: F32, F16, BF16, I64, … */
  dtype: string;
  shape: number[];
  /** Byte range relative to the start of the data section. */
  begin: number;
  end: number;
}

const ELEMENT_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, U16: 2, U32: 4, U64: 8, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};

/** The reference implementation's limit: a larger header is refused rather than read into memory. */
const MAX_HEADER_BYTES = 100_000_000;

/** `__metadata__`: absent, or an object of strings. */
function parseMetadata(value: unknown, path: string): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw new SafetensorsError(`${path}: header "__metadata__" must be an object of strings, found ${describeJson(value)}`);
  }
  return value as Record<string, string>;
}

/** Every tensor entry of a parsed header, checked against the spec and the data section's length. */
function parseEntries(json: JsonObject, path: string, dataBytes: number): Map<string, SafetensorsEntry> {
  const entries: SafetensorsEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') continue;
    const where = `${path}: tensor "${name}"`;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new SafetensorsError(`${where}: expected an object {dtype, shape, data_offsets}, found ${describeJson(value)}`);
    }
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (typeof dtype !== 'string' || ELEMENT_BYTES[dtype] === undefined) {
      throw new SafetensorsError(`${where}: unknown dtype ${JSON.stringify(dtype)} (expected one of ${Object.keys(ELEMENT_BYTES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`${where}: "shape" must be a list of non-negative integers, found ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      throw new SafetensorsError(`${where}: "data_offsets" must be [begin, end] with 0 ≤ begin ≤ end, found ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const expected = (shape as number[]).reduce((a, b) => a * b, 1) * ELEMENT_BYTES[dtype]!;
    if (end - begin !== expected) {
      throw new SafetensorsError(`${where} [${shape.join(', ')}] ${dtype} needs ${expected} bytes, its data_offsets ${begin}..${end} hold ${end - begin}`);
    }
    if (end > dataBytes) {
      throw new SafetensorsError(`${where}: data_offsets ${begin}..${end} run past the data section (${dataBytes} bytes); truncated file?`);
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }
  // The spec: byte ranges are contiguous in offset order and cover the whole data section.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const entry of entries) {
    if (entry.begin !== cursor) {
      const previous = entries[entries.indexOf(entry) - 1];
      throw new SafetensorsError(
        entry.begin < cursor
          ? `${path}: tensor "${entry.name}" bytes ${entry.begin}..${entry.end} overlap tensor "${previous!.name}" (${previous!.begin}..${previous!.end})`
          : `${path}: ${entry.begin - cursor} bytes before tensor "${entry.name}" (offset ${cursor}..${entry.begin}) belong to no tensor`,
      );
    }
    cursor = entry.end;
  }
  if (cursor !== dataBytes) {
    throw new SafetensorsError(`${path}: ${dataBytes - cursor} trailing bytes after the last tensor (data section ${dataBytes} bytes, tensors end at ${cursor})`);
  }
  return new Map(entries.map((e) => [e.name, e]));
}

/** One .safetensors file opened for random reads by fd + position (no size limit). Call close(). */
export class SafetensorsFile {
  readonly entries: Map<string, SafetensorsEntry>;
  readonly metadata: Record<string, string>;
  private readonly fd: number;
  private readonly dataStart: number;

  /**
   * Opens and validates a file per the safetensors spec: the header is a JSON object of entries with a known dtype,
   * a shape of non-negative integers and data_offsets whose length is shape × dtype size; the byte ranges are in
   * bounds and cover the data section contiguously, without overlap, gap or trailing bytes.
   * @throws {@link SafetensorsError} naming the file and tensor.
   */
  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, 'r');
    } catch (error) {
      throw new SafetensorsError(`Cannot open ${path}: ${(error as Error).message}`);
    }
    try {
      const size = fstatSync(this.fd).size;
      const head = new Uint8Array(8);
      if (size < 8 || readSync(this.fd, head, 0, 8, 0) !== 8) throw new SafetensorsError(`${path} is too short to be a safetensors file`);
      const headerSize = Number(new DataView(head.buffer).getBigUint64(0, true));
      if (headerSize > MAX_HEADER_BYTES || 8 + headerSize > size) {
        throw new SafetensorsError(`${path}: header size ${headerSize} does not fit the file (${size} bytes); truncated or not safetensors`);
      }
      const header = new Uint8Array(headerSize);
      readSync(this.fd, header, 0, headerSize, 8);
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(header);
      } catch {
        throw new SafetensorsError(`${path}: header is not valid UTF-8`);
      }
      if (!text.startsWith('{')) throw new SafetensorsError(`${path}: header does not start with "{" (not a safetensors file)`);
      let json: JsonObject;
      try {
        json = asJsonObject(parseJson(text, `${path}: header`), `${path}: header`);
      } catch (error) {
        throw new SafetensorsError((error as Error).message);
      }
      this.dataStart = 8 + headerSize;
      this.metadata = parseMetadata(json['__metadata__'], path);
      this.entries = parseEntries(json, path, size - this.dataStart);
    } catch (error) {
      closeSync(this.fd);
      // fs errors (e.g. EISDIR, EIO) name no file; every other error here already does.
      throw error instanceof SafetensorsError ? error : new SafetensorsError(`Cannot read ${path}: ${(error as Error).message}`);
    }
  }

  entry(name: string): SafetensorsEntry {
    const entry = this.entries.get(name);
    if (!entry) throw new SafetensorsError(`${this.path} has no tensor "${name}"`);
    return entry;
  }

  /** `length` bytes from `start` bytes into tensor `name`, into `into(size)` (a reused buffer) or a fresh aligned one. */
  read(name: string, start = 0, length?: number, into?: (size: number) => Uint8Array): Uint8Array {
    const entry = this.entry(name);
    const count = length ?? entry.end - entry.begin - start;
    if (start < 0 || start + count > entry.end - entry.begin) throw new SafetensorsError(`Read past the end of "${name}" in ${this.path}`);
    const out = into ? into(count) : new Uint8Array(count);
    let done = 0;
    while (done < count) {
      const n = readSync(this.fd, out, done, Math.min(count - done, 1 << 30), this.dataStart + entry.begin + start + done);
      if (n === 0) throw new SafetensorsError(`${this.path} ended early while reading "${name}"`);
      done += n;
    }
    return out;
  }

  close(): void {
    closeSync(this.fd);
  }
}

export interface SafetensorsOutput {
  name: string;
  dtype: string;
  shape: number[];
  /** Yields the tensor's bytes in order; their total must match dtype × shape. */
  chunks: () => Iterable<Uint8Array>;
}

/** Writes a safetensors file tensor by tensor (header first, then streamed data): never the whole file in memory. */
export function writeSafetensors(path: string, tensors: readonly SafetensorsOutput[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header['__metadata__'] = metadata;
  let offset = 0;
  for (const t of tensors) {
    const length = t.shape.reduce((a, b) => a * b, 1) * (ELEMENT_BYTES[t.dtype] ?? NaN);
    if (!Number.isFinite(length)) throw new SafetensorsError(`Cannot write tensor "${t.name}" with dtype ${t.dtype}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + length] };
    offset += length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  // pad the header with spaces so the data section starts 8-byte aligned, as the reference writer does
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const withSpaces = new Uint8Array(padded).fill(0x20);
    withSpaces.set(json);
    json = withSpaces;
  }
  const fd = openSync(path, 'wx');
  try {
    const size = new Uint8Array(8);
    new DataView(size.buffer).setBigUint64(0, BigInt(json.byteLength), true);
    let position = 0;
    const put = (bytes: Uint8Array) => {
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done, position + done);
      position += bytes.byteLength;
    };
    put(size);
    put(json);
    const dataStart = position;
    for (const t of tensors) {
      const expected = (header[t.name] as { data_offsets: [number, number] }).data_offsets;
      for (const chunk of t.chunks()) put(chunk);
      if (position - dataStart !== expected[1]) {
        throw new SafetensorsError(`Tensor "${t.name}" produced ${position - dataStart - expected[0]} bytes, expected ${expected[1] - expected[0]}`);
      }
    }
  } finally {
    closeSync(fd);
  }
}

export function safetensorsElementBytes(dtype: string): number | undefined {
  return ELEMENT_BYTES[dtype];
}
