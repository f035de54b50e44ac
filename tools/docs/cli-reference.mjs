// Writes docs/cli.md from the built CLI's help text. Run `npm run docs:cli` after changing a command.
import { writeFileSync } from 'node:fs';
import { cliReferenceMarkdown } from '@fairprune/cli';

const file = new URL('../../docs/cli.md', import.meta.url);
writeFileSync(file, cliReferenceMarkdown());
console.log(`wrote ${file.pathname}`);
