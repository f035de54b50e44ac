import { afterAll, beforeAll, expect, test } from 'vitest';
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { loadDocs, tasks } from '../src/index.js';
import { DATA, gitBlobSha1, serveHub } from '@fairprune/fixtures';

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

test('hub data offline and not cached: the error names the dataset, the file and the Hugging Face cache folder', async () => {
  const cacheDir = join(dir, 'empty-cache');
  const error = await loadDocs(tasks.boolq, { hub: true }, { hub: { cacheDir, offline: true } }).catch((e: Error) => e);
  expect(error).toBeInstanceOf(Error);
  expect((error as Error).message).toBe(
    `dataset aps/super_glue is not in the Hugging Face cache ${join(cacheDir, 'datasets--aps--super_glue')} (offline: --offline or HF_HUB_OFFLINE=1); ` +
      'missing boolq/validation-00000-of-00001.parquet. Run once online to download it, or: ' +
      'huggingface-cli download --repo-type dataset aps/super_glue boolq/validation-00000-of-00001.parquet --revision main',
  );
});

test('hub data is downloaded into the shared Hugging Face cache (datasets--org--name), then read from it offline', async () => {
  const cacheDir = join(dir, 'hf-cache');
  const commit = 'c'.repeat(40);
  const server = await serveHub([{ type: 'dataset', repo: 'EleutherAI/lambada_openai', commit, files: { 'data/lambada_test.jsonl': DATA.lambadaMini } }]);
  try {
    const loaded = await loadDocs(tasks.lambada_openai, { hub: true }, { hub: { cacheDir, offline: false, endpoint: server.url }, limit: 3 });
    const repoFolder = join(cacheDir, 'datasets--EleutherAI--lambada_openai');
    expect(loaded.path).toBe(join(repoFolder, 'snapshots', commit, 'data', 'lambada_test.jsonl'));
    expect(readFileSync(join(repoFolder, 'refs', 'main'), 'utf8')).toBe(commit);
    expect(realpathSync(loaded.path)).toBe(join(repoFolder, 'blobs', gitBlobSha1(readFileSync(DATA.lambadaMini))));
    expect(loaded.docs.map((d) => (d as { text: string }).text)).toEqual(jsonl(DATA.lambadaMini).slice(0, 3).map((r) => r.text));
    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      'HEAD /datasets/EleutherAI/lambada_openai/resolve/main/data/lambada_test.jsonl',
      `GET /datasets/EleutherAI/lambada_openai/resolve/${commit}/data/lambada_test.jsonl`,
    ]);
  } finally {
    await server.close();
  }
  // Offline and with an unroutable endpoint: a network attempt would fail the test.
  const again = await loadDocs(tasks.lambada_openai, { hub: true }, { hub: { cacheDir, offline: true, endpoint: 'http://127.0.0.1:9' }, limit: 3 });
  expect(again.docs).toHaveLength(3);
});
