import { expect, test } from 'vitest';
import { buildProgram } from '../src/program.js';
import { version } from '../src/version.js';

test('the program reports the package version', () => {
  const program = buildProgram();
  expect(program.name()).toBe('fairprune');
  expect(program.version()).toBe(version);
  expect(version).toMatch(/^\d+\.\d+\.\d+/);
});
