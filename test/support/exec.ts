// A system tool run by a test or a benchmark: its exit status and output, never a throw
// (the caller decides what a failure means: an ssh before sshd is up is retried).
import { execFile } from 'node:child_process';

export interface ExecResult {
  /** 0 on success, the exit code, or -1 (killed, timed out, not found). */
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface ExecOptions {
  /** Killed after this long (default 60 s): status -1. */
  readonly timeoutMs?: number;
  /** The whole environment (default: this process's). */
  readonly env?: NodeJS.ProcessEnv;
}

/** Runs `file` with `args`; the third argument is the options or just the timeout in ms. */
export function exec(file: string, args: readonly string[], options: ExecOptions | number = {}): Promise<ExecResult> {
  const o: ExecOptions = typeof options === 'number' ? { timeoutMs: options } : options;
  return new Promise((resolve) => {
    execFile(file, args, { timeout: o.timeoutMs ?? 60_000, encoding: 'utf8', maxBuffer: 16 << 20, ...(o.env === undefined ? {} : { env: o.env }) }, (error, stdout, stderr) => {
      resolve({ status: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}
