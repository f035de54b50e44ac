import { CommanderError } from 'commander';
import { buildProgram } from './program.js';

/** Runs the CLI and returns the process exit code; errors are printed as one clear line, not a stack trace. */
export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`fairprune: ${message}\n`);
    if (process.env.FAIRPRUNE_DEBUG && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return 1;
  }
}
