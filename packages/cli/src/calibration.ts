/** What `--method behaviour` guards abilities with: calibration texts (NLL) and BoolQ-format items (answer margin). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AbilityGuard } from '@fairprune/core';
import { loadDocs, tasks } from '@fairprune/eval';
import { demoRoot } from './demo/root.js';

/** The default calibration texts: the bundled mini-LAMBADA documents. */
export const DEFAULT_CALIBRATION = { file: join(demoRoot, 'data', 'lambada-mini.jsonl'), source: 'builtin:lambada-mini' } as const;

/**
 * The default items of the answer-margin guard: BoolQ-format documents made by fixtures/scripts/make-boolq-calibration.mjs,
 * none of them in the bundled boolq-mini.jsonl that the demo and the README evaluate.
 */
export const DEFAULT_ABILITY_GUARD = { file: join(demoRoot, 'data', 'boolq-calibration.jsonl'), source: 'builtin:boolq-calibration' } as const;

/** Calibration texts of a file: the `text` field of each JSON line of a .jsonl, else one text per non-empty line. */
export function readCalibration(file: string): string[] {
  const lines = readFileSync(file, 'utf8').split('\n').filter((line) => line.trim() !== '');
  if (!file.endsWith('.jsonl')) return lines;
  return lines.map((line, i) => {
    const record = JSON.parse(line) as { text?: unknown };
    if (typeof record.text !== 'string') throw new Error(`--calibration ${file}: line ${i + 1} has no "text" string`);
    return record.text;
  });
}

/**
 * The answer-margin guard's items from a BoolQ-format file (.jsonl or .parquet with "passage", "question", "label"),
 * prompted and answered exactly as `fairprune eval --task boolq` scores them.
 */
export async function readAbilityGuard(file: string, source = file): Promise<AbilityGuard> {
  const boolq = tasks.boolq;
  const { docs } = await loadDocs(boolq, { file });
  const items = docs.map((doc) => {
    const requests = boolq.requests(doc);
    // BoolQ's target is the index of the right choice.
    return { context: requests[0]!.context, choices: requests.map((r) => r.continuation), label: Number(boolq.target(doc)) };
  });
  return { items, source };
}
