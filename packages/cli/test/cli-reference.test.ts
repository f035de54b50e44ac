import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { cliReferenceMarkdown } from '../src/cli-reference.js';
import { buildProgram } from '../src/program.js';

test('docs/cli.md is the CLI\'s current help (regenerate with npm run docs:cli)', () => {
  const committed = readFileSync(new URL('../../../docs/cli.md', import.meta.url), 'utf8');
  expect(committed).toBe(cliReferenceMarkdown());
});

test('the reference documents every command', () => {
  const reference = cliReferenceMarkdown();
  for (const command of buildProgram().commands) expect(reference).toContain(`## fairprune ${command.name()}\n`);
});
