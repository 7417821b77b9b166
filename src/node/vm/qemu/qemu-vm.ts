// One QEMU VM: the process, its console, its channel. QEMU runs in the VM's private
// directory with a clean environment carrying the VM's marker (so `sweep` and the reaper
// find it), under `setpriv --pdeathsig KILL` when util-linux has it (the node dying — even
// by SIGKILL — takes QEMU with it); its stdio is the serial console. `spawn` resolves once
// QEMU holds the forwarded SSH port (the machine is built, the guest starts) and the
// hypervisor is connected to the VM channel's unix socket, bridged to the VM's channel
// endpoint. Stopping is SIGTERM, a grace period, then SIGKILL to whatever of the VM is left.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { TrustlaunchError } from '../../../protocol/errors.js';
import type { VmChannelEndpoint } from '../../hypervisor/index.js';
import { bridgeChannel, type ChannelBridge, type ChannelStats } from '../channel-bridge.js';
import { ConsoleLog } from '../console-log.js';
import { MARKER_VARIABLE, holdsListener, procStat, sweep, type SweepResult, type VmIdentity } from '../proc.js';
import type { ProcessRef } from '../runtime-dir.js';
import { GuestTimeline, type GuestEvent, type Timeline } from '../timeline.js';
import { CHANNEL_SOCKET } from './qemu-args.js';

export interface QemuExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface QemuSpawn {
  readonly qemu: string;
  readonly args: readonly string[];
  readonly marker: string;
  /** The VM's private directory (QEMU's working directory). */
  readonly dir: string;
  readonly sshPort: number;
  readonly channel: VmChannelEndpoint;
  readonly consoleBytes: number;
  /** util-linux setpriv, for the parent-death signal (undefined: QEMU is spawned directly). */
  readonly setpriv: string | undefined;
  /** How long QEMU may take to build the machine and listen on the forwarded port. */
  readonly startTimeoutMs: number;
}

const PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
/** A unix socket path holds at most 107 bytes (sun_path). */
const MAX_SOCKET_PATH = 107;
const STDERR_BYTES = 16 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class QemuVm {
  readonly marker: string;
  readonly console: ConsoleLog;
  readonly qemu: ProcessRef;
  readonly identity: VmIdentity;
  /** QEMU's argument vector, as /proc/PID/cmdline shows it once setpriv exec'd QEMU. */
  readonly argv: readonly string[];
  readonly exited: Promise<QemuExit>;
  readonly #child: ChildProcess;
  readonly #timeline = new GuestTimeline();
  #stderr = '';
  #exit: QemuExit | undefined;
  #socket: Socket | undefined;
  #bridge: ChannelBridge | undefined;
  #stopping: Promise<SweepResult> | undefined;

  private constructor(child: ChildProcess, qemu: ProcessRef, argv: readonly string[], opts: QemuSpawn) {
    this.#child = child;
    this.qemu = qemu;
    this.argv = argv;
    this.marker = opts.marker;
    this.identity = { marker: opts.marker, root: qemu, dir: opts.dir };
    this.console = new ConsoleLog(opts.consoleBytes);
    child.stdout?.on('data', (d: Buffer) => this.console.append(d));
    child.stderr?.on('data', (d: Buffer) => {
      if (this.#stderr.length < STDERR_BYTES) this.#stderr += d.toString('utf8');
    });
    // Console input (dom0 typing) may fail once QEMU is gone; that is QEMU's exit to report.
    child.stdin?.on('error', () => undefined);
    this.exited = new Promise<QemuExit>((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        this.#timeline.ended(String(code ?? signal));
        resolve(this.#exit);
      });
    });
  }

  /**
   * Spawns QEMU; resolves once it listens on the forwarded port and the channel is bridged.
   * `PORT_TAKEN` (a TrustlaunchError CONFLICT) when QEMU could not bind the port (another
   * process took it after the probe: try another); VM_BOOT_FAILED for anything else.
   */
  static async spawn(opts: QemuSpawn): Promise<QemuVm> {
    const argv = opts.setpriv === undefined ? [opts.qemu, ...opts.args] : [opts.setpriv, '--pdeathsig', 'KILL', '--', opts.qemu, ...opts.args];
    const child = spawn(argv[0] as string, argv.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true, // its own session: no signal from our terminal
      cwd: opts.dir,
      env: { PATH, LANG: 'C', [MARKER_VARIABLE]: opts.marker },
    });
    const failed = new Promise<Error>((resolve) => child.once('error', resolve));
    const pid = child.pid;
    const stat = pid === undefined ? undefined : procStat(pid);
    if (pid === undefined || stat === undefined) {
      const e = await Promise.race([failed, sleep(1000).then(() => new Error('no pid'))]);
      child.kill('SIGKILL');
      throw new TrustlaunchError('VM_BOOT_FAILED', `QEMU did not start: ${e.message}`, { cause: e });
    }
    const vm = new QemuVm(child, { pid, startTime: stat.startTime }, [opts.qemu, ...opts.args], opts);
    try {
      await vm.#waitForListener(opts.sshPort, opts.startTimeoutMs);
      await vm.#connectChannel(opts.dir, opts.channel, opts.startTimeoutMs);
    } catch (e) {
      await vm.stop(0);
      throw e;
    }
    return vm;
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  /** QEMU's own messages (errors), bounded. */
  get stderr(): string {
    return this.#stderr;
  }

  timeline(): Timeline {
    return this.#timeline.snapshot();
  }

  channelStats(): ChannelStats | undefined {
    return this.#bridge?.stats();
  }

  waitFor(event: GuestEvent, timeoutMs: number): Promise<number> {
    return this.#timeline.waitFor(event, timeoutMs);
  }

  /** Bytes typed on the serial console (dom0's side of the console; the guest's init never reads it). */
  consoleInput(bytes: string | Uint8Array): void {
    if (this.running) this.#child.stdin?.write(bytes);
  }

  /** SIGTERM, then after `graceMs` SIGKILL to whatever of the VM still runs; idempotent. */
  stop(graceMs: number, killTimeoutMs = 5000): Promise<SweepResult> {
    this.#stopping ??= (async () => {
      if (this.running) {
        try {
          process.kill(this.qemu.pid, 'SIGTERM');
        } catch {
          // exited meanwhile
        }
        await Promise.race([this.exited, sleep(graceMs)]);
      }
      const result = await sweep(this.identity, killTimeoutMs);
      await Promise.race([this.exited, sleep(killTimeoutMs)]);
      this.#bridge?.close();
      this.#socket?.destroy();
      this.#child.stdin?.destroy();
      this.#child.stdout?.destroy();
      this.#child.stderr?.destroy();
      return result;
    })();
    return this.#stopping;
  }

  /** Until QEMU itself listens on 127.0.0.1:port (its `hostfwd`), or it exited. */
  async #waitForListener(port: number, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.running && performance.now() < deadline) {
      if (holdsListener(this.qemu.pid, port)) return;
      await Promise.race([this.exited, sleep(10)]);
    }
    const why = this.#stderr.trim();
    if (this.running) throw new TrustlaunchError('VM_BOOT_FAILED', `QEMU did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
    if (/host forwarding|Could not set up/i.test(why)) throw new TrustlaunchError('CONFLICT', `port ${port} was taken before QEMU bound it: ${why}`, { detail: { portTaken: port } });
    throw new TrustlaunchError('VM_BOOT_FAILED', `QEMU exited (${String(this.#exit?.code ?? this.#exit?.signal)}): ${why === '' ? 'no message' : why.slice(0, 1000)}`);
  }

  /** The hypervisor's end of the VM channel: QEMU's chardev socket, bridged to the VM's endpoint. */
  async #connectChannel(dir: string, endpoint: VmChannelEndpoint, timeoutMs: number): Promise<void> {
    const path = join(dir, CHANNEL_SOCKET);
    const deadline = performance.now() + timeoutMs;
    let last: unknown;
    while (this.running && performance.now() < deadline) {
      if (existsSync(path)) {
        try {
          this.#socket = await connectUnix(dir, CHANNEL_SOCKET);
          this.#bridge = bridgeChannel(this.#socket, endpoint, (m) => this.#timeline.observe(m));
          return;
        } catch (e) {
          last = e;
        }
      }
      await sleep(10);
    }
    throw new TrustlaunchError('VM_BOOT_FAILED', `cannot connect to the VM channel of QEMU ${this.qemu.pid}`, { cause: last });
  }
}

/**
 * Connects to the unix socket `name` in `dir`. A path longer than sun_path allows is
 * reached through the directory's file descriptor (/proc/self/fd/N/name).
 */
async function connectUnix(dir: string, name: string): Promise<Socket> {
  const direct = join(dir, name);
  let fd: number | undefined;
  let path = direct;
  if (Buffer.byteLength(direct) > MAX_SOCKET_PATH) {
    fd = openSync(dir, 'r');
    path = `/proc/self/fd/${fd}/${name}`;
  }
  try {
    return await new Promise<Socket>((resolve, reject) => {
      const s = createConnection(path);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
