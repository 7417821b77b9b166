// A system tool run by a test or a benchmark: its exit status and output, never a throw
// (the caller decides what a failure means: an ssh before sshd is up is retried).
import { execFile } from 'node:child_process';

export interface ExecResult {
  /** 0 on success, the exit code, or -1 (killed, timed out, not found). */
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function exec(file: string, args: readonly string[], timeoutMs = 30_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      resolve({ status: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}
