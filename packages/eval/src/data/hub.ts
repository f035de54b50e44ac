import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** A file in a Hugging Face dataset repository, pinned to a revision. */
export interface HubFile {
  repo: string;
  revision: string;
  path: string;
}

export interface HubOptions {
  /** Cache root; default `FAIRPRUNE_CACHE`, else the user's cache dir + `/fairprune`. */
  cacheDir?: string;
  /** Never touch the network; default true when `FAIRPRUNE_OFFLINE` or `HF_HUB_OFFLINE` is set to 1/true. */
  offline?: boolean;
  /** Bearer token; default `HF_TOKEN`. */
  token?: string;
  /** Default `HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FAIRPRUNE_CACHE) return env.FAIRPRUNE_CACHE;
  if (process.platform === 'win32') return join(env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'), 'fairprune', 'Cache');
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Caches', 'fairprune');
  return join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'fairprune');
}

function isTruthy(value: string | undefined): boolean {
  return value !== undefined && ['1', 'true', 'yes', 'on'].includes(value.toLowerCase());
}

export function hubUrl(file: HubFile, endpoint = process.env.HF_ENDPOINT ?? 'https://huggingface.co'): string {
  const revision = encodeURIComponent(file.revision);
  return `${endpoint.replace(/\/$/, '')}/datasets/${file.repo}/resolve/${revision}/${file.path}`;
}

export function cachedPath(file: HubFile, cacheDir = defaultCacheDir()): string {
  return join(cacheDir, 'datasets', ...file.repo.split('/'), file.revision, ...file.path.split('/'));
}

/**
 * Returns the local path of a hub file, downloading it into the cache on first use (written to a temporary name
 * and renamed, so an interrupted download never leaves a truncated file that looks cached).
 */
export async function fetchHubFile(file: HubFile, options: HubOptions = {}): Promise<string> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const target = cachedPath(file, cacheDir);
  if (await isFile(target)) return target;

  const url = hubUrl(file, options.endpoint);
  const offline = options.offline ?? (isTruthy(process.env.FAIRPRUNE_OFFLINE) || isTruthy(process.env.HF_HUB_OFFLINE));
  if (offline) {
    throw new Error(
      `offline mode: dataset file ${file.repo}/${file.path} is not in the cache. Fetch ${url} and save it as ${target}, ` +
        'or pass a local file with --data FILE.',
    );
  }
  const token = options.token ?? process.env.HF_TOKEN;
  let response: Response;
  try {
    response = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  } catch (error) {
    throw new Error(
      `cannot download ${url} (${(error as Error).message}). Without network, fetch it elsewhere and save it as ${target}, or pass --data FILE.`,
    );
  }
  if (!response.ok || response.body === null) {
    const hint = response.status === 401 || response.status === 403 ? ' (set HF_TOKEN if the dataset is gated)' : '';
    throw new Error(`cannot download ${url}: HTTP ${response.status}${hint}`);
  }
  await mkdir(dirname(target), { recursive: true });
  const partial = `${target}.${process.pid}.partial`;
  try {
    await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), createWriteStream(partial));
    await rename(partial, target);
  } catch (error) {
    await rm(partial, { force: true });
    throw new Error(`cannot download ${url} into ${target}: ${(error as Error).message}`);
  }
  return target;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
