// What the process backend's guest and the QEMU backend's QEMU have in common: one child
// process in its own session with a clean environment carrying the VM's marker (so `sweep`
// and the reaper find it), its output as the VM's console, its exit, the VM channel
// bridged over a byte stream (through the certificate gate) and the guest's timeline.
// Stopping is SIGTERM, a grace period, then SIGKILL to whatever of the VM is left.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { VmChannelEndpoint } from '../hypervisor/index.js';
import { gateReadyOnCertificate, type GatedEndpoint } from './certificate-gate.js';
import { bridgeChannel, type ChannelBridge, type ChannelStats } from './channel-bridge.js';
import { ConsoleLog } from './console-log.js';
import { MARKER_VARIABLE, procStat, sweep, type SweepResult, type VmIdentity } from './proc.js';
import type { ProcessRef } from './runtime-dir.js';
import { GuestTimeline, type GuestEvent, type Timeline } from './timeline.js';

export interface VmExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface VmProcessSpawn {
  /** The program and its arguments. */
  readonly argv: readonly [string, ...string[]];
  readonly marker: string;
  /** The VM's private directory. */
  readonly dir: string;
  readonly cwd: string;
  /** Added to the clean environment (PATH, LANG, the marker). */
  readonly env?: Readonly<Record<string, string>>;
  readonly stdio: SpawnOptions['stdio'];
  readonly consoleBytes: number;
  /** Names the program in errors ("QEMU", "the guest process"). */
  readonly what: string;
}

const PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Spawns `argv` as a VM's process; VM_BOOT_FAILED if it does not start. */
export async function spawnVmProcess(o: VmProcessSpawn): Promise<{ child: ChildProcess; ref: ProcessRef }> {
  const [file, ...args] = o.argv;
  const child = spawn(file, args, {
    stdio: o.stdio,
    detached: true, // its own session and process group: no signal from our terminal
    cwd: o.cwd,
    env: { PATH, LANG: 'C', ...o.env, [MARKER_VARIABLE]: o.marker },
  });
  const failed = new Promise<Error>((resolve) => child.once('error', resolve));
  const pid = child.pid;
  const stat = pid === undefined ? undefined : procStat(pid);
  if (pid === undefined || stat === undefined) {
    const e = await Promise.race([failed, sleep(1000).then(() => new Error('no pid'))]);
    child.kill('SIGKILL');
    throw new TrustlaunchError('VM_BOOT_FAILED', `${o.what} did not start: ${e.message}`, { cause: e });
  }
  return { child, ref: { pid, startTime: stat.startTime } };
}

export interface VmProcessOptions {
  readonly marker: string;
  readonly dir: string;
  readonly consoleBytes: number;
  /** How long the guest's `ready` waits for its certificate (certificate-gate.ts; 0: not at all). */
  readonly certificateWaitMs: number;
}

export class VmProcess {
  readonly marker: string;
  readonly console: ConsoleLog;
  /** The process the backend spawned (the guest, or QEMU). */
  readonly process: ProcessRef;
  /** How to find every process of this VM. */
  readonly identity: VmIdentity;
  readonly exited: Promise<VmExit>;
  protected readonly child: ChildProcess;
  protected readonly timelineEvents = new GuestTimeline();
  #exit: VmExit | undefined;
  #bridge: ChannelBridge | undefined;
  #gate: GatedEndpoint | undefined;
  #stream: Duplex | undefined;
  #stopping: Promise<SweepResult> | undefined;
  readonly #certificateWaitMs: number;

  protected constructor(child: ChildProcess, ref: ProcessRef, o: VmProcessOptions) {
    this.child = child;
    this.process = ref;
    this.marker = o.marker;
    this.identity = { marker: o.marker, root: ref, dir: o.dir };
    this.console = new ConsoleLog(o.consoleBytes);
    this.#certificateWaitMs = o.certificateWaitMs;
    child.stdout?.on('data', (d: Buffer) => this.console.append(d));
    this.exited = new Promise<VmExit>((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        this.timelineEvents.ended(String(code ?? signal));
        resolve(this.#exit);
      });
    });
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  protected get exit(): VmExit | undefined {
    return this.#exit;
  }

  /** Carries the VM channel over `stream` (the guest's side of its carrier), once. */
  protected bridge(stream: Duplex, channel: VmChannelEndpoint): void {
    this.#stream = stream;
    this.#gate = gateReadyOnCertificate(channel, this.#certificateWaitMs, this.timelineEvents);
    this.#bridge = bridgeChannel(stream, this.#gate, (m) => this.timelineEvents.observe(m));
  }

  timeline(): Timeline {
    return this.timelineEvents.snapshot();
  }

  channelStats(): ChannelStats | undefined {
    return this.#bridge?.stats();
  }

  /** Resolves (ms after spawn) when `event` happened; VM_BOOT_FAILED if the guest ends first, TIMEOUT after `timeoutMs`. */
  waitFor(event: GuestEvent, timeoutMs: number): Promise<number> {
    return this.timelineEvents.waitFor(event, timeoutMs);
  }

  /** SIGTERM, then after `graceMs` SIGKILL to whatever of the VM still runs. Resolves with what the sweep found; idempotent. */
  stop(graceMs: number, killTimeoutMs = 5000): Promise<SweepResult> {
    this.#stopping ??= (async () => {
      this.#gate?.dispose();
      if (this.running) {
        try {
          process.kill(this.process.pid, 'SIGTERM');
        } catch {
          // exited meanwhile
        }
        await Promise.race([this.exited, sleep(graceMs)]);
      }
      const result = await sweep(this.identity, killTimeoutMs);
      // Our child: wait for its exit to be reaped before saying it is gone.
      await Promise.race([this.exited, sleep(killTimeoutMs)]);
      this.#bridge?.close();
      this.#stream?.destroy();
      this.child.stdin?.destroy();
      this.child.stdout?.destroy();
      this.child.stderr?.destroy();
      return result;
    })();
    return this.#stopping;
  }
}
