import { gatherColumns, type DType } from '@fairprune/native-cuda';
import { ScratchBuffer } from '../model/scratch-buffer.js';

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

/** The native gather's element type for an element size: it moves bytes, so any 2-byte type goes as f16. */
const GATHER_DTYPES: Readonly<Record<number, DType>> = { 2: 'f16', 4: 'f32' };

export function editedShape(edit: MatrixEdit): [number, number] {
  return [edit.rows - (edit.dropRows?.length ?? 0), edit.cols - (edit.dropCols?.length ?? 0)];
}

/**
 * Yields the edited matrix's bytes in row order; `read(start, length)` returns bytes of the source.
 * Each yielded chunk is only valid until the next one is requested (`output` is reused).
 * Removed columns of 2- and 4-byte elements go through the native column gather (a pruned gate/up row keeps runs of
 * ~9 elements: too short for block copies); other element sizes move as block copies of the kept runs. Consecutive
 * kept rows of an unchanged width are one copy, so the source needs no alignment; when only rows are removed, the
 * runs of kept rows are yielded as views of the source chunk instead.
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
  const dropsCols = edit.dropCols !== undefined && edit.dropCols.length > 0;
  const gatherDtype = dropsCols ? GATHER_DTYPES[elementBytes] : undefined;
  const keptIndices = gatherDtype ? keptColumnIndices(edit.cols, edit.dropCols!) : undefined;
  const keptCols = dropsCols && !gatherDtype ? byteRuns(keptRuns(edit.cols, edit.dropCols!), elementBytes) : undefined;
  const outRowBytes = (edit.cols - (edit.dropCols?.length ?? 0)) * elementBytes;
  // zeroCols index the output row, as zeroing keeps the shape
  const zeroCols = edit.zeroCols && edit.zeroCols.length > 0 ? byteRuns(indexRuns(edit.zeroCols), elementBytes) : undefined;
  // Only whole rows removed (down_proj in the ONNX layout): the kept runs go out as views of the read buffer, no copy.
  const onlyRowDrops = !dropsCols && !zeroCols && !(edit.zeroRows && edit.zeroRows.length > 0);
  const buffer = output.get(onlyRowDrops ? 0 : Math.min(rows, rowsPerChunk) * outRowBytes);
  for (let r0 = 0; r0 < rows; r0 += rowsPerChunk) {
    const r1 = Math.min(rows, r0 + rowsPerChunk);
    let keptRows = 0;
    for (let r = r0; r < r1; r++) if (!droppedRow[r]) keptRows++;
    if (keptRows === 0) continue;
    const source = read(r0 * rowBytes, (r1 - r0) * rowBytes);
    if (onlyRowDrops) {
      for (let r = r0; r < r1; ) {
        let end = r;
        while (end < r1 && !droppedRow[end]) end++;
        if (end > r) yield source.subarray((r - r0) * rowBytes, (end - r0) * rowBytes);
        r = end + 1;
      }
      continue;
    }
    const out = buffer.subarray(0, keptRows * outRowBytes);
    let o = 0;
    for (let r = r0; r < r1; ) {
      if (droppedRow[r]) {
        r++;
        continue;
      }
      const outRow = o * outRowBytes;
      if (zeroedRow[r]) {
        out.fill(0, outRow, outRow + outRowBytes);
        r++;
        o++;
      } else if (keptIndices) {
        let end = r + 1;
        while (end < r1 && !droppedRow[end] && !zeroedRow[end]) end++;
        const data = source.subarray((r - r0) * rowBytes, (end - r0) * rowBytes);
        gatherColumns({ data, rows: end - r, cols: edit.cols, dtype: gatherDtype! }, keptIndices, out.subarray(outRow, outRow + (end - r) * outRowBytes));
        o += end - r;
        r = end;
      } else if (keptCols) {
        const sourceRow = (r - r0) * rowBytes;
        for (let k = 0, d = outRow; k < keptCols.length; k += 2) {
          out.set(source.subarray(sourceRow + keptCols[k]!, sourceRow + keptCols[k + 1]!), d);
          d += keptCols[k + 1]! - keptCols[k]!;
        }
        r++;
        o++;
      } else {
        let end = r + 1;
        while (end < r1 && !droppedRow[end] && !zeroedRow[end]) end++;
        out.set(source.subarray((r - r0) * rowBytes, (end - r0) * rowBytes), outRow);
        o += end - r;
        r = end;
      }
    }
    if (zeroCols) {
      for (let row = 0; row < keptRows; row++) {
        for (let k = 0; k < zeroCols.length; k += 2) out.fill(0, row * outRowBytes + zeroCols[k]!, row * outRowBytes + zeroCols[k + 1]!);
      }
    }
    yield out;
  }
}

/** Yields a tensor's bytes unchanged, in chunks. */
export function* streamBytes(read: (start: number, length: number) => Uint8Array, total: number, chunkBytes = DEFAULT_CHUNK_BYTES): Generator<Uint8Array> {
  for (let start = 0; start < total; start += chunkBytes) yield read(start, Math.min(chunkBytes, total - start));
}

function mask(length: number, indices: readonly number[] | undefined): Uint8Array {
  const m = new Uint8Array(length);
  for (const i of indices ?? []) m[i] = 1;
  return m;
}

/** The indices 0..length-1 without the sorted, unique `drop`. */
function keptColumnIndices(length: number, drop: readonly number[]): Int32Array {
  const gone = mask(length, drop);
  const kept = new Int32Array(length - drop.length);
  for (let c = 0, k = 0; c < length; c++) if (!gone[c]) kept[k++] = c;
  return kept;
}

/** [start, end) element runs of 0..length-1 without the sorted, unique `drop`, flattened. */
function keptRuns(length: number, drop: readonly number[]): number[] {
  const runs: number[] = [];
  let start = 0;
  for (const d of drop) {
    if (d > start) runs.push(start, d);
    start = d + 1;
  }
  if (start < length) runs.push(start, length);
  return runs;
}

/** [start, end) runs of consecutive sorted, unique indices, flattened. */
function indexRuns(indices: readonly number[]): number[] {
  const runs: number[] = [];
  for (const i of indices) {
    if (runs.length > 0 && runs[runs.length - 1] === i) runs[runs.length - 1] = i + 1;
    else runs.push(i, i + 1);
  }
  return runs;
}

function byteRuns(runs: number[], elementBytes: number): Float64Array {
  return Float64Array.from(runs, (i) => i * elementBytes);
}
