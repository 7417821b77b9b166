// `trustlaunch up` as a separate process, the way a person runs it: started with `--json`,
// resolved once its JSON document says everything is up; and the check that a stopped `up`
// left nothing behind (no process under its directory, its ports free).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { portIsFree } from '../../node/vm/support.js';
import { processesUnder } from './cloud.js';

export const BIN = new URL('../../../bin/trustlaunch.js', import.meta.url).pathname;

/** The parts of `up --json` the tests read. */
export interface UpInfo {
  dir: string;
  ca: { url: string; fingerprint: string; identityFile: string };
  manager: { url: string; caCertFile: string };
  nodes: Array<{ id: string; url: string; port: number; dir: string; device: string }>;
  user: { name: string; token: string; tokenFile: string };
  env: Record<string, string>;
  commands: string[];
}

export interface UpProcess {
  readonly child: ChildProcess;
  readonly info: UpInfo;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
}

/** Starts `trustlaunch up --json …args` and resolves with its JSON document once everything is up (at most 90 s). */
export function startUp(args: readonly string[]): Promise<UpProcess> {
  const child = spawn(process.execPath, [BIN, 'up', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stdout = '';
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`up did not come up in 90 s:\n${stderr}`))), 90_000);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      try {
        const info = JSON.parse(stdout) as UpInfo;
        clearTimeout(timer);
        resolve({ child, info, exited });
      } catch {
        // not complete yet
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`up exited (${code}) before it was up:\n${stderr}`));
    });
  });
}

export const portOf = (url: string): number => Number(new URL(url).port);

export async function assertNothingLeft(dir: string, ports: readonly number[]): Promise<void> {
  assert.deepEqual(await processesUnder(dir), [], 'processes left behind');
  for (const port of ports) assert.equal(await portIsFree(port), true, `port ${port} still taken`);
}
