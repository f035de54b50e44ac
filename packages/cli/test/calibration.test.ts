import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { DATA } from '@fairprune/fixtures';
import { DEFAULT_ABILITY_GUARD, readAbilityGuard } from '../src/calibration.js';
import { demoRoot } from '../src/demo/root.js';

const rows = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as { question: string; passage: string; label: number });

test('the bundled ability-guard documents are none of the evaluated boolq-mini documents, and the demo ships the fixtures\' files', () => {
  const guard = rows(DATA.boolqCalibration);
  const evaluated = rows(DATA.boolqMini);
  const key = (d: { question: string; passage: string }) => `${d.passage}\n${d.question}`;
  const evaluatedKeys = new Set(evaluated.map(key));
  expect(guard.length).toBe(76);
  expect(guard.filter((d) => evaluatedKeys.has(key(d)))).toEqual([]);
  // Not even a question in common (a question decides its passage in this template).
  expect(guard.filter((d) => evaluated.some((e) => e.question === d.question))).toEqual([]);
  expect(guard.some((d) => d.label === 1) && guard.some((d) => d.label === 0)).toBe(true);
  for (const [name, fixture] of [['boolq-calibration.jsonl', DATA.boolqCalibration], ['boolq-mini.jsonl', DATA.boolqMini], ['lambada-mini.jsonl', DATA.lambadaMini]] as const) {
    expect(readFileSync(join(demoRoot, 'data', name), 'utf8'), name).toBe(readFileSync(fixture, 'utf8'));
  }
});

test('guard items are prompted and answered as lm-eval\'s BoolQ: "<passage>\\nQuestion: <question>?\\nAnswer:", " no" / " yes", label = index', async () => {
  const guard = await readAbilityGuard(DEFAULT_ABILITY_GUARD.file, DEFAULT_ABILITY_GUARD.source);
  expect(guard.source).toBe('builtin:boolq-calibration');
  expect(guard.items).toEqual(
    rows(DATA.boolqCalibration).map((d) => ({ context: `${d.passage}\nQuestion: ${d.question}?\nAnswer:`, choices: [' no', ' yes'], label: d.label })),
  );
});
