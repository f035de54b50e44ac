/** The exit-status contract of the CLI, re-exported by main.ts; commands import it from here (main imports them). */

/**
 * Exit statuses, as argparse/click tools and shells use them: 2 for a usage error (unknown command or option, missing
 * or invalid argument, `fairprune` alone), 1 for a failure, 128 + signal number when interrupted.
 */
export const ExitCode = { ok: 0, failure: 1, usage: 2, sigint: 130, sigterm: 143 } as const;

/**
 * An error that decides the exit status. A command throws one (or any error with a numeric `exitCode`, e.g. an
 * interruption carrying 130 or 143) and `main` prints its message and returns that status.
 */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** A usage problem found after parsing (flags that only clash once values are known): exit status 2. */
export class UsageError extends CliError {
  override name = 'UsageError';
  constructor(message: string) {
    super(message, ExitCode.usage);
  }
}
