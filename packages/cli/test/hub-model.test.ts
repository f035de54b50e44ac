import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtureDir, readRefs, serveHub, type HubServer } from '@fairprune/fixtures';
import { runCli } from './run-cli.js';

/** Every model command takes a hub id: downloaded from a loopback hub into HF_HUB_CACHE, then used offline from it. */
const LLAMA = fixtureDir('llama');
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors', 'onnx/model.onnx', 'onnx/model_kv.onnx'];
const tmp = mkdtempSync(join(tmpdir(), 'fairprune-cli-hub-'));
const cache = join(tmp, 'hf-cache');
const snapshot = join(cache, 'models--org--tiny-llama', 'snapshots', COMMIT);
let server: HubServer;

beforeAll(async () => {
  server = await serveHub([{ type: 'model', repo: 'org/tiny-llama', commit: COMMIT, files: Object.fromEntries(FILES.map((f) => [f, join(LLAMA, f)])) }]);
  vi.stubEnv('HF_HUB_CACHE', cache);
  vi.stubEnv('HF_ENDPOINT', server.url);
  vi.stubEnv('HF_HUB_OFFLINE', '');
});
afterAll(async () => {
  vi.unstubAllEnvs();
  await server.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('inspect org/name downloads the files fairprune needs into the Hugging Face cache, progress on stderr', async () => {
  const { code, stdout, stderr } = await runCli('inspect', 'org/tiny-llama', '--json');
  expect(code).toBe(0);
  expect((JSON.parse(stdout) as { dir: string }).dir).toBe(snapshot);
  expect(stderr).toContain('fairprune: downloading org/tiny-llama onnx/model.onnx (1.5 MB)');
  expect(readdirSync(snapshot).sort()).toEqual(['config.json', 'generation_config.json', 'onnx', 'tokenizer.json', 'tokenizer_config.json']);
  expect(readdirSync(join(snapshot, 'onnx'))).toEqual(['model.onnx']);
});

test('generate org/name@commit --onnx-file, offline from the cache: the HF greedy ids', async () => {
  const prompt = readRefs('llama').prompts[1]!;
  // The KV-cache graph is fetched on first use (online), then the run offline must find everything in the cache.
  expect((await runCli('inspect', 'org/tiny-llama', '--onnx-file', 'onnx/model_kv.onnx')).code).toBe(0);
  const seen = server.requests.length;
  const { code, stdout, stderr } = await runCli(
    'generate', `org/tiny-llama@${COMMIT}`, '--offline', '--onnx-file', 'onnx/model_kv.onnx', '--prompt', prompt.text, '--num-beams', '1', '--max-new-tokens', '24', '--json',
  );
  expect(stderr).toBe('');
  expect(code).toBe(0);
  expect((JSON.parse(stdout) as { ids: number[] }[])[0]!.ids).toEqual(prompt.greedy_ids);
  expect(server.requests.length).toBe(seen);
});

test('analyze with HF_HUB_OFFLINE=1 reads the cached model: the optiPfair reference metric', async () => {
  vi.stubEnv('HF_HUB_OFFLINE', '1');
  const { code, stdout } = await runCli('analyze', 'org/tiny-llama', '--json', '--threads', '1');
  vi.stubEnv('HF_HUB_OFFLINE', '');
  expect(code).toBe(0);
  const reference = readRefs('llama').optipfair_bias_metrics_pair0.overall_mean_difference;
  const report = JSON.parse(stdout) as { model: { path: string }; metric: { overall: { mean_difference: number } } };
  expect(report.model.path).toBe(snapshot);
  expect(Math.abs(report.metric.overall.mean_difference / reference - 1)).toBeLessThan(1e-4);
});

test('prune org/name fetches the safetensors too (the pruned folder gets pruned safetensors)', async () => {
  const out = join(tmp, 'pruned');
  const { code, stderr } = await runCli('prune', 'org/tiny-llama', '--out', out, '--fraction', '0.1', '--json', '--threads', '1');
  expect(stderr).toContain('fairprune: downloading org/tiny-llama model.safetensors');
  expect(code).toBe(0);
  expect(existsSync(join(snapshot, 'model.safetensors'))).toBe(true);
  expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
});

test('offline, a model not in the cache: exit 1, the message names the id and the cache folder', async () => {
  for (const args of [['eval', 'org/absent', '--task', 'boolq', '--offline'], ['inspect', 'org/absent', '--offline']]) {
    const { code, stderr } = await runCli(...args);
    expect(code).toBe(1);
    expect(stderr).toMatch(
      new RegExp(`^fairprune: model org/absent is not in the Hugging Face cache ${join(cache, 'models--org--absent').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(offline: --offline or HF_HUB_OFFLINE=1\\)\\. Run once online to download it, or: huggingface-cli download org/absent`),
    );
  }
});
