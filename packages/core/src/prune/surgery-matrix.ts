/**
 * Row-chunked editing of a row-major matrix held in a file or buffer: drop or zero rows/columns while streaming,
 * so pruning a tensor never needs it whole in memory (peak ≈ two chunks).
 */
export interface MatrixEdit {
  rows: number;
  cols: number;
  elementBytes: number;
  /** Sorted, unique indices. Drop changes the shape; zero keeps it. */
  dropRows?: readonly number[];
  dropCols?: readonly number[];
  zeroRows?: readonly number[];
  zeroCols?: readonly number[];
}

export const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024;

/**
 * A grow-only buffer reused across chunks and tensors: first touches of fresh large allocations (page faults) cost
 * more than the copying itself on busy machines.
 */
export class ScratchBuffer {
  private buffer = new Uint8Array(0);
  get(size: number): Uint8Array {
    if (this.buffer.byteLength < size) this.buffer = new Uint8Array(size);
    return this.buffer.subarray(0, size);
  }
}

export function editedShape(edit: MatrixEdit): [number, number] {
  return [edit.rows - (edit.dropRows?.length ?? 0), edit.cols - (edit.dropCols?.length ?? 0)];
}

/**
 * Yields the edited matrix's bytes in row order; `read(start, length)` returns bytes of the source.
 * Each yielded chunk is only valid until the next one is requested (`output` is reused).
 */
export function* streamEditedMatrix(
  read: (start: number, length: number) => Uint8Array,
  edit: MatrixEdit,
  output: ScratchBuffer = new ScratchBuffer(),
  chunkBytes = DEFAULT_CHUNK_BYTES,
): Generator<Uint8Array> {
  const { rows, elementBytes } = edit;
  const rowBytes = edit.cols * elementBytes;
  const rowsPerChunk = Math.max(1, Math.floor(chunkBytes / Math.max(1, rowBytes)));
  const droppedRow = mask(rows, edit.dropRows);
  const zeroedRow = mask(rows, edit.zeroRows);
  // Copy whole elements as 16/32-bit words; other sizes are handled as bytes with column indices scaled.
  const wordBytes = elementBytes === 2 || elementBytes === 4 ? elementBytes : 1;
  const scale = elementBytes / wordBytes;
  const cols = edit.cols * scale;
  const inWords = (indices: readonly number[] | undefined) =>
    indices && indices.length > 0 ? indices.flatMap((i) => Array.from({ length: scale }, (_, k) => i * scale + k)) : undefined;
  const dropCols = inWords(edit.dropCols);
  const keptCols = dropCols ? complement(cols, dropCols) : undefined;
  const outCols = keptCols?.length ?? cols;
  const outRowBytes = outCols * wordBytes;
  const zeroCols = inWords(edit.zeroCols);
  const buffer = output.get(Math.min(rows, rowsPerChunk) * outRowBytes);
  for (let r0 = 0; r0 < rows; r0 += rowsPerChunk) {
    const r1 = Math.min(rows, r0 + rowsPerChunk);
    let keptRows = 0;
    for (let r = r0; r < r1; r++) if (!droppedRow[r]) keptRows++;
    if (keptRows === 0) continue;
    const source = aligned(read(r0 * rowBytes, (r1 - r0) * rowBytes), wordBytes);
    const out = buffer.subarray(0, keptRows * outRowBytes);
    const sourceWords = words(source, wordBytes);
    const outWords = words(out, wordBytes);
    let o = 0;
    for (let r = r0; r < r1; r++) {
      if (droppedRow[r]) continue;
      const sourceRow = (r - r0) * cols;
      const outRow = o * outCols;
      if (zeroedRow[r]) {
        outWords.fill(0, outRow, outRow + outCols);
      } else if (keptCols) {
        gather(outWords, outRow, sourceWords, sourceRow, keptCols);
      } else {
        outWords.set(sourceWords.subarray(sourceRow, sourceRow + cols), outRow);
      }
      if (zeroCols) for (const c of zeroCols) outWords[outRow + c] = 0;
      o++;
    }
    yield out;
  }
}

/** Yields a tensor's bytes unchanged, in chunks. */
export function* streamBytes(read: (start: number, length: number) => Uint8Array, total: number, chunkBytes = DEFAULT_CHUNK_BYTES): Generator<Uint8Array> {
  for (let start = 0; start < total; start += chunkBytes) yield read(start, Math.min(chunkBytes, total - start));
}

/** The hot loop, kept in small per-type functions so each stays monomorphic (2-3× faster than one union-typed loop). */
function gather(out: Words, outStart: number, source: Words, sourceStart: number, kept: Int32Array): void {
  if (out instanceof Uint16Array) gather16(out, outStart, source as Uint16Array, sourceStart, kept);
  else if (out instanceof Uint32Array) gather32(out, outStart, source as Uint32Array, sourceStart, kept);
  else gather8(out, outStart, source as Uint8Array, sourceStart, kept);
}
function gather16(out: Uint16Array, outStart: number, source: Uint16Array, sourceStart: number, kept: Int32Array): void {
  for (let c = 0; c < kept.length; c++) out[outStart + c] = source[sourceStart + kept[c]!]!;
}
function gather32(out: Uint32Array, outStart: number, source: Uint32Array, sourceStart: number, kept: Int32Array): void {
  for (let c = 0; c < kept.length; c++) out[outStart + c] = source[sourceStart + kept[c]!]!;
}
function gather8(out: Uint8Array, outStart: number, source: Uint8Array, sourceStart: number, kept: Int32Array): void {
  for (let c = 0; c < kept.length; c++) out[outStart + c] = source[sourceStart + kept[c]!]!;
}

type Words = Uint8Array | Uint16Array | Uint32Array;

function mask(length: number, indices: readonly number[] | undefined): Uint8Array {
  const m = new Uint8Array(length);
  for (const i of indices ?? []) m[i] = 1;
  return m;
}

function complement(length: number, drop: readonly number[]): Int32Array {
  const dropped = mask(length, drop);
  const kept = new Int32Array(length - drop.length);
  let k = 0;
  for (let i = 0; i < length; i++) if (!dropped[i]) kept[k++] = i;
  return kept;
}

function aligned(bytes: Uint8Array, elementBytes: number): Uint8Array {
  // copy (not .slice(): on a Node Buffer that is a view with the same misaligned offset)
  return bytes.byteOffset % elementBytes === 0 ? bytes : new Uint8Array(bytes);
}

function words(bytes: Uint8Array, wordBytes: number): Words {
  const n = bytes.byteLength / wordBytes;
  if (wordBytes === 4) return new Uint32Array(bytes.buffer, bytes.byteOffset, n);
  if (wordBytes === 2) return new Uint16Array(bytes.buffer, bytes.byteOffset, n);
  return bytes;
}
