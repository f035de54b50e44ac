import { downloadHubFile, type HubOptions } from '@fairprune/core';
import { countRows, readRows, type Row } from './read-rows.js';
import type { Doc, TaskDefinition } from '../tasks.js';

/** Where a task's documents come from: a local .jsonl/.parquet file, or the task's file on the Hugging Face hub. */
export type DataSource = { file: string } | { hub: true };

export interface LoadedDocs {
  docs: Doc[];
  /** The rows the documents were made from, as read (the harness logs these as each sample's `doc`). */
  rows: Row[];
  /** Documents in the whole file, before `limit`. */
  total: number;
  /** The file actually read (the cache path for hub data). */
  path: string;
}

/** Reads the documents of a task; `limit` keeps the first N, like the harness's `--limit N`. */
export async function loadDocs(
  task: TaskDefinition,
  source: DataSource,
  options: { limit?: number; hub?: HubOptions } = {},
): Promise<LoadedDocs> {
  const { limit } = options;
  if (limit !== undefined && (!Number.isInteger(limit) || limit <= 0)) {
    throw new Error(`--limit must be a positive integer, got ${limit}`);
  }
  const path = 'file' in source ? source.file : await downloadHubFile(task.hubFile, options.hub);
  const rows = await readRows(path, limit);
  if (rows.length === 0) throw new Error(`${path}: no documents`);
  const docs = rows.map((row, i) => task.toDoc(row, `${path} (document ${i})`));
  const total = limit === undefined ? rows.length : await countRows(path);
  return { docs, rows, total, path };
}
