// One process VM: the measured image bytes written into `node --input-type=module -`
// (never a file: nothing dom0 could swap after measurement), in its own session and
// process group, with a clean environment (no NODE_OPTIONS: nothing but the image runs),
// stdout/stderr into its console, and fd 3 — a socketpair end only this process holds —
// bridged to the VM channel. Stopping is SIGTERM, a grace period, then `sweep` (SIGKILL
// to everything carrying the VM's marker and their descendants) until nothing is left.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { TrustlaunchError } from '../../../protocol/errors.js';
import type { VmBoot } from '../../hypervisor/index.js';
import { bridgeChannel, type ChannelBridge, type ChannelStats } from '../channel-bridge.js';
import { ConsoleLog } from '../console-log.js';
import { MARKER_VARIABLE, procStat, sweep, type SweepResult, type VmIdentity } from '../proc.js';
import type { ProcessRef } from '../runtime-dir.js';
import { GuestTimeline, type GuestEvent, type Timeline } from '../timeline.js';

export type { GuestEvent, Timeline } from '../timeline.js';

export interface GuestExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ProcessVmSpawn {
  readonly boot: VmBoot;
  readonly marker: string;
  /** The VM's private runtime directory. */
  readonly dir: string;
  /** The guest's TMPDIR and working directory (inside `dir`). */
  readonly tmp: string;
  readonly nodeExecutable: string;
  readonly consoleBytes: number;
}

const PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ProcessVm {
  readonly marker: string;
  readonly console: ConsoleLog;
  readonly guest: ProcessRef;
  /** How to find every process of this VM. */
  readonly identity: VmIdentity;
  readonly exited: Promise<GuestExit>;
  readonly #child: ChildProcess;
  readonly #bridge: ChannelBridge;
  readonly #channel: Duplex;
  readonly #timeline = new GuestTimeline();
  #exit: GuestExit | undefined;
  #stopping: Promise<SweepResult> | undefined;

  private constructor(child: ChildProcess, guest: ProcessRef, opts: ProcessVmSpawn) {
    this.#child = child;
    this.guest = guest;
    this.marker = opts.marker;
    this.identity = { marker: opts.marker, root: guest, dir: opts.dir };
    this.console = new ConsoleLog(opts.consoleBytes);
    child.stdout?.on('data', (d: Buffer) => this.console.append(d));
    child.stderr?.on('data', (d: Buffer) => this.console.append(d));
    this.exited = new Promise<GuestExit>((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        this.#timeline.ended(String(code ?? signal));
        resolve(this.#exit);
      });
    });
    this.#channel = child.stdio[3] as Duplex;
    this.#bridge = bridgeChannel(this.#channel, opts.boot.capability.channel, (m) => this.#timeline.observe(m));
  }

  /** Spawns the guest and hands it the image on stdin. VM_BOOT_FAILED if it cannot start. */
  static async spawn(opts: ProcessVmSpawn): Promise<ProcessVm> {
    const child = spawn(opts.nodeExecutable, ['--input-type=module', '-'], {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      detached: true, // its own session and process group: no signal from our terminal
      cwd: opts.tmp,
      env: { PATH, LANG: 'C', TMPDIR: opts.tmp, [MARKER_VARIABLE]: opts.marker },
    });
    const failed = new Promise<Error>((resolve) => child.once('error', resolve));
    const pid = child.pid;
    const stat = pid === undefined ? undefined : procStat(pid);
    if (pid === undefined || stat === undefined) {
      const e = await Promise.race([failed, sleep(1000).then(() => new Error('no pid'))]);
      child.kill('SIGKILL');
      throw new TrustlaunchError('VM_BOOT_FAILED', `the guest process did not start: ${e.message}`, { cause: e });
    }
    const vm = new ProcessVm(child, { pid, startTime: stat.startTime }, opts);
    // The measured bytes, exactly: a copy the hypervisor read back from VM memory.
    child.stdin?.on('error', () => undefined); // a guest that exits early closes its stdin
    child.stdin?.end(Buffer.from(opts.boot.image.buffer, opts.boot.image.byteOffset, opts.boot.image.byteLength));
    return vm;
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  timeline(): Timeline {
    return this.#timeline.snapshot();
  }

  channelStats(): ChannelStats {
    return this.#bridge.stats();
  }

  /** Resolves when the guest sent `event`; VM_BOOT_FAILED if it exits first, TIMEOUT after `timeoutMs`. */
  waitFor(event: GuestEvent, timeoutMs: number): Promise<number> {
    return this.#timeline.waitFor(event, timeoutMs);
  }

  /**
   * SIGTERM (the guest stops sshd and removes its temp dir), then after `graceMs` SIGKILL
   * to whatever of the VM still runs. Resolves with what the sweep found; idempotent.
   */
  stop(graceMs: number, killTimeoutMs = 5000): Promise<SweepResult> {
    this.#stopping ??= (async () => {
      if (this.running) {
        try {
          process.kill(this.guest.pid, 'SIGTERM');
        } catch {
          // exited meanwhile
        }
        await Promise.race([this.exited, sleep(graceMs)]);
      }
      const result = await sweep(this.identity, killTimeoutMs);
      // The guest was our child: wait for its exit to be reaped before saying it is gone.
      await Promise.race([this.exited, sleep(killTimeoutMs)]);
      this.#bridge.close();
      this.#channel.destroy();
      this.#child.stdout?.destroy();
      this.#child.stderr?.destroy();
      return result;
    })();
    return this.#stopping;
  }
}
