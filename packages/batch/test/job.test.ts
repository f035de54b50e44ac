import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { DATA, fixtureDir } from '@fairprune/fixtures';
import { JobFileError, parseJob } from '../src/job.js';
import { planBatch } from '../src/plan.js';

const tmp = mkdtempSync(join(tmpdir(), 'fairprune-batch-job-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const issueJob = (base: string) => `models:
  - path: ${relative(base, fixtureDir('llama'))}            # or: id: org/name
  - path: ${relative(base, fixtureDir('qwen2'))}
pairs: builtin:seed               # selection pairs, as --pairs
evalPairs: ${relative(base, DATA.behaviour)}    # held-out pairs, as --eval-pairs
grid:
  fraction: [0.05, 0.1]
  importance: [maw, ppm]
eval:
  tasks: [boolq]
  data: { boolq: ${relative(base, DATA.boolqMini)} }
  limit: 16
`;

describe('job file', () => {
  test('the issue\'s YAML form expands to the grid\'s product with paths relative to the job file', () => {
    const file = join(tmp, 'jobs.yaml');
    const job = parseJob(issueJob(tmp), file);
    expect(job.models.map((m) => [m.name, m.source, m.hub])).toEqual([
      ['llama', fixtureDir('llama'), false],
      ['qwen2', fixtureDir('qwen2'), false],
    ]);
    expect(job.configurations).toEqual([
      { pairs: 'builtin:seed', evalPairs: DATA.behaviour, fraction: 0.05, importance: 'maw' },
      { pairs: 'builtin:seed', evalPairs: DATA.behaviour, fraction: 0.05, importance: 'ppm' },
      { pairs: 'builtin:seed', evalPairs: DATA.behaviour, fraction: 0.1, importance: 'maw' },
      { pairs: 'builtin:seed', evalPairs: DATA.behaviour, fraction: 0.1, importance: 'ppm' },
    ]);
    expect(job.eval).toEqual({ tasks: ['boolq'], data: { boolq: DATA.boolqMini }, limit: 16 });
  });

  test('a list-valued option in a grid is a list of lists; JSON works too', () => {
    const job = parseJob(JSON.stringify({ models: [{ id: 'org/model' }], grid: { layers: [[0], [0, 1]], components: ['mlp_output'] } }), join(tmp, 'j.json'));
    expect(job.configurations).toEqual([
      { layers: [0], components: ['mlp_output'] },
      { layers: [0, 1], components: ['mlp_output'] },
    ]);
    expect(job.models[0]).toEqual({ name: 'model', source: 'org/model', hub: true });
  });

  test.each([
    ['models:\n  - path: a\ngrid:\n  fraction: [0.05, 1.5]\n', /jobs\.yaml:4: grid\.fraction/],
    ['models:\n  - path: a\ngrid:\n  importance: [maw, nope]\n', /jobs\.yaml:4: grid\.importance/],
    ['models:\n  - path: a\n    id: b/c\n', /jobs\.yaml:2: models\.0: give exactly one of path or id/],
    ['models:\n  - path: a\nfractoin: 0.1\n', /jobs\.yaml:\d: .*fractoin/],
    ['models: []\n', /jobs\.yaml:1: models/],
    ['models:\n  - path: a\neval:\n  tasks: [boolq]\n  limit: 0\n', /jobs\.yaml:5: eval\.limit/],
    ['models: [\n', /jobs\.yaml:\d+: not valid YAML/],
  ])('%j is refused naming the line and field', (text, message) => {
    expect(() => parseJob(text, join(tmp, 'jobs.yaml'))).toThrow(JobFileError);
    expect(() => parseJob(text, join(tmp, 'jobs.yaml'))).toThrow(message);
  });

  test('the plan shares one analysis per model and addresses it by the weights hash and settings', async () => {
    const file = join(tmp, 'plan.yaml');
    writeFileSync(file, issueJob(tmp));
    const plan = await planBatch(file);
    expect(plan.runs).toHaveLength(8);
    expect(plan.analyses).toHaveLength(2);
    expect(plan.analyses.map((a) => [a.model, a.importance])).toEqual([
      ['llama', ['maw', 'ppm']],
      ['qwen2', ['maw', 'ppm']],
    ]);
    for (const run of plan.runs) expect(plan.analyses.find((a) => a.id === run.analysis)!.model).toBe(run.model);
    expect(new Set(plan.runs.map((r) => r.output)).size).toBe(8);
    expect(plan.models[0]!.weightsHash).toMatch(/^[0-9a-f]{64}$/);
    expect(plan.models[0]!.weightsHash).not.toBe(plan.models[1]!.weightsHash);
    // The same model under another name shares the analysis address; other settings do not.
    const again = await planBatch(parseJob(issueJob(tmp).replace('models:\n', `models:\n  - path: ${fixtureDir('llama')}\n    name: llama-again\n`), file));
    const analysisOf = (model: string) => new Set(again.runs.filter((r) => r.model === model).map((r) => r.analysis));
    expect(again.runs).toHaveLength(12);
    expect(again.analyses).toHaveLength(2);
    expect([...analysisOf('llama-again')]).toEqual([plan.analyses[0]!.id]);
    expect([...analysisOf('llama')]).toEqual([plan.analyses[0]!.id]);
    const pooled = await planBatch(parseJob(issueJob(tmp).replace('grid:', 'estimator: pooled\ngrid:'), file));
    expect(pooled.analyses[0]!.id).not.toBe(plan.analyses[0]!.id);
  });
});
