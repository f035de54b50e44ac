import { CommanderError } from 'commander';
import { ExitCode } from './exit-codes.js';
import { buildProgram } from './program.js';

export { ExitCode, CliError, UsageError } from './exit-codes.js';

/** commander's error codes that mean "the command line is wrong". */
const usageCodes = new Set([
  'commander.unknownCommand',
  'commander.unknownOption',
  'commander.missingArgument',
  'commander.optionMissingArgument',
  'commander.missingMandatoryOptionValue',
  'commander.invalidArgument',
  'commander.excessArguments',
  'commander.conflictingOption',
  // help shown because no command was given (help on request is commander.helpDisplayed, status 0)
  'commander.help',
]);

/** The exit status for an error: 2 for commander's usage errors, an error's own `exitCode` (1–255) if it has one, else 1. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof CommanderError) return usageCodes.has(error.code) ? ExitCode.usage : error.exitCode;
  const code = (error as { exitCode?: unknown } | null)?.exitCode;
  return typeof code === 'number' && Number.isInteger(code) && code > 0 && code < 256 ? code : ExitCode.failure;
}

/** Exit codes of an interrupted run (128 + signal number, as shells report them). */
const interruptedExitCodes = { SIGINT: ExitCode.sigint, SIGTERM: ExitCode.sigterm } as const;

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
    return ExitCode.ok;
  } catch (error) {
    // commander has already printed its own message (and the help after it).
    if (error instanceof CommanderError) return exitCodeOf(error);
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`fairprune: ${message}\n`);
    if (process.env.FAIRPRUNE_DEBUG && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return exitCodeOf(error);
  } finally {
    for (const [signal, handler] of handlers) process.removeListener(signal, handler);
  }
}
