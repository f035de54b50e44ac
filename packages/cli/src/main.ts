import { CommanderError } from 'commander';
import { buildProgram } from './program.js';

/** Exit codes of an interrupted run (128 + signal number, as shells report them). */
const interruptedExitCodes = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * Runs the CLI and returns the process exit code; errors are printed as one clear line, not a stack trace. SIGINT and
 * SIGTERM exit 130/143; an output being written removes its temp folder and lock first (core's output protocol
 * handles the signal before this).
 */
export async function main(argv: string[]): Promise<number> {
  const handlers = Object.entries(interruptedExitCodes).map(([signal, code]) => {
    const handler = () => {
      process.stderr.write(`fairprune: interrupted by ${signal}\n`);
      process.exit(code);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`fairprune: ${message}\n`);
    if (process.env.FAIRPRUNE_DEBUG && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return 1;
  } finally {
    for (const [signal, handler] of handlers) process.removeListener(signal, handler);
  }
}
