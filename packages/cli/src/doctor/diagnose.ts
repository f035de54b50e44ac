import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { ModelSession, onnxruntimeTelemetry, type OnnxruntimeTelemetry } from '@fairprune/core';
import { backendInfo, type BackendInfo } from '@fairprune/native-cuda';
import { version as fairpruneVersion } from '../version.js';
import { probeModelBytes } from './probe-model.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  status: CheckStatus;
  message: string;
  /** What to run or install to fix it. */
  fix?: string;
}

export interface ExecutionProviderStatus {
  name: string;
  /** Compiled into this onnxruntime-node build (`listSupportedBackends()`); not bundled = needs extra libraries. */
  bundled: boolean;
  /** A session with this provider opened and ran the probe model just now; null when not tried. */
  usable: boolean | null;
  detail: string;
}

export interface Diagnosis {
  ok: boolean;
  versions: { fairprune: string; node: string; napi: string; onnxruntimeNode: string; platform: string };
  native: BackendInfo & { summary: string };
  onnxruntime: {
    packageDir: string;
    providers: ExecutionProviderStatus[];
    cudaLibraries: { dir: string; required: string[]; missing: string[] };
    /** Whether onnxruntime's own telemetry is on in fairprune's processes, and why. */
    telemetry: OnnxruntimeTelemetry;
  };
  threads: {
    availableParallelism: number;
    logicalCpus: number;
    /** libuv pool size: UV_THREADPOOL_SIZE or Node's default 4 (the native addon's async work runs there). */
    uvThreadpoolSize: number;
    uvThreadpoolSizeSource: 'UV_THREADPOOL_SIZE' | 'default';
    /** Threads the native kernels use. */
    nativeKernels: number;
    /** fairprune leaves ORT's intra-op count at ORT's default (one per physical core) unless a command gets --threads. */
    onnxruntimeIntraOp: string;
  };
  checks: Check[];
}

/** The CUDA execution provider's libraries, which the npm package does not ship (they come from the GPU nupkg). */
export const cudaProviderLibraries = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'];

export function cudaInstallHelp(libraryDir: string): string {
  return (
    'With internet: ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node. Offline: copy libonnxruntime_providers_cuda.so and ' +
    `libonnxruntime_providers_shared.so from runtimes/linux-x64/native/ of the Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0 nupkg into ${libraryDir}. ` +
    'The CUDA provider also needs CUDA 12.x and cuDNN 9 libraries on LD_LIBRARY_PATH.'
  );
}

const nativeBuildCommand = 'npx nx run @fairprune/native-cuda:build-native';

/** onnxruntime-node as @fairprune/core resolves it: that is the copy every session of fairprune uses. */
export function onnxruntimeLocation(): { packageDir: string; require: NodeJS.Require } {
  const fromCli = createRequire(import.meta.url);
  const fromCore = createRequire(fromCli.resolve('@fairprune/core/package.json'));
  const packageJson = fromCore.resolve('onnxruntime-node/package.json');
  return { packageDir: dirname(packageJson), require: fromCore };
}

function nativeSummary(info: BackendInfo): string {
  if (info.backend === 'reference') return `TypeScript reference (slow): ${info.reason ?? 'native addon not loaded'}`;
  const cuda = info.cuda.available
    ? `CUDA on ${info.cuda.deviceName ?? 'a GPU'} (${info.cuda.deviceCount} device${info.cuda.deviceCount === 1 ? '' : 's'})`
    : `no CUDA (${info.cuda.reason ?? (info.cuda.compiled ? 'no usable GPU' : 'addon built without CUDA')})`;
  return `native CPU (${info.threads} threads); ${cuda}`;
}

/** Opens the probe model with the provider and runs it; the ids must come back unchanged. */
async function probeProvider(device: 'cpu' | 'cuda'): Promise<{ usable: boolean; detail: string }> {
  let fallback: string | undefined;
  try {
    const session = await ModelSession.create(probeModelBytes(), { device, onFallback: (message) => (fallback = message) });
    try {
      if (session.device !== device) return { usable: false, detail: fallback ?? `opened on ${session.device} instead` };
      const ids = [5, 6, 7];
      const out = await session.run(session.initialFeeds([ids]));
      const echoed = Array.from(out[session.logitsName]?.data as ArrayLike<bigint>, Number);
      if (echoed.join() !== ids.join()) return { usable: false, detail: `probe model returned [${echoed.join(', ')}] for [${ids.join(', ')}]` };
      return { usable: true, detail: 'opened a session and ran a probe model' };
    } finally {
      await session.release();
    }
  } catch (error) {
    return { usable: false, detail: error instanceof Error ? error.message.split('\n')[0]! : String(error) };
  }
}

/** Gathers versions, backends, providers and thread counts, and judges what is missing. */
export async function diagnose(): Promise<Diagnosis> {
  const ortLocation = onnxruntimeLocation();
  const ortPackage = JSON.parse(readFileSync(join(ortLocation.packageDir, 'package.json'), 'utf8')) as { version: string };
  const ort = ortLocation.require('onnxruntime-node') as { listSupportedBackends(): Array<{ name: string; bundled: boolean }> };
  const libraryDir = join(ortLocation.packageDir, 'bin', 'napi-v6', process.platform, process.arch);
  const missingCudaLibraries = cudaProviderLibraries.filter((lib) => !existsSync(join(libraryDir, lib)));

  const probes = new Map<string, { usable: boolean; detail: string }>();
  probes.set('cpu', await probeProvider('cpu'));
  probes.set(
    'cuda',
    missingCudaLibraries.length > 0
      ? { usable: false, detail: `provider libraries missing from ${libraryDir}: ${missingCudaLibraries.join(', ')}` }
      : await probeProvider('cuda'),
  );
  const providers: ExecutionProviderStatus[] = ort.listSupportedBackends().map(({ name, bundled }) => {
    const probe = probes.get(name);
    return probe
      ? { name, bundled, usable: probe.usable, detail: probe.detail }
      : { name, bundled, usable: null, detail: 'compiled in; not used by fairprune, not probed' };
  });

  const native = backendInfo();
  const uvEnv = Number(process.env.UV_THREADPOOL_SIZE);
  const diagnosis: Diagnosis = {
    ok: true,
    versions: {
      fairprune: fairpruneVersion,
      node: process.version,
      napi: process.versions.napi ?? 'unknown',
      onnxruntimeNode: ortPackage.version,
      platform: `${process.platform}-${process.arch}`,
    },
    native: { ...native, summary: nativeSummary(native) },
    onnxruntime: {
      packageDir: ortLocation.packageDir,
      providers,
      cudaLibraries: { dir: libraryDir, required: cudaProviderLibraries, missing: missingCudaLibraries },
      telemetry: onnxruntimeTelemetry(),
    },
    threads: {
      availableParallelism: availableParallelism(),
      logicalCpus: cpus().length,
      uvThreadpoolSize: Number.isInteger(uvEnv) && uvEnv > 0 ? uvEnv : 4,
      uvThreadpoolSizeSource: Number.isInteger(uvEnv) && uvEnv > 0 ? 'UV_THREADPOOL_SIZE' : 'default',
      nativeKernels: native.threads,
      onnxruntimeIntraOp: "ORT default (one per physical core); commands' --threads overrides it",
    },
    checks: [],
  };
  diagnosis.checks = judge(diagnosis);
  diagnosis.ok = diagnosis.checks.every((check) => check.status !== 'fail');
  return diagnosis;
}

/** What is needed (fail when missing) and what is optional (warn): CUDA of either kind is optional. */
export function judge(facts: Pick<Diagnosis, 'versions' | 'native' | 'onnxruntime'>): Check[] {
  const checks: Check[] = [];
  const [major = 0, minor = 0] = facts.versions.node.replace(/^v/, '').split('.').map(Number);
  checks.push(
    major > 20 || (major === 20 && minor >= 11)
      ? { name: 'node', status: 'ok', message: `Node ${facts.versions.node}` }
      : { name: 'node', status: 'fail', message: `Node ${facts.versions.node} is older than the required 20.11`, fix: 'install Node 20.11 or newer' },
  );
  checks.push(
    facts.native.backend === 'native'
      ? { name: 'native addon', status: 'ok', message: facts.native.summary }
      : {
          name: 'native addon',
          status: 'fail',
          message: `not loaded, so the slow TypeScript reference would run: ${facts.native.reason ?? 'unknown reason'}`,
          fix: nativeBuildCommand,
        },
  );
  if (facts.native.backend === 'native' && !facts.native.cuda.available) {
    checks.push({
      name: 'native CUDA kernels',
      status: 'warn',
      message: `not available: ${facts.native.cuda.reason ?? (facts.native.cuda.compiled ? 'no usable GPU' : 'addon built without CUDA')}`,
      fix: facts.native.cuda.compiled
        ? 'the addon has CUDA kernels; they need an NVIDIA GPU and a driver new enough for the CUDA runtime it was built with'
        : `rebuild where nvcc is on PATH (CUDA is detected automatically): ${nativeBuildCommand}`,
    });
  }
  const cpu = facts.onnxruntime.providers.find((p) => p.name === 'cpu');
  checks.push(
    cpu?.usable
      ? { name: 'onnxruntime CPU', status: 'ok', message: `onnxruntime-node ${facts.versions.onnxruntimeNode}: ${cpu.detail}` }
      : {
          name: 'onnxruntime CPU',
          status: 'fail',
          message: `onnxruntime-node ${facts.versions.onnxruntimeNode} cannot run a model on CPU: ${cpu?.detail ?? 'no cpu provider'}`,
          fix: 'reinstall onnxruntime-node (npm rebuild onnxruntime-node)',
        },
  );
  const cuda = facts.onnxruntime.providers.find((p) => p.name === 'cuda');
  if (cuda?.usable) {
    checks.push({ name: 'onnxruntime CUDA', status: 'ok', message: cuda.detail });
  } else {
    const librariesMissing = facts.onnxruntime.cudaLibraries.missing.length > 0;
    checks.push({
      name: 'onnxruntime CUDA',
      status: 'warn',
      message: `not usable, models run on CPU: ${cuda?.detail ?? 'this onnxruntime-node build has no CUDA provider'}`,
      fix: librariesMissing ? cudaInstallHelp(facts.onnxruntime.cudaLibraries.dir) : 'CUDA 12.x and cuDNN 9 libraries on LD_LIBRARY_PATH, and a GPU with a CUDA 12 driver',
    });
  }
  const telemetry = facts.onnxruntime.telemetry;
  checks.push(
    telemetry.enabled
      ? { name: 'onnxruntime telemetry', status: 'warn', message: `on: ${telemetry.reason}`, fix: 'unset FAIRPRUNE_ORT_TELEMETRY to turn it off' }
      : { name: 'onnxruntime telemetry', status: 'ok', message: `off: ${telemetry.reason}` },
  );
  return checks;
}
