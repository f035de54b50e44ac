#!/usr/bin/env node
// `nx run eval:boolq` / `nx run eval:lambada`: evaluate one task with the built @fairprune/eval.
// With no options it evaluates the bundled demo model on the bundled mini set, offline. The demo lives in the CLI
// package (packages/cli/demo, shipped with the `fairprune` binary); this workspace script reads it by path, which
// adds no package dependency from eval to cli.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '../dist/index.js');
if (!existsSync(dist)) {
  process.stderr.write(`@fairprune/eval is not built (${dist} missing): run npx nx run @fairprune/eval:build\n`);
  process.exit(1);
}
const { evaluate, progressPrinter, formatDuration, taskNames } = await import(dist);

const demo = resolve(here, '../../cli/demo');
const demoData = { lambada_openai: 'lambada-mini.jsonl', lambada_standard: 'lambada-mini.jsonl', boolq: 'boolq-mini.jsonl' };

const { values } = parseArgs({
  options: {
    task: { type: 'string' },
    model: { type: 'string' },
    data: { type: 'string' },
    limit: { type: 'string' },
    'batch-size': { type: 'string' },
    bos: { type: 'boolean', default: false },
    'onnx-file': { type: 'string' },
    out: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
  strict: true,
});
const task = values.task;
if (!taskNames.includes(task)) {
  process.stderr.write(`--task must be one of ${taskNames.join(', ')}\n`);
  process.exit(1);
}
const integer = (name, value) => {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`--${name} must be a positive integer, got "${value}"\n`);
    process.exit(1);
  }
  return n;
};

const model = values.model ?? join(demo, 'model');
let data;
if (values.data === 'hub') data = { hub: true };
else if (values.data !== undefined) data = { file: resolve(values.data) };
else if (values.model === undefined) data = { file: join(demo, 'data', demoData[task]) };
else data = { hub: true };
if (values.model === undefined) {
  process.stderr.write(
    `No --model given: evaluating the bundled demo model (${model}, a tiny Llama with a planted bias trained on a synthetic corpus)` +
      `${data.file ? ` on the bundled mini set ${data.file}, offline` : ''}. Its numbers only show that the pipeline works.\n`,
  );
}

const progress = progressPrinter(process.stderr);
const started = Date.now();
const results = await evaluate({
  model,
  task,
  data,
  limit: integer('limit', values.limit),
  batchSize: integer('batch-size', values['batch-size']) ?? 1,
  bos: values.bos,
  ...(values['onnx-file'] ? { onnxFile: values['onnx-file'] } : {}),
  ...(data.file ? { hub: { offline: true } } : {}),
  onProgress: (p) => progress.update(p),
}).finally(() => progress.done());

if (values.out) {
  const { writeFileSync, renameSync } = await import('node:fs');
  writeFileSync(`${values.out}.partial`, `${JSON.stringify(results, null, 1)}\n`);
  renameSync(`${values.out}.partial`, values.out);
}
if (values.json) process.stdout.write(`${JSON.stringify(results, null, 1)}\n`);
else {
  const m = results.results[task];
  const err = (v) => (typeof v === 'number' ? ` ± ${v.toFixed(4)}` : '');
  let line = `${task}: acc ${m.acc.toFixed(4)}${err(m.acc_stderr)}`;
  if (m.perplexity !== undefined) line += `, perplexity ${m.perplexity.toFixed(4)}${err(m.perplexity_stderr)}`;
  process.stdout.write(`${line}  (${results['n-samples'][task].effective} docs, ${results.config.bos ? 'BOS' : 'no BOS'}, ${formatDuration((Date.now() - started) / 1000)})\n`);
}
