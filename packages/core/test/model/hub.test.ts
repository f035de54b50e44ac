import { afterAll, beforeAll, expect, test } from 'vitest';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fixtureDir, gitBlobSha1, isLfsPath, serveHub, sha256, type HubServer } from '@fairprune/fixtures';
import { HubError, hubCacheDir, openModelFolder, parseHubId, resolveModelSource } from '../../src/index.js';

const LLAMA = fixtureDir('llama');
const COMMIT = 'a'.repeat(40);
const DEV_COMMIT = 'b'.repeat(40);
const REPO_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'model.safetensors',
  'onnx/model.onnx',
  'onnx/model_kv.onnx',
  'onnx/model_external.onnx',
  'onnx/model_external.onnx_data',
];
const tmp = mkdtempSync(join(tmpdir(), 'fairprune-hub-'));

/** The blob name huggingface_hub gives a file: sha256 for LFS files, git blob sha1 otherwise. */
const blobName = (path: string): string => {
  const bytes = readFileSync(join(LLAMA, path));
  return isLfsPath(path) ? sha256(bytes) : gitBlobSha1(bytes);
};

/** Writes a cache entry the way huggingface_hub does: blobs, relative symlinks from snapshots/<commit>, refs/<branch>. */
function writeCachedSnapshot(cacheDir: string, repoDirName: string, commit: string, files: string[], ref?: string): string {
  const repoFolder = join(cacheDir, repoDirName);
  const snapshot = join(repoFolder, 'snapshots', commit);
  for (const file of files) {
    const blob = join(repoFolder, 'blobs', blobName(file));
    mkdirSync(join(blob, '..'), { recursive: true });
    writeFileSync(blob, readFileSync(join(LLAMA, file)));
    const pointer = join(snapshot, file);
    mkdirSync(join(pointer, '..'), { recursive: true });
    symlinkSync(relative(join(pointer, '..'), blob), pointer);
  }
  if (ref) {
    mkdirSync(join(repoFolder, 'refs'), { recursive: true });
    writeFileSync(join(repoFolder, 'refs', ref), commit);
  }
  return snapshot;
}

test('hub ids: org/name with an optional @revision; anything else is not an id', () => {
  expect(parseHubId('onnx-community/Llama-3.2-1B')).toEqual({ repo: 'onnx-community/Llama-3.2-1B', revision: 'main' });
  expect(parseHubId('org/tiny@dev')).toEqual({ repo: 'org/tiny', revision: 'dev' });
  expect(parseHubId(`org/tiny@${COMMIT}`)).toEqual({ repo: 'org/tiny', revision: COMMIT });
  for (const notId of ['tiny', './org/tiny', '/abs/path', 'org/tiny/extra', '../x', 'org/ti--ny', 'org/tiny@']) expect(parseHubId(notId)).toBeUndefined();
});

test('the cache folder follows huggingface_hub: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub', () => {
  expect(hubCacheDir({ HF_HUB_CACHE: '/c/hub', HF_HOME: '/h' })).toBe('/c/hub');
  expect(hubCacheDir({ HF_HOME: '/h' })).toBe('/h/hub');
  expect(hubCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/huggingface/hub');
});

test('offline, an id resolves from a real cache layout: refs/main, a branch ref, or a commit hash', async () => {
  const cacheDir = join(tmp, 'offline-cache');
  const needed = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx'];
  const main = writeCachedSnapshot(cacheDir, 'models--org--tiny', COMMIT, needed, 'main');
  const dev = writeCachedSnapshot(cacheDir, 'models--org--tiny', DEV_COMMIT, [...needed, 'onnx/model_kv.onnx'], 'dev');
  expect(await resolveModelSource('org/tiny', { cacheDir, offline: true })).toBe(main);
  expect(await resolveModelSource('org/tiny@dev', { cacheDir, offline: true })).toBe(dev);
  expect(await resolveModelSource(`org/tiny@${COMMIT}`, { cacheDir, offline: true })).toBe(main);
  expect(await resolveModelSource('org/tiny@dev', { cacheDir, offline: true, onnxFile: 'onnx/model_kv.onnx' })).toBe(dev);
  // The snapshot is a usable model folder: config and tokenizer are read through the symlinks.
  const folder = openModelFolder(main);
  expect(folder.config.numHiddenLayers).toBe(4);
  expect(folder.onnxPath).toBe(join(main, 'onnx/model.onnx'));
  expect(lstatSync(folder.onnxPath!).isSymbolicLink()).toBe(true);

  // HF_HUB_OFFLINE=1 is offline too, and HF_HUB_CACHE names the cache.
  const env = { ...process.env };
  try {
    process.env.HF_HUB_OFFLINE = '1';
    process.env.HF_HUB_CACHE = cacheDir;
    expect(await resolveModelSource('org/tiny')).toBe(main);
    await expect(resolveModelSource('org/absent')).rejects.toThrow(join(cacheDir, 'models--org--absent'));
  } finally {
    process.env = env;
  }
});

test('offline, a missing model or file is an error naming the id, the cache folder and the missing files', async () => {
  const cacheDir = join(tmp, 'offline-cache');
  const missing = await resolveModelSource('org/absent', { cacheDir, offline: true }).catch((e: Error) => e);
  expect(missing).toBeInstanceOf(HubError);
  expect((missing as Error).message).toContain(`model org/absent is not in the Hugging Face cache ${join(cacheDir, 'models--org--absent')}`);
  expect((missing as Error).message).toContain('--offline or HF_HUB_OFFLINE=1');
  await expect(resolveModelSource('org/tiny', { cacheDir, offline: true, onnxFile: 'onnx/model_external.onnx' })).rejects.toThrow(
    /model org\/tiny is not in the Hugging Face cache .*models--org--tiny .*; missing onnx\/model_external.onnx/,
  );
  await expect(resolveModelSource('org/tiny@v2', { cacheDir, offline: true })).rejects.toThrow('model org/tiny@v2 is not in the Hugging Face cache');
});

test('a path that exists wins over an id of the same shape', async () => {
  // "src/model" is shaped like org/name and is also this package's source folder (vitest runs in the package).
  expect(existsSync('src/model')).toBe(true);
  expect(await resolveModelSource('src/model', { cacheDir: join(tmp, 'empty'), offline: true })).toBe(resolve('src/model'));
  await expect(resolveModelSource('./no/such-folder', { offline: true })).rejects.toThrow(`model folder not found: ${resolve('no/such-folder')}`);
});

let server: HubServer;
/** A loopback address where nothing listens (a port just released), so a connection is refused. */
let refused: string;
beforeAll(async () => {
  const probe = createServer();
  await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done));
  refused = `http://127.0.0.1:${(probe.address() as { port: number }).port}`;
  await new Promise((done) => probe.close(done));
  server = await serveHub([
    {
      type: 'model',
      repo: 'org/tiny',
      commit: COMMIT,
      branches: { dev: DEV_COMMIT },
      files: Object.fromEntries(REPO_FILES.map((f) => [f, join(LLAMA, f)])),
    },
    {
      // A listing with a file name that climbs out of the snapshot folder.
      type: 'model',
      repo: 'org/evil',
      commit: COMMIT,
      files: { 'config.json': join(LLAMA, 'config.json'), 'tokenizer.json': join(LLAMA, 'tokenizer.json'), 'onnx/model.onnx': join(LLAMA, 'onnx/model.onnx'), 'onnx/model.onnx_data/../../../../escape': join(LLAMA, 'config.json') },
    },
  ]);
});
afterAll(() => server.close());

test('online: only the files fairprune needs are downloaded into the cache layout huggingface_hub writes', async () => {
  const cacheDir = join(tmp, 'download-cache');
  const progress: string[] = [];
  const dir = await resolveModelSource('org/tiny', {
    cacheDir,
    endpoint: server.url,
    offline: false,
    token: 'hf_test',
    onnxFile: 'onnx/model_external.onnx',
    onProgress: (m) => progress.push(m),
  });
  const repoFolder = join(cacheDir, 'models--org--tiny');
  expect(dir).toBe(join(repoFolder, 'snapshots', COMMIT));
  expect(readFileSync(join(repoFolder, 'refs', 'main'), 'utf8')).toBe(COMMIT);
  const expected = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model_external.onnx', 'onnx/model_external.onnx_data'];
  expect(readdirSync(dir, { recursive: true }).filter((f) => !statSync(join(dir, String(f))).isDirectory()).sort()).toEqual([...expected].sort());
  for (const file of expected) {
    const pointer = join(dir, file);
    expect(lstatSync(pointer).isSymbolicLink()).toBe(true);
    expect(resolve(join(pointer, '..'), readlinkSync(pointer))).toBe(join(repoFolder, 'blobs', blobName(file)));
    expect(readFileSync(pointer).equals(readFileSync(join(LLAMA, file)))).toBe(true);
  }
  expect(readdirSync(join(repoFolder, 'blobs')).sort()).toEqual(expected.map(blobName).sort());
  expect(server.requests.every((r) => r.authorization === 'Bearer hf_test')).toBe(true);
  expect(server.requests.some((r) => r.url.includes('model.safetensors') || r.url.endsWith('onnx/model.onnx'))).toBe(false);
  expect(progress.some((m) => m.includes('downloading org/tiny onnx/model_external.onnx_data'))).toBe(true);
  expect(openModelFolder(dir, { onnxFile: 'onnx/model_external.onnx' }).config.hiddenSize).toBe(64);

  // Now cached: offline finds it without the server; online, nothing is downloaded again.
  const seen = server.requests.length;
  expect(await resolveModelSource('org/tiny', { cacheDir, endpoint: 'http://127.0.0.1:9', offline: true, onnxFile: 'onnx/model_external.onnx' })).toBe(dir);
  expect(await resolveModelSource('org/tiny', { cacheDir, endpoint: server.url, offline: false, onnxFile: 'onnx/model_external.onnx' })).toBe(dir);
  expect(server.requests.slice(seen).filter((r) => r.method === 'GET' && r.url.includes('/resolve/'))).toEqual([]);
  // Online but the hub unreachable: the cached copy, saying so.
  const notices: string[] = [];
  const unreachable = { cacheDir, endpoint: refused, offline: false, onnxFile: 'onnx/model_external.onnx', onProgress: (m: string) => notices.push(m) };
  expect(await resolveModelSource('org/tiny', unreachable)).toBe(dir);
  expect(notices).toEqual([`${refused} unreachable; using the cached org/tiny`]);

  // Safetensors when asked; a branch resolves to its own commit and ref.
  const dev = await resolveModelSource('org/tiny@dev', { cacheDir, endpoint: server.url, offline: false, safetensors: true });
  expect(dev).toBe(join(repoFolder, 'snapshots', DEV_COMMIT));
  expect(readFileSync(join(repoFolder, 'refs', 'dev'), 'utf8')).toBe(DEV_COMMIT);
  expect(readFileSync(join(dev, 'model.safetensors')).equals(readFileSync(join(LLAMA, 'model.safetensors')))).toBe(true);
  // Blobs are shared between snapshots: config.json is the same blob, downloaded once.
  expect(server.requests.filter((r) => r.method === 'GET' && r.url.endsWith('/config.json'))).toHaveLength(1);
});

test('a download cut mid-file resumes with a Range request and ends byte-identical', async () => {
  const cacheDir = join(tmp, 'resume-cache');
  const data = 'onnx/model_external.onnx_data';
  const total = statSync(join(LLAMA, data)).size;
  const cut = 500_000;
  server.cutAfter.set(data, cut);
  const options = { cacheDir, endpoint: server.url, offline: false, onnxFile: 'onnx/model_external.onnx' } as const;
  const error = await resolveModelSource('org/tiny', options).catch((e: Error) => e);
  expect(error).toBeInstanceOf(HubError);
  const incomplete = join(cacheDir, 'models--org--tiny', 'blobs', `${blobName(data)}.incomplete`);
  expect((error as Error).message).toContain(`of ${total} bytes`);
  expect((error as Error).message).toContain(`run again to resume from ${incomplete}`);
  const kept = statSync(incomplete).size;
  expect(kept).toBeGreaterThan(0);
  expect(kept).toBeLessThanOrEqual(cut);

  const seen = server.requests.length;
  const dir = await resolveModelSource('org/tiny', options);
  // The resolve URL redirects to the CDN (as huggingface.co does for LFS files); the Range header goes along.
  const dataGets = server.requests.slice(seen).filter((r) => r.method === 'GET' && (r.url.endsWith(data) || r.url === `/cdn/${blobName(data)}`));
  expect(dataGets.map((r) => [r.url, r.range])).toEqual([
    [`/org/tiny/resolve/${COMMIT}/${data}`, `bytes=${kept}-`],
    [`/cdn/${blobName(data)}`, `bytes=${kept}-`],
  ]);
  expect(readFileSync(join(dir, data)).equals(readFileSync(join(LLAMA, data)))).toBe(true);
  expect(existsSync(incomplete)).toBe(false);
});

test('online errors name what is wrong: unknown repository, a repository without the ONNX file, an unreachable hub', async () => {
  const cacheDir = join(tmp, 'errors-cache');
  await expect(resolveModelSource('org/nothing', { cacheDir, endpoint: server.url, offline: false })).rejects.toThrow(
    `${server.url}/api/models/org/nothing/revision/main: HTTP 404 (no such repository, revision or file: check the id org/nothing)`,
  );
  await expect(resolveModelSource('org/tiny', { cacheDir, endpoint: server.url, offline: false, onnxFile: 'onnx/model_q4.onnx' })).rejects.toThrow(
    'org/tiny has no onnx/model_q4.onnx (its ONNX files: onnx/model.onnx, onnx/model_kv.onnx, onnx/model_external.onnx; pick one with --onnx-file)',
  );
  await expect(resolveModelSource('org/tiny', { cacheDir, endpoint: refused, offline: false })).rejects.toThrow(
    `cannot reach ${refused}/api/models/org/tiny/revision/main (connect ECONNREFUSED ${refused.slice('http://'.length)}), and model org/tiny is not in the cache ${join(cacheDir, 'models--org--tiny')}`,
  );
  await expect(resolveModelSource('org/evil', { cacheDir, endpoint: server.url, offline: false })).rejects.toThrow(
    'org/evil: "onnx/model.onnx_data/../../../../escape" is not a file path inside the repository',
  );
  expect(existsSync(join(cacheDir, 'escape'))).toBe(false);
  expect(existsSync(join(cacheDir, 'models--org--evil'))).toBe(false);
});
