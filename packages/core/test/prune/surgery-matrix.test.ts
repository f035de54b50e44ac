import { describe, expect, test } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, fromBinary } from '@bufbuild/protobuf';
import { GraphProtoSchema, ModelProtoSchema, TensorProtoSchema } from 'onnx-buf';
import { TensorDataReader } from '../../src/model/onnx-codec.js';
import { writeOnnxModelStreamed } from '../../src/prune/surgery.js';
import { DEFAULT_CHUNK_BYTES, editedShape, streamEditedMatrix, type MatrixEdit } from '../../src/prune/surgery-matrix.js';

/** A source whose every element is distinct: element i holds the bytes of i (little-endian, elementBytes wide). */
function source(rows: number, cols: number, elementBytes: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(rows * cols * elementBytes);
  for (let i = 0; i < rows * cols; i++) {
    for (let b = 0; b < elementBytes; b++) bytes[i * elementBytes + b] = (i / 256 ** b) & 0xff;
  }
  return bytes;
}

/** The edit computed independently: pick each kept element by index, zero what is zeroed. */
function expected(src: Uint8Array, edit: MatrixEdit): Uint8Array {
  const { rows, cols, elementBytes } = edit;
  const keptRows = [...Array(rows).keys()].filter((r) => !edit.dropRows?.includes(r));
  const keptCols = [...Array(cols).keys()].filter((c) => !edit.dropCols?.includes(c));
  const zeroRows = new Set(edit.zeroRows ?? []);
  const zeroCols = new Set(edit.zeroCols ?? []);
  const out = new Uint8Array(keptRows.length * keptCols.length * elementBytes);
  keptRows.forEach((r, i) => {
    keptCols.forEach((c, j) => {
      if (zeroRows.has(r) || zeroCols.has(j)) return;
      const from = (r * cols + c) * elementBytes;
      const to = (i * keptCols.length + j) * elementBytes;
      for (let b = 0; b < elementBytes; b++) out[to + b] = src[from + b]!;
    });
  });
  return out;
}

/** Streams the edit over `src`, recording which source ranges were read. */
function stream(src: Uint8Array, edit: MatrixEdit, chunkBytes?: number, misalign = false): { out: Uint8Array; chunks: number; reads: [number, number][] } {
  const reads: [number, number][] = [];
  const read = (start: number, length: number) => {
    reads.push([start, length]);
    if (!misalign) return src.subarray(start, start + length);
    // the same bytes at an odd byte offset, as a Node Buffer from a file read may be
    const shifted = new Uint8Array(length + 1);
    shifted.set(src.subarray(start, start + length), 1);
    return shifted.subarray(1);
  };
  const parts: Uint8Array[] = [];
  // each chunk is valid until the next is requested: copy it before asking for the next
  for (const chunk of streamEditedMatrix(read, edit, undefined, chunkBytes)) parts.push(chunk.slice());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return { out, chunks: parts.length, reads };
}

describe('streamEditedMatrix', () => {
  test('crosses the default 64 MiB chunk boundary: columns dropped in runs, compared with an independent slice', () => {
    // 5600 rows of 12000 bytes: 5592 rows fit one 64 MiB chunk, so the second chunk holds 8 rows.
    const edit: MatrixEdit = { rows: 5600, cols: 3000, elementBytes: 4, dropCols: [0, 1, 2, 17, 1500, 1501, 2998, 2999] };
    expect(edit.rows * edit.cols * 4).toBeGreaterThan(DEFAULT_CHUNK_BYTES);
    const src = source(edit.rows, edit.cols, 4);
    const { out, chunks, reads } = stream(src, edit);
    expect(chunks).toBe(2);
    expect(reads).toEqual([[0, 5592 * 12000], [5592 * 12000, 8 * 12000]]);
    expect(editedShape(edit)).toEqual([5600, 2992]);
    expect(Buffer.from(out).equals(Buffer.from(expected(src, edit)))).toBe(true);
  });

  test('crosses the default 64 MiB chunk boundary: rows dropped and zeroed around it', () => {
    const boundary = Math.floor(DEFAULT_CHUNK_BYTES / (2048 * 2));
    const edit: MatrixEdit = {
      rows: boundary + 50, cols: 2048, elementBytes: 2,
      dropRows: [0, 5, 6, boundary - 1, boundary, boundary + 49],
    };
    const src = source(edit.rows, edit.cols, 2);
    const { out, chunks, reads } = stream(src, edit);
    expect(reads).toEqual([[0, boundary * 4096], [boundary * 4096, 50 * 4096]]);
    // only rows removed: each run of kept rows is a view of the read chunk
    expect(chunks).toBe(3);  // rows 1–4 and 7–(boundary − 2), then boundary + 1 … boundary + 48
    expect(Buffer.from(out).equals(Buffer.from(expected(src, edit)))).toBe(true);

    const zeroed: MatrixEdit = { rows: edit.rows, cols: 2048, elementBytes: 2, zeroRows: [1, boundary - 1, boundary] };
    expect(Buffer.from(stream(src, zeroed).out).equals(Buffer.from(expected(src, zeroed)))).toBe(true);
  });

  const small: [string, MatrixEdit][] = [
    ['drop cols, first/last/adjacent, f32', { rows: 13, cols: 11, elementBytes: 4, dropCols: [0, 4, 5, 10] }],
    ['drop rows, f16', { rows: 13, cols: 7, elementBytes: 2, dropRows: [0, 1, 6, 12] }],
    // Short kept runs: copied element by element (aligned) or by runs (misaligned, 3-byte).
    ['drop every third col, f16', { rows: 13, cols: 40, elementBytes: 2, dropCols: [...Array(14).keys()].map((i) => 3 * i) }],
    ['drop every third col and rows, f32', { rows: 13, cols: 40, elementBytes: 4, dropRows: [3, 4], dropCols: [...Array(13).keys()].map((i) => 3 * i + 1) }],
    ['drop every other col, 3-byte elements', { rows: 7, cols: 20, elementBytes: 3, dropCols: [...Array(10).keys()].map((i) => 2 * i) }],
    ['drop rows and cols, 3-byte elements', { rows: 9, cols: 8, elementBytes: 3, dropRows: [2, 3], dropCols: [1, 7] }],
    ['zero cols, bf16', { rows: 10, cols: 9, elementBytes: 2, zeroCols: [0, 3, 4, 8] }],
    ['zero rows and cols, f32', { rows: 10, cols: 9, elementBytes: 4, zeroRows: [0, 9], zeroCols: [2] }],
    ['no change, one-row chunks', { rows: 5, cols: 3, elementBytes: 4 }],
    ['every row of a chunk dropped', { rows: 12, cols: 4, elementBytes: 4, dropRows: [4, 5, 6, 7] }],
  ];
  test.each(small)('%s, small chunks and a misaligned source', (_, edit) => {
    const src = source(edit.rows, edit.cols, edit.elementBytes);
    const rowBytes = edit.cols * edit.elementBytes;
    for (const chunkBytes of [1, 4 * rowBytes, 1 << 20]) {
      for (const misalign of [false, true]) {
        const { out } = stream(src, edit, chunkBytes, misalign);
        expect(Buffer.from(out).equals(Buffer.from(expected(src, edit))), `chunkBytes ${chunkBytes}, misaligned ${misalign}`).toBe(true);
      }
    }
  });
});

describe('writeOnnxModelStreamed, inline output', () => {
  test('an edited inline tensor of more than one 64 MiB chunk keeps every chunk (compared with an independent slice)', () => {
    // 4200 rows of 16 KiB: 4096 rows fill the first chunk, the last 104 rows the second.
    const rows = 4200, cols = 4096;
    const src = source(rows, cols, 4);
    const edit: MatrixEdit = { rows, cols, elementBytes: 4, dropCols: [0, 100, 4095] };
    const tensor = create(TensorProtoSchema, { name: 'w', dataType: 1, dims: [BigInt(rows), BigInt(cols)], rawData: src });
    const model = create(ModelProtoSchema, { irVersion: 8n, graph: create(GraphProtoSchema, { name: 'g', initializer: [tensor] }) });
    const dir = mkdtempSync(join(tmpdir(), 'fp-inline-'));
    try {
      const out = join(dir, 'model.onnx');
      writeOnnxModelStreamed(model, new TensorDataReader(dir), out, new Map([['w', edit]]), { externalData: false });
      // decoded directly: readOnnxModel refuses a graph without nodes
      const written = fromBinary(ModelProtoSchema, readFileSync(out)).graph!.initializer[0]!;
      expect(written.dims).toEqual([BigInt(rows), BigInt(cols - 3)]);
      expect(Buffer.from(written.rawData).equals(Buffer.from(expected(src, edit)))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
