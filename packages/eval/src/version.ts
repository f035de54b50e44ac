import { createRequire } from 'node:module';

/** This package's version (recorded in results as fairprune_version); `../package.json` from src/ and dist/ alike. */
export const version: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
