import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';

export class SafetensorsError extends Error {
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

/** One .safetensors file opened for random reads by fd + position (no size limit). Call close(). */
export class SafetensorsFile {
  readonly entries: Map<string, SafetensorsEntry>;
  readonly metadata: Record<string, string>;
  private readonly fd: number;
  private readonly dataStart: number;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'r');
    try {
      const size = fstatSync(this.fd).size;
      const head = new Uint8Array(8);
      if (size < 8 || readSync(this.fd, head, 0, 8, 0) !== 8) throw new SafetensorsError(`${path} is too short to be a safetensors file`);
      const headerSize = Number(new DataView(head.buffer).getBigUint64(0, true));
      if (headerSize > 100_000_000 || 8 + headerSize > size) {
        throw new SafetensorsError(`${path}: header size ${headerSize} does not fit the file (${size} bytes); truncated or not safetensors`);
      }
      const header = new Uint8Array(headerSize);
      readSync(this.fd, header, 0, headerSize, 8);
      let json: Record<string, unknown>;
      try {
        json = JSON.parse(new TextDecoder().decode(header)) as Record<string, unknown>;
      } catch (error) {
        throw new SafetensorsError(`${path}: header is not valid JSON: ${(error as Error).message}`);
      }
      this.dataStart = 8 + headerSize;
      this.metadata = (json['__metadata__'] as Record<string, string> | undefined) ?? {};
      this.entries = new Map();
      for (const [name, value] of Object.entries(json)) {
        if (name === '__metadata__') continue;
        const { dtype, shape, data_offsets: offsets } = value as { dtype: string; shape: number[]; data_offsets: [number, number] };
        const elementBytes = ELEMENT_BYTES[dtype];
        if (elementBytes === undefined) throw new SafetensorsError(`${path}: tensor "${name}" has unknown dtype ${dtype}`);
        const [begin, end] = offsets;
        if (end - begin !== shape.reduce((a, b) => a * b, 1) * elementBytes || this.dataStart + end > size) {
          throw new SafetensorsError(`${path}: tensor "${name}" [${shape}] ${dtype} has a bad byte range ${begin}..${end} (file ${size} bytes)`);
        }
        this.entries.set(name, { name, dtype, shape, begin, end });
      }
    } catch (error) {
      closeSync(this.fd);
      throw error;
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
