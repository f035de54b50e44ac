// Test-only launcher: runs the CLI from src/ (no build) as a real process, for tests that signal, kill or trace it.
import { register } from 'node:module';

register('../../../eval/test/helpers/ts-hooks.mjs', import.meta.url);
const { main } = await import('../../src/main.ts');
process.exitCode = await main(process.argv);
