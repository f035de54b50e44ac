import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Writes the HTML beside its final name and renames it, so a reader never sees half a report; returns the absolute path. */
export function writeReport(file: string, html: string): string {
  const out = resolve(file);
  mkdirSync(dirname(out), { recursive: true });
  const partial = `${out}.partial-${process.pid}`;
  writeFileSync(partial, html);
  renameSync(partial, out);
  return out;
}
