// How every `trustlaunch` command reports: human lines on a terminal, one JSON document
// with --json, errors as `error: CODE: message` on stderr, and the documented exit codes.
import { createColors } from 'picocolors';
import { isTrustlaunchError, type ErrorCode } from '../protocol/errors.js';
import { EXIT, type ExitCode } from './exit-codes.js';

// Colour only for a person at a terminal: picocolors alone also colours whenever `CI` is
// set, which would put escape codes into logs and into output that scripts match on.
const stderrColors = createColors(
  process.env['NO_COLOR'] === undefined && (process.env['FORCE_COLOR'] !== undefined || process.stderr.isTTY === true),
);

export interface OutputOptions {
  readonly json?: boolean;
}

/** Exit code for an error: untrusted for verification failures, unavailable for transport, … */
export function exitCodeFor(e: unknown): ExitCode {
  if (!isTrustlaunchError(e)) return EXIT.FAILURE;
  switch (e.kind) {
    case 'crypto':
    case 'policy':
      return e.code === 'UNAUTHENTICATED' || e.code === 'FORBIDDEN' || e.code === 'CA_NOT_PINNED' ? EXIT.FAILURE : EXIT.UNTRUSTED;
    case 'transport':
      return EXIT.UNAVAILABLE;
    case 'malformed':
      return EXIT.USAGE;
    case 'state':
      return e.code === 'NOT_FOUND' ? EXIT.NOT_FOUND : EXIT.FAILURE;
    default:
      return EXIT.FAILURE;
  }
}

/** Prints a result: `json` as one JSON document with --json, otherwise the human text. */
export function printResult(opts: OutputOptions, json: unknown, human: () => string | readonly string[]): void {
  if (opts.json === true) {
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    return;
  }
  const text = human();
  const lines = typeof text === 'string' ? [text] : text;
  if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`);
}

/** Prints an error the same way everywhere and returns its exit code. */
export function printError(opts: OutputOptions, e: unknown): ExitCode {
  const code: ErrorCode | 'ERROR' = isTrustlaunchError(e) ? e.code : 'ERROR';
  const message = e instanceof Error ? e.message : String(e);
  if (opts.json === true) {
    const detail = isTrustlaunchError(e) && e.detail !== undefined ? { detail: e.detail } : {};
    process.stdout.write(`${JSON.stringify({ error: { code, message, ...detail } }, null, 2)}\n`);
  } else {
    process.stderr.write(`${stderrColors.red('error')}: ${code}: ${message}\n`);
  }
  if (!isTrustlaunchError(e) && process.env['TRUSTLAUNCH_DEBUG'] !== undefined && e instanceof Error) {
    process.stderr.write(`${e.stack ?? ''}\n`);
  }
  return exitCodeFor(e);
}

/**
 * Wraps a command action: runs it, and on failure prints the error and sets the exit code.
 * Actions return an exit code (default OK) so "ran fine but untrusted" is expressible.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<ExitCode | undefined | void>) {
  return async (...args: A): Promise<void> => {
    const cmd = args[args.length - 1] as { optsWithGlobals?: () => OutputOptions } | undefined;
    const opts = cmd?.optsWithGlobals?.() ?? {};
    try {
      const code = await fn(...args);
      process.exitCode = typeof code === 'number' ? code : EXIT.OK;
    } catch (e) {
      process.exitCode = printError(opts, e);
    }
  };
}
