import { afterAll, beforeAll, expect, test } from 'vitest';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { cachedPath, fetchHubFile, loadDocs, tasks } from '../src/index.js';
import { DATA } from '@fairprune/fixtures';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fairprune-eval-data-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const jsonl = (path: string) => readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

test('LAMBADA: jsonl and parquet give identical docs', async () => {
  const rows = jsonl(DATA.lambadaMini);
  const parquet = join(dir, 'lambada.parquet');
  parquetWriteFile({ filename: parquet, columnData: [{ name: 'text', data: rows.map((r) => r.text as string), type: 'STRING' }] });
  const fromJsonl = await loadDocs(tasks.lambada_openai, { file: DATA.lambadaMini });
  const fromParquet = await loadDocs(tasks.lambada_openai, { file: parquet });
  expect(fromJsonl.docs).toHaveLength(64);
  expect(fromParquet.docs).toEqual(fromJsonl.docs);
  const limited = await loadDocs(tasks.lambada_openai, { file: parquet }, { limit: 5 });
  expect(limited.docs).toEqual(fromJsonl.docs.slice(0, 5));
  // n-samples.original: the whole file, counted from the parquet metadata / the jsonl lines
  expect(limited.total).toBe(64);
  expect((await loadDocs(tasks.lambada_openai, { file: DATA.lambadaMini }, { limit: 5 })).total).toBe(64);
  expect(limited.rows).toEqual(rows.slice(0, 5));
});

test('BoolQ: jsonl and parquet (hub schema: idx INT32, label INT64) give identical docs; SuperGLUE bool labels map to 0/1', async () => {
  const rows = jsonl(DATA.boolqMini);
  const parquet = join(dir, 'boolq.parquet');
  parquetWriteFile({
    filename: parquet,
    columnData: [
      { name: 'question', data: rows.map((r) => r.question as string), type: 'STRING' },
      { name: 'passage', data: rows.map((r) => r.passage as string), type: 'STRING' },
      { name: 'idx', data: rows.map((r) => r.idx as number), type: 'INT32' },
      { name: 'label', data: rows.map((r) => BigInt(r.label as number)), type: 'INT64' },
    ],
  });
  const fromJsonl = await loadDocs(tasks.boolq, { file: DATA.boolqMini });
  expect((await loadDocs(tasks.boolq, { file: parquet })).docs).toEqual(fromJsonl.docs);
  expect(fromJsonl.docs.map((d) => (d as { label: number }).label)).toEqual(rows.map((r) => r.label));

  const superglue = join(dir, 'val.jsonl');
  writeFileSync(superglue, rows.map((r) => JSON.stringify({ ...r, label: r.label === 1 })).join('\n'));
  expect((await loadDocs(tasks.boolq, { file: superglue })).docs).toEqual(fromJsonl.docs);
});

test('bad rows and files give errors naming the file and document', async () => {
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, '{"text": "fine text"}\n{"txt": "x"}\n');
  await expect(loadDocs(tasks.lambada_openai, { file: bad })).rejects.toThrow(`${bad} (document 1): LAMBADA needs a string field "text"`);
  writeFileSync(bad, '{"text": "fine text"}\nnot json\n');
  await expect(loadDocs(tasks.lambada_openai, { file: bad })).rejects.toThrow(`${bad}:2: not valid JSON`);
  await expect(loadDocs(tasks.boolq, { file: join(dir, 'missing.parquet') })).rejects.toThrow(join(dir, 'missing.parquet'));
  await expect(loadDocs(tasks.boolq, { file: join(dir, 'data.csv') })).rejects.toThrow(/unknown dataset format ".csv"/);
});

test('hub data offline and not cached: the error names the URL and the cache path to fill', async () => {
  const cacheDir = join(dir, 'empty-cache');
  const file = tasks.boolq.hubFile;
  const error = await fetchHubFile(file, { cacheDir, offline: true }).catch((e: Error) => e);
  expect(error).toBeInstanceOf(Error);
  expect((error as Error).message).toContain('https://huggingface.co/datasets/aps/super_glue/resolve/main/boolq/validation-00000-of-00001.parquet');
  expect((error as Error).message).toContain(cachedPath(file, cacheDir));
  await expect(loadDocs(tasks.lambada_openai, { hub: true }, { hub: { cacheDir, offline: true } })).rejects.toThrow(/offline mode: dataset file EleutherAI\/lambada_openai\/data\/lambada_test.jsonl is not in the cache/);
});

test('hub data already cached is read without any network access', async () => {
  const cacheDir = join(dir, 'cache');
  const target = cachedPath(tasks.lambada_openai.hubFile, cacheDir);
  expect(target).toBe(join(cacheDir, 'datasets', 'EleutherAI', 'lambada_openai', 'main', 'data', 'lambada_test.jsonl'));
  mkdirSync(join(target, '..'), { recursive: true });
  writeFileSync(target, readFileSync(DATA.lambadaMini));
  // an unroutable endpoint and offline off: a fetch attempt would fail the test
  const loaded = await loadDocs(tasks.lambada_openai, { hub: true }, { hub: { cacheDir, offline: false, endpoint: 'http://127.0.0.1:9' }, limit: 3 });
  expect(loaded.path).toBe(target);
  expect(loaded.docs).toHaveLength(3);
});
