import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  ModelProtoSchema,
  StringStringEntryProtoSchema,
  TensorProto_DataLocation,
  type ModelProto,
  type TensorProto,
} from 'onnx-buf';
import { bytesPerElement, dtypeFromOnnx, type WeightDType } from './dtype.js';

/** An .onnx file or its external data is missing, truncated, corrupt or unsupported; the message names the file and tensor. */
export class OnnxFormatError extends Error {
  /** Always `'OnnxFormatError'`. */
  override name = 'OnnxFormatError';
}

/** protobuf cannot hold a ModelProto over 2 GiB, and Node cannot readFileSync past 2 GiB either. */
const MAX_INLINE_MODEL_BYTES = 2 ** 31 - 1;

/**
 * Decodes a ModelProto from a .onnx file. External tensor data is not read (use {@link checkExternalData} to check it).
 * @throws {@link OnnxFormatError} when the file is missing, over 2 GiB, not a ModelProto, or has no graph nodes.
 */
export function readOnnxModel(path: string): ModelProto {
  if (!existsSync(path)) throw new OnnxFormatError(`ONNX file not found: ${path}`);
  const size = statSync(path).size;
  if (size > MAX_INLINE_MODEL_BYTES) {
    throw new OnnxFormatError(`${path} is ${size} bytes; an .onnx over 2 GiB is invalid (weights belong in external data)`);
  }
  let model: ModelProto;
  try {
    model = fromBinary(ModelProtoSchema, readFileSync(path));
  } catch (error) {
    throw new OnnxFormatError(`${path} is not a valid ONNX model (truncated or corrupt?): ${(error as Error).message}`);
  }
  if (!model.graph || model.graph.node.length === 0) {
    throw new OnnxFormatError(`${path} is not a valid ONNX model: it has no graph nodes (truncated or corrupt?)`);
  }
  return model;
}

/** Serialises a ModelProto to .onnx bytes. Tensors stay where they point (inline or external). */
export function encodeOnnxModel(model: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, model);
}

/**
 * A copy of `model` whose graph's node, input and output lists can be added to without touching the original; the
 * nodes and initializers themselves are shared (no weight is copied), so replace a node rather than edit it.
 */
export function graphCopy(model: ModelProto): ModelProto {
  const graph = model.graph!;
  return { ...model, graph: { ...graph, node: [...graph.node], input: [...graph.input], output: [...graph.output] } };
}

export interface ExternalLocation {
  location: string;
  offset: number;
  length: number | undefined;
}

export function externalLocation(tensor: TensorProto): ExternalLocation | undefined {
  if (tensor.dataLocation !== TensorProto_DataLocation.EXTERNAL) return undefined;
  const entry = (key: string) => tensor.externalData.find((e) => e.key === key)?.value;
  const location = entry('location');
  if (location === undefined) throw new OnnxFormatError(`Tensor "${tensor.name}" is external but has no location`);
  const offset = entry('offset');
  const length = entry('length');
  return { location, offset: offset ? Number(offset) : 0, length: length ? Number(length) : undefined };
}

export function tensorDims(tensor: TensorProto): number[] {
  return tensor.dims.map(Number);
}

/** Element type of a float tensor; undefined for any other data type (integers, f64, …). */
export function tensorDtype(tensor: TensorProto): WeightDType | undefined {
  return dtypeFromOnnx(tensor.dataType);
}

/**
 * Byte length of a float tensor's data (f32/f16/bf16), from its dims.
 * @throws {@link OnnxFormatError} for any other data type.
 */
export function tensorByteLength(tensor: TensorProto): number {
  const dtype = tensorDtype(tensor);
  if (!dtype) throw new OnnxFormatError(`Tensor "${tensor.name}" has data type ${tensor.dataType}, not f32/f16/bf16`);
  return tensorDims(tensor).reduce((a, b) => a * b, 1) * bytesPerElement(dtype);
}

/**
 * Random access to initializer bytes, inline (raw_data / typed fields) or external (read by fd + position, so
 * files past 2 GiB work). Keeps one fd per external file; call close().
 */
export class TensorDataReader {
  private readonly fds = new Map<string, { fd: number; size: number }>();

  constructor(
    /** Folder the model's external data locations are relative to. */
    readonly modelDir: string,
  ) {}

  /** Total byte length of the tensor's data. */
  byteLength(tensor: TensorProto): number {
    const external = externalLocation(tensor);
    if (external) {
      // opening checks that the file exists and holds the declared range
      const file = this.file(tensor, external);
      return external.length ?? file.size - external.offset;
    }
    return this.inlineBytes(tensor).byteLength;
  }

  /**
   * `length` bytes starting `start` bytes into the tensor's data: an inline view, or external bytes read into `into`
   * (reused by streaming writers; valid until its next use) or else a fresh aligned buffer.
   */
  read(tensor: TensorProto, start = 0, length?: number, into?: (size: number) => Uint8Array): Uint8Array {
    const total = this.byteLength(tensor);
    const count = length ?? total - start;
    if (start < 0 || start + count > total) {
      throw new OnnxFormatError(`Read past the end of tensor "${tensor.name}" (${start}+${count} > ${total})`);
    }
    const external = externalLocation(tensor);
    if (!external) return this.inlineBytes(tensor).subarray(start, start + count);
    const { fd } = this.file(tensor, external);
    const out = into ? into(count) : new Uint8Array(count);
    let done = 0;
    while (done < count) {
      const n = readSync(fd, out, done, Math.min(count - done, 1 << 30), external.offset + start + done);
      if (n === 0) throw new OnnxFormatError(`External data for "${tensor.name}" ended early in ${external.location}`);
      done += n;
    }
    return out;
  }

  close(): void {
    for (const { fd } of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }

  private file(tensor: TensorProto, external: ExternalLocation): { fd: number; size: number } {
    const location = normalize(external.location);
    if (isAbsolute(location) || location.startsWith('..')) {
      throw new OnnxFormatError(`External data location of "${tensor.name}" escapes the model folder: ${external.location}`);
    }
    const path = join(this.modelDir, location);
    let entry = this.fds.get(path);
    if (!entry) {
      if (!existsSync(path)) {
        throw new OnnxFormatError(`External data file not found: ${path} (needed by tensor "${tensor.name}")`);
      }
      const fd = openSync(path, 'r');
      entry = { fd, size: fstatSync(fd).size };
      this.fds.set(path, entry);
    }
    const needed = external.offset + (external.length ?? 0);
    if (entry.size < needed) {
      throw new OnnxFormatError(
        `External data file ${path} is too short: tensor "${tensor.name}" needs bytes up to ${needed}, file has ${entry.size}`,
      );
    }
    return entry;
  }

  private inlineBytes(tensor: TensorProto): Uint8Array {
    if (tensor.rawData.byteLength > 0) return tensor.rawData;
    const dtype = tensorDtype(tensor);
    const count = tensorDims(tensor).reduce((a, b) => a * b, 1);
    if (dtype === 'f32' && tensor.floatData.length === count) return new Uint8Array(new Float32Array(tensor.floatData).buffer);
    // fp16 / bf16 values outside raw_data are stored one per int32_data entry.
    if ((dtype === 'f16' || dtype === 'bf16') && tensor.int32Data.length === count) {
      return new Uint8Array(new Uint16Array(tensor.int32Data).buffer);
    }
    if (count === 0) return new Uint8Array(0);
    throw new OnnxFormatError(`Tensor "${tensor.name}" has no readable data (type ${tensor.dataType})`);
  }
}

/**
 * Runs `work`, prefixing `path` to an {@link OnnxFormatError} that names only a tensor, so every message names the file.
 * @throws what `work` throws.
 */
export function namingFile<T>(path: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof OnnxFormatError && !error.message.includes(path)) throw new OnnxFormatError(`${path}: ${error.message}`);
    throw error;
  }
}

/**
 * Checks that every external float initializer's file exists and holds all its bytes, without reading them, so a
 * broken folder fails before minutes of work. `modelPath` is the .onnx file the locations are relative to.
 * @throws {@link OnnxFormatError} naming the tensor and the missing or short file.
 */
export function checkExternalData(model: ModelProto, modelPath: string): void {
  const reader = new TensorDataReader(dirname(modelPath));
  try {
    namingFile(modelPath, () => {
      for (const tensor of model.graph?.initializer ?? []) {
        const external = externalLocation(tensor);
        if (!external || !tensorDtype(tensor)) continue;
        const expected = tensorByteLength(tensor);
        const available = reader.byteLength(tensor); // throws when the file is missing or shorter than declared
        if (available < expected) {
          throw new OnnxFormatError(
            `External data file ${join(dirname(modelPath), external.location)} is too short: tensor "${tensor.name}" needs ${expected} bytes at offset ${external.offset}, ${available} available`,
          );
        }
      }
    });
  } finally {
    reader.close();
  }
}

/**
 * Streams bytes into one external data file at running, aligned offsets, so models past protobuf's 2 GiB limit can
 * be written tensor by tensor. Creates `path` (fails if it exists); call close(). The default 4096-byte alignment is
 * the page size: onnxruntime maps page-aligned external initializers into memory instead of reading them into its
 * own buffers, so a session over the written model opens without copying every weight.
 */
export class ExternalDataWriter {
  private readonly fd: number;
  private offset = 0;

  constructor(
    /** File the bytes are written to. */
    readonly path: string,
    /** The `location` recorded in the model (relative to the .onnx). */
    readonly location: string,
    private readonly alignment = 4096,
  ) {
    this.fd = openSync(path, 'wx');
  }

  /** Starts a tensor: returns its offset; follow with append() calls totalling `length` bytes, then finish(). */
  begin(): number {
    this.offset = Math.ceil(this.offset / this.alignment) * this.alignment;
    return this.offset;
  }

  /** Writes `bytes` after what was written so far. */
  append(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.byteLength) {
      done += writeSync(this.fd, bytes, done, bytes.byteLength - done, this.offset + done);
    }
    this.offset += bytes.byteLength;
  }

  /** Points `tensor` at the bytes written since begin(). */
  finish(tensor: TensorProto, start: number): void {
    tensor.rawData = new Uint8Array(0);
    tensor.floatData = [];
    tensor.int32Data = [];
    tensor.dataLocation = TensorProto_DataLocation.EXTERNAL;
    tensor.externalData = [
      create(StringStringEntryProtoSchema, { key: 'location', value: this.location }),
      create(StringStringEntryProtoSchema, { key: 'offset', value: String(start) }),
      create(StringStringEntryProtoSchema, { key: 'length', value: String(this.offset - start) }),
    ];
  }

  /** Closes the file; the writer cannot be used after. */
  close(): void {
    closeSync(this.fd);
  }
}
