// Worker entry for tests: installs the TypeScript hooks, then runs the real worker module from src/.
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);
await import('../../src/scorer-worker.ts');
