// A `trustlaunch ca serve` child process, as an operator runs it; several can share one
// database (two CA processes on PostgreSQL), and the crash test kills one with SIGKILL.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

const BIN = new URL('../../../bin/trustlaunch.js', import.meta.url).pathname;

export interface CaProcess {
  readonly url: string;
  readonly child: ChildProcess;
  /** Sends `signal` and waits for the exit; resolves with the exit code or signal. */
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals | null>;
}

export async function startCaProcess(opts: { dir: string; db: string; threads?: number; nodeArgs?: readonly string[] }): Promise<CaProcess> {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), BIN, 'ca', 'serve', '--dir', opts.dir, '--db', opts.db, '--listen', '127.0.0.1:0', '--threads', String(opts.threads ?? 1), '--log-level', 'error', '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = once(child, 'exit');
  const url = await new Promise<string>((resolve, reject) => {
    let text = '';
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      text += line;
      try {
        resolve((JSON.parse(text) as { url: string }).url);
        lines.close();
      } catch {
        // the start-up document spans several lines
      }
    });
    void exited.then(() => reject(new Error(`ca serve exited before listening: ${stderr}`)));
    setTimeout(() => reject(new Error(`ca serve did not start in 60 s: ${stderr}`)), 60_000).unref();
  });
  return {
    url,
    child,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode ?? child.signalCode;
      child.kill(signal);
      const [code, sig] = (await exited) as [number | null, NodeJS.Signals | null];
      return code ?? sig;
    },
  };
}
