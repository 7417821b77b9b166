// Runs a process-guest image the way the backend does (`node --input-type=module -`, the
// bytes on stdin, fd 3 a socketpair) but with the test playing the hypervisor on fd 3:
// raw lines out, parsed messages in. For testing the guest program itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { LineSplitter } from '../../../src/node/vm/process/index.js';
import { defaultGuestImage } from '../../../src/node/vm/process/index.js';
import { tempDir } from '../../support/system.js';

export interface GuestHarness {
  readonly child: ChildProcess;
  readonly marker: string;
  /** The guest's TMPDIR. */
  readonly tmp: string;
  /** Messages the guest sent on fd 3, parsed. */
  readonly messages: Record<string, unknown>[];
  console(): string;
  /** Writes raw bytes to fd 3. */
  write(bytes: string | Buffer): void;
  send(message: Record<string, unknown>): void;
  /** The first message of `type` (waits up to `timeoutMs`). */
  waitFor(type: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  waitForConsole(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Closes the hypervisor's end of fd 3. */
  closeChannel(): void;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kills what is left and removes the temp dir. */
  dispose(): Promise<void>;
}

export function startGuest(options: { image?: Uint8Array; marker?: string | null } = {}): GuestHarness {
  const dir = tempDir('tl-guest-test-');
  const marker = options.marker === undefined ? randomBytes(16).toString('hex') : options.marker;
  const env: Record<string, string> = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', TMPDIR: dir.path };
  if (marker !== null) env['TRUSTLAUNCH_VM_MARKER'] = marker;
  const child = spawn(process.execPath, ['--input-type=module', '-'], { stdio: ['pipe', 'pipe', 'pipe', 'pipe'], detached: true, cwd: dir.path, env });
  child.stdin?.on('error', () => undefined);
  child.stdin?.end(options.image ?? defaultGuestImage());
  let consoleText = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (consoleText += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (consoleText += d));
  const channel = child.stdio[3] as Duplex;
  channel.on('error', () => undefined);
  const messages: Record<string, unknown>[] = [];
  const splitter = new LineSplitter();
  channel.on('data', (chunk: Buffer) =>
    splitter.push(
      chunk,
      (line) => messages.push(JSON.parse(line.toString('utf8')) as Record<string, unknown>),
      () => messages.push({ type: 'harness:overlong' }),
    ),
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const until = async (ok: () => boolean, what: string, timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`guest: no ${what} within ${timeoutMs} ms; console:\n${consoleText}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return {
    child,
    marker: marker ?? '',
    tmp: dir.path,
    messages,
    console: () => consoleText,
    write: (bytes) => channel.write(bytes),
    send: (m) => channel.write(`${JSON.stringify(m)}\n`),
    waitFor: async (type, timeoutMs = 10_000) => {
      await until(() => messages.some((m) => m['type'] === type), `${type} message`, timeoutMs);
      return messages.find((m) => m['type'] === type) as Record<string, unknown>;
    },
    waitForConsole: (pattern, timeoutMs = 10_000) => until(() => pattern.test(consoleText), String(pattern), timeoutMs),
    closeChannel: () => channel.end(),
    exited,
    dispose: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      channel.destroy();
      dir.dispose();
    },
  };
}

/** Entries left in the guest's TMPDIR (its private temp dir is removed when it stops). */
export function leftovers(tmp: string): string[] {
  return readdirSync(tmp).map((n) => join(tmp, n));
}
