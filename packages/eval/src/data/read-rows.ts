import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';

/** One record of a dataset file, before a task checks its fields. */
export type Row = Record<string, unknown>;

export type DataFormat = 'jsonl' | 'parquet';

export function formatOf(path: string): DataFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.jsonl' || ext === '.json') return 'jsonl';
  if (ext === '.parquet') return 'parquet';
  throw new Error(`${path}: unknown dataset format "${ext}" (expected .jsonl or .parquet)`);
}

/** Reads the rows of a .jsonl (one JSON object per line; blank lines skipped) or .parquet file. */
export async function readRows(path: string, limit?: number): Promise<Row[]> {
  return formatOf(path) === 'jsonl' ? readJsonl(path, limit) : readParquet(path, limit);
}

/** Documents in a .jsonl or .parquet file (lm-eval's `n-samples.original`), without parsing a parquet file's rows. */
export async function countRows(path: string): Promise<number> {
  if (formatOf(path) === 'jsonl') return (await readFileOrExplain(path)).split('\n').filter((line) => line.trim() !== '').length;
  try {
    return Number((await parquetMetadataAsync(await asyncBufferFromFile(path))).num_rows);
  } catch (error) {
    throw new Error(`${path}: not a readable parquet file (${(error as Error).message})`);
  }
}

async function readJsonl(path: string, limit?: number): Promise<Row[]> {
  const text = await readFileOrExplain(path);
  const rows: Row[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length && (limit === undefined || rows.length < limit); i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new Error(`${path}:${i + 1}: not valid JSON (${(error as Error).message})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new Error(`${path}:${i + 1}: expected a JSON object per line`);
    }
    rows.push(value as Row);
  }
  return rows;
}

async function readParquet(path: string, limit?: number): Promise<Row[]> {
  let file;
  try {
    file = await asyncBufferFromFile(path);
  } catch (error) {
    throw new Error(`${path}: cannot open dataset file (${(error as Error).message})`);
  }
  try {
    const rows = await parquetReadObjects({ file, compressors, ...(limit === undefined ? {} : { rowEnd: limit }) });
    return rows as Row[];
  } catch (error) {
    throw new Error(`${path}: not a readable parquet file (${(error as Error).message})`);
  }
}

async function readFileOrExplain(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new Error(`${path}: cannot read dataset file (${(error as Error).message})`);
  }
}
