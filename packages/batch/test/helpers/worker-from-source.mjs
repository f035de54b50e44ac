// Test-only launcher: runs this package's worker script from src/ (no build) as a real process, so tests can kill it.
import { register } from 'node:module';

register('../../../eval/test/helpers/ts-hooks.mjs', import.meta.url);
await import('../../src/worker-main.ts');
