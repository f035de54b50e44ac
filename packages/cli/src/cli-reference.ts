import type { Command } from 'commander';
import { buildProgram } from './program.js';

/** Help is rendered at a fixed width so the reference does not depend on the terminal it was generated in. */
const helpWidth = 100;

function helpOf(command: Command): string {
  command.configureHelp({ helpWidth });
  return command.helpInformation().trimEnd();
}

/** The CLI reference in Markdown, made from commander's own help text (docs/cli.md is this, checked by a test). */
export function cliReferenceMarkdown(): string {
  const program = buildProgram();
  const sections = [
    '# fairprune CLI reference',
    '',
    'Generated from the commands\' own `--help` by `npm run docs:cli`; a test fails when this file and the CLI disagree.',
    '',
    '```text',
    helpOf(program),
    '```',
  ];
  // Subcommands (batch plan|run|status) get their own sections after their parent's.
  const add = (command: Command, path: string) => {
    sections.push('', `## ${path}`, '', '```text', helpOf(command), '```');
    for (const sub of command.commands) if (sub.name() !== 'help') add(sub, `${path} ${sub.name()}`);
  };
  for (const command of program.commands) add(command, `fairprune ${command.name()}`);
  return `${sections.join('\n')}\n`;
}
