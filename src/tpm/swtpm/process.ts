// One swtpm process (`swtpm socket --tpm2`) over its own state directory, with its data
// and control channels on 127.0.0.1 TCP ports (control = data + 1, where tpm2-tools'
// swtpm TCTI looks) or on unix sockets (`<path>` and `<path>.ctrl`).
//
// Ports without collisions: two free ports are picked by binding them, released, and given
// to swtpm; if another process takes one in between, swtpm fails to bind and exits, and the
// start is retried with new ports. Readiness is swtpm's pid file (written only after both
// channels are bound, so a port answered by someone else is never mistaken for ours), then
// an answer on the control channel (the TPM state has loaded).
//
// Lifetime: swtpm runs under `setpriv --pdeathsig SIGTERM`, so the kernel stops it when
// this process dies however it dies; `stop()` asks for an orderly CMD_SHUTDOWN (state saved)
// and escalates to SIGTERM, then SIGKILL, each after a bounded wait.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TrustlaunchError } from '../../protocol/errors.js';
import { describeEndpoint, type SocketEndpoint } from '../client/socket-transport.js';
import { SwtpmControl } from './control-channel.js';

export type SwtpmTransportKind = 'tcp' | 'unix';

export interface SwtpmProcessOptions {
  /** The TPM state directory (tpm2-00.permall lives here). */
  readonly stateDir: string;
  readonly transport?: SwtpmTransportKind;
  /** Unix socket of the data channel (default `<stateDir>/swtpm.sock`; control at `<path>.ctrl`). */
  readonly socketPath?: string;
  /** Bound on start-up, retries included (default 10 s). */
  readonly startTimeoutMs?: number;
  /** swtpm `--log level` into `<stateDir>/swtpm.log` (default: no log file; errors go to the stderr capture). */
  readonly logLevel?: number;
}

export interface SwtpmExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

const START_ATTEMPTS = 8;
const STDERR_KEEP = 4096;

/** Every swtpm this process started and has not seen exit: the 'exit' hook's list. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: a signal is all there is time for (pdeathsig covers crashes).
  process.on('exit', () => {
    for (const child of running) child.kill('SIGTERM');
  });
}

/** Two adjacent free TCP ports on 127.0.0.1 (data, data + 1), by binding and releasing them. */
async function freePortPair(): Promise<number> {
  const bind = (port: number): Promise<{ port: number; close: () => Promise<void> } | undefined> =>
    new Promise((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(undefined));
      server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
        const address = server.address();
        const bound = typeof address === 'object' && address !== null ? address.port : 0;
        resolve({ port: bound, close: () => new Promise<void>((done) => server.close(() => done())) });
      });
    });
  for (let attempt = 0; attempt < 32; attempt++) {
    const first = await bind(0);
    if (first === undefined) continue;
    const second = first.port < 65535 ? await bind(first.port + 1) : undefined;
    await first.close();
    if (second !== undefined) {
      await second.close();
      return first.port;
    }
  }
  throw new TrustlaunchError('UNAVAILABLE', 'no two adjacent free TCP ports on 127.0.0.1');
}

export class SwtpmProcess {
  readonly stateDir: string;
  readonly data: SocketEndpoint;
  readonly ctrl: SocketEndpoint;
  readonly control: SwtpmControl;
  readonly pid: number;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<SwtpmExit>;
  readonly #child: ChildProcess;
  readonly #stderr: () => string;
  #exit: SwtpmExit | undefined;

  private constructor(stateDir: string, data: SocketEndpoint, ctrl: SocketEndpoint, child: ChildProcess, exited: Promise<SwtpmExit>, stderr: () => string) {
    this.stateDir = stateDir;
    this.data = data;
    this.ctrl = ctrl;
    this.control = new SwtpmControl(ctrl);
    this.#child = child;
    this.pid = child.pid ?? -1;
    this.#stderr = stderr;
    this.exited = exited.then((e) => {
      this.#exit = e;
      return e;
    });
  }

  /** Starts swtpm over `stateDir` (which swtpm_setup manufactured, or an empty one for a TPM without EKs). */
  static async start(options: SwtpmProcessOptions): Promise<SwtpmProcess> {
    const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
    let lastError: unknown;
    for (let attempt = 0; attempt < START_ATTEMPTS && Date.now() < deadline; attempt++) {
      try {
        return await SwtpmProcess.#startOnce(options, deadline);
      } catch (e) {
        lastError = e;
        // Only a lost port race is worth another try; a unix socket cannot collide.
        if (!(e instanceof StartFailure && e.portClash) || options.transport === 'unix') break;
      }
    }
    throw lastError instanceof Error ? lastError : new TrustlaunchError('UNAVAILABLE', 'swtpm did not start');
  }

  static async #startOnce(options: SwtpmProcessOptions, deadline: number): Promise<SwtpmProcess> {
    const stateDir = options.stateDir;
    const pidFile = join(stateDir, 'swtpm.pid');
    try {
      await mkdir(stateDir, { recursive: true, mode: 0o700 });
      await rm(pidFile, { force: true });
    } catch (e) {
      throw new StartFailure(`swtpm state directory ${stateDir}: ${e instanceof Error ? e.message : String(e)}`, false);
    }
    let data: SocketEndpoint;
    let ctrl: SocketEndpoint;
    let channelArgs: string[];
    if (options.transport === 'unix') {
      const path = options.socketPath ?? join(stateDir, 'swtpm.sock');
      // sun_path holds 108 bytes with its NUL; the control socket adds ".ctrl".
      if (Buffer.byteLength(path) + 5 >= 108) throw new TypeError(`unix socket path ${path} is too long (use a shorter node directory or transport 'tcp')`);
      await rm(path, { force: true }).catch(() => undefined);
      await rm(`${path}.ctrl`, { force: true }).catch(() => undefined);
      data = { kind: 'unix', path };
      ctrl = { kind: 'unix', path: `${path}.ctrl` };
      channelArgs = ['--server', `type=unixio,path=${path},mode=0600`, '--ctrl', `type=unixio,path=${path}.ctrl,mode=0600`];
    } else {
      const port = await freePortPair();
      data = { kind: 'tcp', host: '127.0.0.1', port };
      ctrl = { kind: 'tcp', host: '127.0.0.1', port: port + 1 };
      channelArgs = ['--server', `type=tcp,port=${port},bindaddr=127.0.0.1`, '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`];
    }
    const args = [
      '--pdeathsig',
      'SIGTERM',
      '--',
      'swtpm',
      'socket',
      '--tpm2',
      '--tpmstate',
      `dir=${stateDir},mode=0600`,
      ...channelArgs,
      '--flags',
      'not-need-init',
      '--pid',
      `file=${pidFile}`,
      // Without --log swtpm reports errors on stderr, which is captured below.
      ...(options.logLevel === undefined ? [] : ['--log', `file=${join(stateDir, 'swtpm.log')},level=${options.logLevel}`]),
    ];
    installExitHook();
    const child = spawn('setpriv', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      stderr = (stderr + s).slice(-STDERR_KEEP);
    });
    running.add(child);
    const exited = new Promise<SwtpmExit>((resolve) => {
      child.once('exit', (code, signal) => {
        running.delete(child);
        resolve({ code, signal });
      });
      child.once('error', () => {
        running.delete(child);
        resolve({ code: null, signal: null });
      });
    });
    const proc = new SwtpmProcess(stateDir, data, ctrl, child, exited, () => stderr);
    try {
      await proc.#waitReady(pidFile, deadline);
    } catch (e) {
      await proc.#terminate(['SIGTERM', 'SIGKILL']);
      throw e;
    }
    return proc;
  }

  /**
   * Ready = our pid in the pid file (both channels bound by this process, not by whoever
   * else holds a port) and then an answer on the control channel (swtpm answers it only
   * from its main loop, after the TPM state loaded; the pid file comes before that).
   */
  async #waitReady(pidFile: string, deadline: number): Promise<void> {
    let pidSeen = false;
    for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
      if (this.#exit !== undefined || this.#child.exitCode !== null || this.#child.signalCode !== null) {
        await this.exited;
        const text = this.#stderr();
        throw new StartFailure(`swtpm exited during start-up (${JSON.stringify(this.#exit)}): ${text.trim().slice(-500)}`, /in use|bind/i.test(text));
      }
      if (!pidSeen) pidSeen = (await readFile(pidFile, 'utf8').catch(() => '')).trim() === String(this.pid);
      if (pidSeen && (await this.control.getCapability().then(() => true, () => false))) return;
      if (Date.now() > deadline) throw new StartFailure('swtpm did not become ready in time', false);
      await sleep(delay);
    }
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  /** The tpm2-tools TCTI configuration string for this swtpm (TPM2TOOLS_TCTI). */
  get tcti(): string {
    return this.data.kind === 'tcp' ? `swtpm:host=${this.data.host},port=${this.data.port}` : `swtpm:path=${this.data.path}`;
  }

  get description(): string {
    return `swtpm ${describeEndpoint(this.data)}`;
  }

  /** Recent stderr lines of swtpm (for error messages). */
  get stderr(): string {
    return this.#stderr();
  }

  /** Sends `signal` (tests: SIGSTOP/SIGCONT to freeze the TPM, SIGKILL to make it vanish). */
  signal(signal: NodeJS.Signals): void {
    if (this.running) this.#child.kill(signal);
  }

  /** Orderly stop: CMD_SHUTDOWN (swtpm saves state and exits), then SIGTERM, then SIGKILL, each bounded. */
  async stop(): Promise<SwtpmExit> {
    if (!this.running) return this.exited;
    this.#child.kill('SIGCONT'); // a stopped process cannot answer
    await this.control.shutdown().catch(() => undefined);
    return this.#terminate([null, 'SIGTERM', 'SIGKILL']);
  }

  /** Sends each signal in turn (null: just wait) until the process exits, waiting a bounded time after each. */
  async #terminate(steps: readonly (NodeJS.Signals | null)[]): Promise<SwtpmExit> {
    for (const signal of steps) {
      if (signal !== null && this.running) this.#child.kill(signal);
      const done = await within(this.exited, signal === 'SIGKILL' ? 5000 : 2000);
      if (done !== undefined) return done;
    }
    throw new TrustlaunchError('INTERNAL', `swtpm ${this.pid} survived SIGKILL`);
  }
}

/** `promise`'s value, or undefined after `ms` (the timer does not outlive the wait). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

class StartFailure extends TrustlaunchError {
  readonly portClash: boolean;
  constructor(message: string, portClash: boolean) {
    super('UNAVAILABLE', message);
    this.portClash = portClash;
  }
}
