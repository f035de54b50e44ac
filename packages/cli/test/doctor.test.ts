import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { describe, expect, test, vi } from 'vitest';
import { judge, type Diagnosis } from '../src/doctor/diagnose.js';
import { probeModelBytes } from '../src/doctor/probe-model.js';
import { main } from '../src/main.js';

const repoRoot = join(import.meta.dirname, '../../..');
const ortDir = join(repoRoot, 'node_modules/onnxruntime-node');
const ortVersion = (JSON.parse(readFileSync(join(ortDir, 'package.json'), 'utf8')) as { version: string }).version;
const cliVersion = (JSON.parse(readFileSync(join(import.meta.dirname, '../package.json'), 'utf8')) as { version: string }).version;
const providerDir = join(ortDir, 'bin/napi-v6', process.platform, process.arch);

async function run(args: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    return { code: await main(['node', 'fairprune', ...args]), stdout };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('fairprune doctor', () => {
  test('--json agrees with independent facts, and the exit code with the checks', async () => {
    const { code, stdout } = await run(['doctor', '--json']);
    const d = JSON.parse(stdout) as Diagnosis;
    expect(d.versions.node).toBe(process.version);
    expect(d.versions.onnxruntimeNode).toBe(ortVersion);
    expect(d.versions.fairprune).toBe(cliVersion);
    expect(d.onnxruntime.providers.map((p) => p.name)).toEqual(ort.listSupportedBackends().map((b) => b.name));
    // onnxruntime CPU works on this machine: the probe session opened and echoed its input.
    expect(d.onnxruntime.providers.find((p) => p.name === 'cpu')).toMatchObject({ usable: true });
    const missing = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'].filter((lib) => !existsSync(join(providerDir, lib)));
    expect(d.onnxruntime.cudaLibraries.dir).toBe(providerDir);
    expect(d.onnxruntime.cudaLibraries.missing).toEqual(missing);
    const cudaCheck = d.checks.find((c) => c.name === 'onnxruntime CUDA')!;
    if (missing.length > 0) {
      expect(d.onnxruntime.providers.find((p) => p.name === 'cuda')?.usable).toBe(false);
      expect(cudaCheck.status).toBe('warn');
      expect(cudaCheck.fix).toContain('ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node');
      expect(cudaCheck.fix).toContain(`Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0 nupkg into ${providerDir}.`);
    }
    // The native addon is used exactly when its binary exists where the package builds it.
    const addonBuilt = existsSync(join(repoRoot, 'packages/native-cuda/build/Release/fairprune_native.node'));
    expect(d.native.backend).toBe(addonBuilt ? 'native' : 'reference');
    if (d.native.backend === 'native') expect(existsSync(d.native.addonPath!)).toBe(true);
    expect(d.threads.availableParallelism).toBe(availableParallelism());
    const failed = d.checks.filter((c) => c.status === 'fail');
    expect(d.ok).toBe(failed.length === 0);
    expect(code).toBe(failed.length === 0 ? 0 : 1);
  });

  test('human output lists the versions and every check', async () => {
    const { stdout } = await run(['doctor']);
    expect(stdout.split('\n')[0]).toBe(`fairprune ${cliVersion} · Node ${process.version} (N-API ${process.versions.napi}) · onnxruntime-node ${ortVersion} · ${process.platform}-${process.arch}`);
    for (const name of ['node', 'native addon', 'onnxruntime CPU', 'onnxruntime CUDA']) expect(stdout).toMatch(new RegExp(`^[✓!✗] ${name}: `, 'm'));
    // Loading core turned onnxruntime's telemetry off in this process, and doctor says so.
    expect(process.env['ORT_DISABLE_TELEMETRY']).toBe('1');
    expect(stdout).toMatch(/^✓ onnxruntime telemetry: off: ORT_DISABLE_TELEMETRY=1 set before onnxruntime-node loaded/m);
  });

  test('UV_THREADPOOL_SIZE is reported when set', async () => {
    vi.stubEnv('UV_THREADPOOL_SIZE', '7');
    try {
      const d = JSON.parse((await run(['doctor', '--json'])).stdout) as Diagnosis;
      expect(d.threads).toMatchObject({ uvThreadpoolSize: 7, uvThreadpoolSizeSource: 'UV_THREADPOOL_SIZE' });
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe('what doctor counts as missing', () => {
  const healthy: Pick<Diagnosis, 'versions' | 'native' | 'onnxruntime'> = {
    versions: { fairprune: '0.1.0', node: 'v20.20.2', napi: '9', onnxruntimeNode: '1.30.0', platform: 'linux-x64' },
    native: { backend: 'native', threads: 2, cuda: { compiled: false, available: false, deviceCount: 0 }, summary: 'native CPU (2 threads)' },
    onnxruntime: {
      packageDir: '/x',
      providers: [
        { name: 'cpu', bundled: true, usable: true, detail: 'ran' },
        { name: 'cuda', bundled: false, usable: false, detail: 'libraries missing' },
      ],
      cudaLibraries: { dir: '/x/bin', required: ['a.so'], missing: ['a.so'] },
      telemetry: { enabled: false, reason: 'ORT_DISABLE_TELEMETRY=1' },
    },
  };
  const statuses = (facts: typeof healthy) => Object.fromEntries(judge(facts).map((c) => [c.name, c.status]));

  test('CUDA absent (either kind) is a warning, not a failure', () => {
    expect(statuses(healthy)).toEqual({
      node: 'ok',
      'native addon': 'ok',
      'native CUDA kernels': 'warn',
      'onnxruntime CPU': 'ok',
      'onnxruntime CUDA': 'warn',
      'onnxruntime telemetry': 'ok',
    });
  });

  test('telemetry turned back on (FAIRPRUNE_ORT_TELEMETRY=1) is a warning with the fix', () => {
    const on = judge({ ...healthy, onnxruntime: { ...healthy.onnxruntime, telemetry: { enabled: true, reason: 'opted in' } } });
    expect(on.find((c) => c.name === 'onnxruntime telemetry')).toMatchObject({ status: 'warn', fix: 'unset FAIRPRUNE_ORT_TELEMETRY to turn it off' });
  });

  test('a missing native addon, an unusable ORT CPU or an old Node fail, with the fix', () => {
    const reference = judge({ ...healthy, native: { ...healthy.native, backend: 'reference', reason: 'cannot find fairprune_native.node' } });
    expect(reference.find((c) => c.name === 'native addon')).toMatchObject({ status: 'fail', fix: 'npx nx run @fairprune/native-cuda:build-native' });
    const noCpu = judge({ ...healthy, onnxruntime: { ...healthy.onnxruntime, providers: [{ name: 'cpu', bundled: true, usable: false, detail: 'load failed' }] } });
    expect(noCpu.find((c) => c.name === 'onnxruntime CPU')?.status).toBe('fail');
    expect(statuses({ ...healthy, versions: { ...healthy.versions, node: 'v18.19.0' } }).node).toBe('fail');
  });

  test('the probe model is a valid ONNX model: input_ids → Identity → logits, opset 17', () => {
    const model = fromBinary(ModelProtoSchema, probeModelBytes());
    expect(model.irVersion).toBe(8n);
    expect(model.opsetImport.map((o) => [o.domain, o.version])).toEqual([['', 17n]]);
    expect(model.graph?.node.map((n) => [n.opType, n.input, n.output])).toEqual([['Identity', ['input_ids'], ['logits']]]);
    expect(model.graph?.input.map((i) => i.name)).toEqual(['input_ids']);
    const inputType = model.graph?.input[0]?.type?.value;
    expect(inputType?.case === 'tensorType' && inputType.value.elemType).toBe(7);
  });
});
