// One QEMU VM: QEMU in the VM's private directory, under `setpriv --pdeathsig KILL` when
// util-linux has it (the node dying — even by SIGKILL — takes QEMU with it); its stdio is
// the serial console. `spawn` resolves once QEMU holds the forwarded SSH port (the machine
// is built, the guest starts) and the hypervisor is connected to the VM channel's unix
// socket. The process, console, channel, timeline and stopping are the shared VmProcess
// (../vm-process.ts).
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { TrustlaunchError } from '../../../protocol/errors.js';
import type { VmChannelEndpoint } from '../../hypervisor/index.js';
import { holdsListener } from '../proc.js';
import type { ProcessRef } from '../runtime-dir.js';
import { VmProcess, sleep, spawnVmProcess, type VmExit } from '../vm-process.js';
import { CHANNEL_SOCKET } from './qemu-args.js';

export type QemuExit = VmExit;

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
  readonly certificateWaitMs: number;
}

/** A unix socket path holds at most 107 bytes (sun_path). */
const MAX_SOCKET_PATH = 107;
const STDERR_BYTES = 16 * 1024;

export class QemuVm extends VmProcess {
  /** QEMU's argument vector, as /proc/PID/cmdline shows it once setpriv exec'd QEMU. */
  readonly argv: readonly string[];
  #stderr = '';

  private constructor(child: ChildProcess, ref: ProcessRef, o: QemuSpawn) {
    super(child, ref, o);
    this.argv = [o.qemu, ...o.args];
  }

  /**
   * Spawns QEMU; resolves once it listens on the forwarded port and the channel is bridged.
   * CONFLICT when QEMU could not bind the port (another process took it after the probe:
   * try another); VM_BOOT_FAILED for anything else.
   */
  static async spawn(o: QemuSpawn): Promise<QemuVm> {
    const argv: [string, ...string[]] = o.setpriv === undefined ? [o.qemu, ...o.args] : [o.setpriv, '--pdeathsig', 'KILL', '--', o.qemu, ...o.args];
    const { child, ref } = await spawnVmProcess({ argv, marker: o.marker, dir: o.dir, cwd: o.dir, stdio: ['pipe', 'pipe', 'pipe'], consoleBytes: o.consoleBytes, what: 'QEMU' });
    const vm = new QemuVm(child, ref, o);
    child.stderr?.on('data', (d: Buffer) => {
      if (vm.#stderr.length < STDERR_BYTES) vm.#stderr += d.toString('utf8');
    });
    // Console input (dom0 typing) may fail once QEMU is gone; that is QEMU's exit to report.
    child.stdin?.on('error', () => undefined);
    try {
      await vm.#waitForListener(o.sshPort, o.startTimeoutMs);
      await vm.#connectChannel(o.dir, o.channel, o.startTimeoutMs);
    } catch (e) {
      await vm.stop(0);
      throw e;
    }
    return vm;
  }

  /** QEMU's own messages (errors), bounded. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Bytes typed on the serial console (dom0's side of the console; the guest's init never reads it). */
  consoleInput(bytes: string | Uint8Array): void {
    if (this.running) this.child.stdin?.write(bytes);
  }

  /** Until QEMU itself listens on 127.0.0.1:port (its `hostfwd`), or it exited. */
  async #waitForListener(port: number, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.running && performance.now() < deadline) {
      if (holdsListener(this.process.pid, port)) return;
      await Promise.race([this.exited, sleep(10)]);
    }
    const why = this.#stderr.trim();
    if (this.running) throw new TrustlaunchError('VM_BOOT_FAILED', `QEMU did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
    if (/host forwarding|Could not set up/i.test(why)) throw new TrustlaunchError('CONFLICT', `port ${port} was taken before QEMU bound it: ${why}`, { detail: { portTaken: port } });
    throw new TrustlaunchError('VM_BOOT_FAILED', `QEMU exited (${String(this.exit?.code ?? this.exit?.signal)}): ${why === '' ? 'no message' : why.slice(0, 1000)}`);
  }

  /** The hypervisor's end of the VM channel: QEMU's chardev socket, bridged to the VM's endpoint. */
  async #connectChannel(dir: string, endpoint: VmChannelEndpoint, timeoutMs: number): Promise<void> {
    const path = join(dir, CHANNEL_SOCKET);
    const deadline = performance.now() + timeoutMs;
    let last: unknown;
    while (this.running && performance.now() < deadline) {
      if (existsSync(path)) {
        try {
          this.bridge(await connectUnix(dir, CHANNEL_SOCKET), endpoint);
          return;
        } catch (e) {
          last = e;
        }
      }
      await sleep(10);
    }
    throw new TrustlaunchError('VM_BOOT_FAILED', `cannot connect to the VM channel of QEMU ${this.process.pid}`, { cause: last });
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
