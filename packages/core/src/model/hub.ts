import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * Hugging Face hub ids and the hub cache, in the layout Python's huggingface_hub writes
 * (`<cache>/models--org--name/{refs,snapshots,blobs}`), so a model downloaded by either is found by both.
 *
 * The protocol is huggingface_hub's own (`file_download.py`): a HEAD on `/<id>/resolve/<rev>/<file>` gives the
 * commit (`X-Repo-Commit`) and the blob name (`X-Linked-Etag` or `ETag`); the blob is downloaded to
 * `blobs/<etag>.incomplete`, resumed with a `Range` request after a cut, renamed, and linked from
 * `snapshots/<commit>/<file>`; `refs/<branch>` holds the commit a branch pointed at. @huggingface/hub's
 * `downloadFileToCacheDir` writes the same layout but restarts every download from byte 0, has no progress hook and
 * no offline mode, and logs with `console.debug` (stdout, where `--json` output goes), so it is not used.
 */

/** The kind of hub repository, as in the cache folder's prefix (`models--`, `datasets--`). */
export type HubRepoType = 'model' | 'dataset';

/** Where and how the hub is reached. Every default is read from the environment here and nowhere else. */
export interface HubOptions {
  /**
   * The hub cache folder. Default: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
   * else `~/.cache/huggingface/hub` (where huggingface_hub looks).
   */
  cacheDir?: string;
  /** Hub address (a mirror works). Default: `HF_ENDPOINT`, else `https://huggingface.co`. */
  endpoint?: string;
  /** Access token for gated or private repositories. Default: `HF_TOKEN`, else the file `huggingface-cli login` wrote. */
  token?: string;
  /** Read the cache only, never the network. Default: true when `HF_HUB_OFFLINE` or `FAIRPRUNE_OFFLINE` is 1/true/yes/on. */
  offline?: boolean;
  /** Download progress, one line at a time (the CLI prints it on stderr). */
  onProgress?: (message: string) => void;
}

/** A model that is not in the cache while offline, or that the hub could not deliver; the message names the id and cache path. */
export class HubError extends Error {
  /** Always `'HubError'`. */
  override name = 'HubError';
}

const truthy = (value: string | undefined): boolean => value !== undefined && ['1', 'true', 'yes', 'on'].includes(value.toLowerCase());

function hfHome(env: NodeJS.ProcessEnv): string {
  return env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
}

/** The hub cache folder huggingface_hub uses in this environment. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.HF_HUB_CACHE ?? env.HUGGINGFACE_HUB_CACHE ?? join(hfHome(env), 'hub');
}

interface HubSettings {
  cacheDir: string;
  endpoint: string;
  token: string | undefined;
  offline: boolean;
  progress: (message: string) => void;
}

function settingsOf(options: HubOptions, env: NodeJS.ProcessEnv = process.env): HubSettings {
  let token = options.token ?? env.HF_TOKEN;
  if (token === undefined) {
    const tokenFile = env.HF_TOKEN_PATH ?? join(hfHome(env), 'token');
    if (existsSync(tokenFile)) token = readFileSync(tokenFile, 'utf8').trim() || undefined;
  }
  return {
    cacheDir: resolve(options.cacheDir ?? hubCacheDir(env)),
    endpoint: (options.endpoint ?? env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, ''),
    token,
    offline: options.offline ?? (truthy(env.HF_HUB_OFFLINE) || truthy(env.FAIRPRUNE_OFFLINE)),
    progress: options.onProgress ?? (() => {}),
  };
}

/** A hub repository at a revision (branch, tag or commit hash). */
export interface HubId {
  /** `org/name`. */
  repo: string;
  /** Branch, tag or 40-hex commit; `main` when the id has no `@revision`. */
  revision: string;
}

const HUB_ID = /^([A-Za-z0-9][\w.-]*)\/([A-Za-z0-9][\w.-]*)(?:@([^\s@]+))?$/;

/** Parses `org/name[@revision]`; undefined when the text is not shaped like a hub id. */
export function parseHubId(text: string): HubId | undefined {
  const match = HUB_ID.exec(text);
  if (!match || text.includes('..') || text.includes('--')) return undefined;
  return { repo: `${match[1]}/${match[2]}`, revision: match[3] ?? 'main' };
}

/** `<cache>/models--org--name` (or `datasets--…`). */
export function hubRepoFolder(cacheDir: string, type: HubRepoType, repo: string): string {
  return join(cacheDir, `${type}s--${repo.split('/').join('--')}`);
}

const COMMIT = /^[0-9a-f]{40}$/;

/** The commit a revision names in the cache: the hash itself, or what `refs/<revision>` holds. */
function cachedCommit(repoFolder: string, revision: string): string | undefined {
  if (COMMIT.test(revision)) return revision;
  const ref = join(repoFolder, 'refs', revision);
  return existsSync(ref) ? readFileSync(ref, 'utf8').trim() : undefined;
}

/** One file of a hub repository. */
export interface HubFileRequest {
  /** Model or dataset repository. */
  type: HubRepoType;
  /** `org/name`. */
  repo: string;
  /** Branch, tag or commit hash. */
  revision: string;
  /** Path inside the repository. */
  path: string;
}

function describeRepo(type: HubRepoType, repo: string, revision: string): string {
  return `${type === 'dataset' ? 'dataset ' : ''}${repo}${revision === 'main' ? '' : `@${revision}`}`;
}

function offlineError(what: string, repoFolder: string, missing: string[], cliHint: string): HubError {
  return new HubError(
    `${what} is not in the Hugging Face cache ${repoFolder} (offline: --offline or HF_HUB_OFFLINE=1)` +
      `${missing.length ? `; missing ${missing.join(', ')}` : ''}. Run once online to download it, or: ${cliHint}`,
  );
}

function authHeaders(settings: HubSettings): Record<string, string> {
  return settings.token ? { authorization: `Bearer ${settings.token}` } : {};
}

function httpError(url: string, status: number, what: string): HubError {
  const hint =
    status === 401 || status === 403 ? ' (gated or private: accept its licence on the hub and set HF_TOKEN)' : status === 404 ? ` (no such repository, revision or file: check ${what})` : '';
  return new HubError(`${url}: HTTP ${status}${hint}`);
}

/** The hub (or the mirror, or the CDN it redirects to) could not be reached at all: no HTTP status. */
class HubUnreachableError extends HubError {
  override name = 'HubUnreachableError';
}

/** `fetch`, with a refused or dropped connection turned into an error that names the URL and the cause. */
async function hubFetch(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (error) {
    const cause = ((error as Error).cause as Error | undefined)?.message ?? (error as Error).message;
    throw new HubUnreachableError(`cannot reach ${url} (${cause})`);
  }
}

/** The metadata huggingface_hub reads from a HEAD on a resolve URL. */
interface FileMetadata {
  commit: string;
  etag: string;
  size: number;
}

async function fileMetadata(settings: HubSettings, file: HubFileRequest): Promise<FileMetadata> {
  const prefix = file.type === 'dataset' ? '/datasets' : '';
  let url = `${settings.endpoint}${prefix}/${file.repo}/resolve/${encodeURIComponent(file.revision)}/${file.path}`;
  // Like huggingface_hub: follow only same-host redirects (a renamed repository); a redirect to the CDN already
  // carries the X-Linked-* headers that describe the file.
  for (let hops = 0; ; hops++) {
    const response = await hubFetch(url, { method: 'HEAD', redirect: 'manual', headers: { ...authHeaders(settings), 'accept-encoding': 'identity' } });
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location?.startsWith('/') && hops < 5) {
      url = new URL(location, url).href;
      continue;
    }
    if (response.status >= 400) throw httpError(url, response.status, `${file.repo} and ${file.path}`);
    const etag = (response.headers.get('x-linked-etag') ?? response.headers.get('etag') ?? '').replace(/^W\//, '').replace(/"/g, '');
    const commit = response.headers.get('x-repo-commit') ?? '';
    const size = Number(response.headers.get('x-linked-size') ?? response.headers.get('content-length'));
    if (!etag || !COMMIT.test(commit) || !Number.isFinite(size)) {
      throw new HubError(`${url}: the server did not send X-Repo-Commit, ETag and a size (is HF_ENDPOINT a Hugging Face hub?)`);
    }
    return { commit, etag, size };
  }
}

const MB = 1024 * 1024;

/** Streams a resolve URL into `blobs/<etag>`, continuing a `.incomplete` file left by a cut connection. */
async function downloadBlob(settings: HubSettings, url: string, blobPath: string, size: number, label: string): Promise<void> {
  const incomplete = `${blobPath}.incomplete`;
  let have = existsSync(incomplete) ? statSync(incomplete).size : 0;
  if (have > size) have = 0;
  if (have < size) {
    // identity: Range offsets and the expected size are those of the file's bytes, not of a compressed stream.
    const headers = { ...authHeaders(settings), 'accept-encoding': 'identity', ...(have > 0 ? { range: `bytes=${have}-` } : {}) };
    const response = await hubFetch(url, { headers });
    if (response.status !== 200 && response.status !== 206) throw httpError(url, response.status, label);
    // A server that ignores Range sends the whole file again: start over rather than append it.
    if (response.status === 200) have = 0;
    settings.progress(`downloading ${label} (${(size / MB).toFixed(1)} MB${have > 0 ? `, resuming at ${(have / MB).toFixed(1)} MB` : ''})`);
    const handle = await open(incomplete, have > 0 ? 'a' : 'w');
    let nextReport = have + size / 10;
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        await handle.write(chunk);
        have += chunk.length;
        if (size >= 10 * MB && have >= nextReport && have < size) {
          settings.progress(`downloading ${label}: ${(have / MB).toFixed(0)} of ${(size / MB).toFixed(0)} MB`);
          nextReport += size / 10;
        }
      }
    } catch (error) {
      throw new HubError(`download of ${url} stopped at ${have} of ${size} bytes (${(error as Error).message}); run again to resume from ${incomplete}`);
    } finally {
      await handle.close();
    }
  }
  if (have !== size) throw new HubError(`download of ${url} ended at ${have} of ${size} bytes; run again to resume from ${incomplete}`);
  renameSync(incomplete, blobPath);
}

/** `snapshots/<commit>/<path>` → `../../blobs/<etag>` (relative, so the cache can move), a copy where links are refused. */
function linkSnapshotFile(pointer: string, blobPath: string): void {
  mkdirSync(dirname(pointer), { recursive: true });
  rmSync(pointer, { force: true });
  try {
    symlinkSync(relative(dirname(pointer), blobPath), pointer);
  } catch {
    copyFileSync(blobPath, pointer);
  }
}

/** Repository paths are joined onto the cache folder: none may lead out of the snapshot. */
function checkRepoPath(repo: string, path: string): void {
  if (path.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new HubError(`${repo}: "${path}" is not a file path inside the repository`);
  }
}

/** `label` names the repository in progress lines (the user's revision, not the commit it resolved to). */
async function downloadToCache(settings: HubSettings, file: HubFileRequest, label = describeRepo(file.type, file.repo, file.revision)): Promise<string> {
  checkRepoPath(file.repo, file.path);
  const repoFolder = hubRepoFolder(settings.cacheDir, file.type, file.repo);
  const meta = await fileMetadata(settings, file);
  if (file.revision !== meta.commit) {
    mkdirSync(join(repoFolder, 'refs'), { recursive: true });
    writeFileSync(join(repoFolder, 'refs', file.revision), meta.commit);
  }
  const pointer = join(repoFolder, 'snapshots', meta.commit, ...file.path.split('/'));
  if (existsSync(pointer)) return pointer;
  const blobPath = join(repoFolder, 'blobs', meta.etag);
  if (!existsSync(blobPath)) {
    mkdirSync(dirname(blobPath), { recursive: true });
    const prefix = file.type === 'dataset' ? '/datasets' : '';
    const url = `${settings.endpoint}${prefix}/${file.repo}/resolve/${meta.commit}/${file.path}`;
    await downloadBlob(settings, url, blobPath, meta.size, `${label} ${file.path}`);
  }
  linkSnapshotFile(pointer, blobPath);
  return pointer;
}

function isNetworkError(error: unknown): boolean {
  return error instanceof HubUnreachableError;
}

/**
 * The local path of one file of a hub repository: from the cache when it is there (always, offline), else downloaded
 * into the cache. Online, the revision is checked against the hub first, as huggingface_hub does, so a moved branch
 * is followed; when the hub cannot be reached the cached copy is used.
 * @throws {@link HubError} offline (or unreachable) with the file not cached, naming the repository and cache folder;
 *   on an HTTP error, naming the URL.
 */
export async function downloadHubFile(file: HubFileRequest, options: HubOptions = {}): Promise<string> {
  const settings = settingsOf(options);
  const repoFolder = hubRepoFolder(settings.cacheDir, file.type, file.repo);
  const cached = (): string | undefined => {
    const commit = cachedCommit(repoFolder, file.revision);
    const pointer = commit === undefined ? undefined : join(repoFolder, 'snapshots', commit, ...file.path.split('/'));
    return pointer !== undefined && existsSync(pointer) ? pointer : undefined;
  };
  const cliHint = `huggingface-cli download${file.type === 'dataset' ? ' --repo-type dataset' : ''} ${file.repo} ${file.path} --revision ${file.revision}`;
  if (settings.offline) {
    const hit = cached();
    if (hit === undefined) throw offlineError(describeRepo(file.type, file.repo, file.revision), repoFolder, [file.path], cliHint);
    return hit;
  }
  try {
    return await downloadToCache(settings, file);
  } catch (error) {
    const hit = isNetworkError(error) ? cached() : undefined;
    if (hit !== undefined) {
      settings.progress(`${settings.endpoint} unreachable; using the cached ${file.repo} ${file.path}`);
      return hit;
    }
    if (isNetworkError(error)) throw new HubError(`${(error as Error).message}, and ${describeRepo(file.type, file.repo, file.revision)} ${file.path} is not in the cache ${repoFolder}`);
    throw error;
  }
}

/** Options of {@link resolveModelSource}. */
export interface ModelSourceOptions extends HubOptions {
  /** The ONNX file to fetch (the CLI's `--onnx-file`). Default: `onnx/model.onnx`, else `model.onnx`. */
  onnxFile?: string;
  /** Also fetch the safetensors weights and their index (prune writes pruned safetensors from them). Default false. */
  safetensors?: boolean;
}

/** The files fairprune reads besides the weights; config.json and tokenizer.json are required. */
const SUPPORT_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'];
const REQUIRED_FILES = ['config.json', 'tokenizer.json'];
const DEFAULT_ONNX_FILES = ['onnx/model.onnx', 'model.onnx'];

/** The repository files a model source needs, chosen from the repository's file list. */
function neededFiles(id: string, files: readonly string[], options: ModelSourceOptions): string[] {
  const onnxFiles = files.filter((f) => f.endsWith('.onnx'));
  const onnx = options.onnxFile ?? DEFAULT_ONNX_FILES.find((f) => files.includes(f));
  if (onnx === undefined || !files.includes(onnx)) {
    const found = onnxFiles.length ? `its ONNX files: ${onnxFiles.join(', ')}; pick one with --onnx-file` : 'it has no ONNX file; fairprune needs an ONNX export (e.g. an onnx-community repository)';
    throw new HubError(`${id} has no ${options.onnxFile ?? DEFAULT_ONNX_FILES.join(' or ')} (${found})`);
  }
  for (const required of REQUIRED_FILES) if (!files.includes(required)) throw new HubError(`${id} has no ${required}, which fairprune needs`);
  // External data lies beside the graph: model.onnx_data, model.onnx_data_1, …, or model.onnx.data.
  const externalData = files.filter((f) => f.startsWith(`${onnx}_data`) || f.startsWith(`${onnx}.data`));
  const safetensors = options.safetensors ? files.filter((f) => !f.includes('/') && (f.endsWith('.safetensors') || f === 'model.safetensors.index.json')) : [];
  return [...SUPPORT_FILES.filter((f) => files.includes(f)), onnx, ...externalData, ...safetensors];
}

/**
 * The local folder of a model given as a folder or as a hub id `org/name[@revision]`. A path that exists always
 * wins; an id is looked up in the Hugging Face cache and, when online, the files fairprune needs (config, tokenizer,
 * the chosen ONNX graph and its external data, safetensors when asked) are downloaded into it. Returns the folder
 * (`…/snapshots/<commit>` for an id).
 * @throws {@link HubError} when the text is neither an existing path nor an id, offline with files missing from the
 *   cache (the message names the id, cache folder and missing files), or when the hub refuses a request.
 */
export async function resolveModelSource(idOrPath: string, options: ModelSourceOptions = {}): Promise<string> {
  if (existsSync(idOrPath)) return resolve(idOrPath);
  const id = parseHubId(idOrPath);
  if (id === undefined) throw new HubError(`model folder not found: ${resolve(idOrPath)} (nor is "${idOrPath}" a hub id org/name[@revision])`);
  const settings = settingsOf(options);
  const repoFolder = hubRepoFolder(settings.cacheDir, 'model', id.repo);
  const what = describeRepo('model', id.repo, id.revision);

  // The cached snapshot of the revision, and which of the files fairprune needs it lacks.
  const inCache = (): { snapshot: string | undefined; missing: string[] } => {
    const commit = cachedCommit(repoFolder, id.revision);
    if (commit === undefined) return { snapshot: undefined, missing: [] };
    const snapshot = join(repoFolder, 'snapshots', commit);
    const onnx = options.onnxFile ?? DEFAULT_ONNX_FILES.find((f) => existsSync(join(snapshot, f))) ?? DEFAULT_ONNX_FILES[0]!;
    const missing = [...REQUIRED_FILES, onnx].filter((f) => !existsSync(join(snapshot, f)));
    if (options.safetensors && !existsSync(join(snapshot, 'model.safetensors')) && !existsSync(join(snapshot, 'model.safetensors.index.json'))) missing.push('model.safetensors');
    return { snapshot, missing };
  };
  const fromCache = (): string | undefined => {
    const { snapshot, missing } = inCache();
    return missing.length === 0 ? snapshot : undefined;
  };
  const offlineFailure = (): HubError =>
    offlineError(`model ${what}`, repoFolder, inCache().missing, `huggingface-cli download ${id.repo} --revision ${id.revision} --include '*.json' '${options.onnxFile ?? DEFAULT_ONNX_FILES[0]!}*'`);

  if (settings.offline) {
    const hit = fromCache();
    if (hit === undefined) throw offlineFailure();
    return hit;
  }

  const listingUrl = `${settings.endpoint}/api/models/${id.repo}/revision/${encodeURIComponent(id.revision)}`;
  let listing: { sha?: unknown; siblings?: unknown };
  try {
    const response = await hubFetch(listingUrl, { headers: authHeaders(settings) });
    if (!response.ok) throw httpError(listingUrl, response.status, `the id ${idOrPath}`);
    listing = (await response.json()) as typeof listing;
  } catch (error) {
    if (!isNetworkError(error)) throw error;
    const hit = fromCache();
    if (hit !== undefined) {
      settings.progress(`${settings.endpoint} unreachable; using the cached ${what}`);
      return hit;
    }
    throw new HubError(`${(error as Error).message}, and model ${what} is not in the cache ${repoFolder}`);
  }
  const siblings = Array.isArray(listing.siblings) ? (listing.siblings as Array<{ rfilename?: unknown }>) : undefined;
  if (typeof listing.sha !== 'string' || !COMMIT.test(listing.sha) || siblings === undefined) {
    throw new HubError(`${listingUrl}: expected { sha, siblings: [{ rfilename }] } (is HF_ENDPOINT a Hugging Face hub?)`);
  }
  const commit = listing.sha;
  const files = neededFiles(what, siblings.map((s) => String(s.rfilename)), options);
  for (const path of files) checkRepoPath(id.repo, path);
  for (const path of files) await downloadToCache(settings, { type: 'model', repo: id.repo, revision: commit, path }, what);
  if (id.revision !== commit) {
    mkdirSync(join(repoFolder, 'refs'), { recursive: true });
    writeFileSync(join(repoFolder, 'refs', id.revision), commit);
  }
  return join(repoFolder, 'snapshots', commit);
}
