// The QEMU VM backend (DESIGN.md §3.5, docs/qemu-vms.md): real Linux guests. `runner` is
// the hypervisor's hook; each boot is a pipeline of named steps, and every resource a step
// took is given back if a later one fails:
//
//   setup    dom0's `guest` parsed strictly (GuestSetup)                MALFORMED_REQUEST
//   image    the measured command line is one line of text             MALFORMED_REQUEST
//   charge   declared memory (+ QEMU's own) against the capacity       CAPACITY_EXCEEDED
//   record   a private VM directory (0700) and its record (for reaping)
//   copies   the measured kernel and initramfs — the bytes in VM memory the hypervisor
//            hashed — written into that directory (0400, O_EXCL); QEMU gets exactly
//            these paths and the measured command line: nothing dom0 can reach is read
//   accel    KVM if it really boots a guest kernel here, else TCG (probed once per host
//            boot; a boot waits at most 2 s for an unfinished probe, then takes TCG)
//   port     a loopback port for `hostfwd` (reserved, probed; another if QEMU loses it) CAPACITY_EXCEEDED
//   spawn    QEMU, until it holds the port and the VM channel's socket is bridged    VM_BOOT_FAILED
//   config   hostname, authorized keys and port 22, on the channel — held until the
//            mini-domain sent the host certificate (at most `certificateWaitMs`), so
//            the guest's sshd starts with its certificate and never has to restart
//
// The runner resolves once the guest starts (like `xl create`); `host-key`, `ready` and
// `certificate-installed` arrive on the channel afterwards. A QEMU that exits on its own
// (the guest powered off or panicked: `-no-reboot`, `panic=-1`) is cleaned up at once;
// the hypervisor then destroys its domain through `exited`.
import { existsSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { TrustlaunchError, isTrustlaunchError } from '../../../protocol/errors.js';
import type { DomainExecution, DomainId, VmBoot, VmChannelEndpoint } from '../../hypervisor/index.js';
import { configMessage, parseGuestSetup, type VmBackend, type VmCapacity, type VmEndpoint, type VmUsage } from '../backend.js';
import type { ChannelStats } from '../channel-bridge.js';
import { MemoryLedger } from '../memory-ledger.js';
import { killNow, ownStartTime, residentBytes, vmProcesses } from '../proc.js';
import { PortAllocator, type PortRange } from '../ports.js';
import { reapLeftovers, type ReapedVm } from '../reaper.js';
import { RuntimeDir, defaultRuntimeRoot, type VmDir, type VmRecord } from '../runtime-dir.js';
import type { GuestEvent, Timeline } from '../timeline.js';
import { PROBE_WAIT_MS, chooseAccelerator, type AcceleratorChoice, type AcceleratorSetting } from './accelerator.js';
import { INITRD_FILE, KERNEL_FILE, qemuArgs, type QemuArgs } from './qemu-args.js';
import { QemuVm } from './qemu-vm.js';

const MiB = 1024 * 1024;

export interface QemuVmBackendOptions {
  /** Runtime directory (default: /run/trustlaunch/qemu-vms as root, else under the temp dir). */
  readonly runtimeRoot?: string;
  /** Loopback ports for `hostfwd` (default 20000..31999, below Linux's ephemeral range). */
  readonly ports?: PortRange;
  /** Memory the backend may hand out, QEMU's own included (default: 75 % of the machine's). */
  readonly capacityBytes?: number;
  /** `auto` (default): KVM when it really boots the guest kernel, else TCG. */
  readonly accelerator?: AcceleratorSetting;
  /** The QEMU binary (default: qemu-system-x86_64 on the PATH). */
  readonly qemuBinary?: string;
  /** Charged per VM on top of its memory, for QEMU itself (default 64 MiB). */
  readonly overheadBytes?: number;
  readonly vcpus?: number;
  /** Between SIGTERM and SIGKILL (default 3 s; QEMU exits at once on SIGTERM). */
  readonly stopGraceMs?: number;
  /** Console bytes kept per VM (default 64 KiB). */
  readonly consoleBytes?: number;
  /** How long QEMU may take to listen on its port (default 30 s). */
  readonly startTimeoutMs?: number;
  /** QEMU's seccomp sandbox (default on). */
  readonly sandbox?: boolean;
  /**
   * QEMU gets SIGKILL when the node process dies (`setpriv --pdeathsig`, default on when
   * util-linux's setpriv is installed). Off, a QEMU outlives a crashed node until the
   * restarted node's reaper kills it (tests of the reaper turn it off).
   */
  readonly parentDeathSignal?: boolean;
  /**
   * How long the `config` message (which makes the guest start sshd) waits for the host
   * certificate to go out first (default 10 s; 0 when the node's attestation is off).
   * With the certificate already in place, sshd starts presenting it, and a user who
   * verified the receipt never meets an sshd restarting to take the certificate in.
   */
  readonly certificateWaitMs?: number;
}

/** Where a VM runs, for the node's status and for tests (no secrets). */
export interface QemuVmInspection {
  readonly vmId: DomainId;
  readonly name: string;
  readonly qemuPid: number;
  readonly marker: string;
  readonly sshPort: number;
  /** The VM's private directory (the measured copies, the channel socket). */
  readonly dir: string;
  readonly accelerator: AcceleratorChoice;
  /** QEMU's whole argument vector (as `/proc/PID/cmdline` shows it). */
  readonly argv: readonly string[];
  readonly memoryMiB: number;
}

interface RunningVm {
  readonly vmId: DomainId;
  readonly name: string;
  readonly declaredBytes: number;
  readonly chargedBytes: number;
  readonly memoryMiB: number;
  readonly port: number;
  readonly dir: VmDir;
  readonly accelerator: AcceleratorChoice;
  readonly qemu: QemuVm;
  /** Cancels a config still waiting for the certificate. */
  readonly cancelConfig: () => void;
  finished: Promise<void> | undefined;
}

const FINISHED_CONSOLES = 32;
const PORT_ATTEMPTS = 5;
/** Below this the guest kernel cannot unpack an initramfs. */
export const MIN_VM_MEMORY_BYTES = 64 * MiB;
export const DEFAULT_OVERHEAD_BYTES = 64 * MiB;

/** A command's absolute path on the PATH, or undefined. */
function onPath(name: string): string | undefined {
  if (name.includes('/')) return existsSync(name) ? name : undefined;
  for (const dir of (process.env['PATH'] ?? '/usr/bin:/bin').split(':')) {
    const p = join(dir, name);
    if (dir !== '' && existsSync(p)) return p;
  }
  return undefined;
}

export class QemuVmBackend implements VmBackend {
  readonly kind = 'qemu' as const;
  readonly runner: (boot: VmBoot) => Promise<DomainExecution>;
  /** What the reaper found when this backend opened its runtime directory. */
  readonly reaped: readonly ReapedVm[];
  readonly qemuBinary: string;
  readonly #setting: AcceleratorSetting;
  readonly #setpriv: string | undefined;
  readonly #dir: RuntimeDir;
  readonly #ports: PortAllocator;
  readonly #ledger: MemoryLedger;
  readonly #owner: { readonly pid: number; readonly startTime: string };
  readonly #o: Required<Pick<QemuVmBackendOptions, 'overheadBytes' | 'vcpus' | 'stopGraceMs' | 'consoleBytes' | 'startTimeoutMs' | 'sandbox' | 'certificateWaitMs'>>;
  readonly #vms = new Map<DomainId, RunningVm>();
  readonly #consoles = new Map<DomainId, string>();
  readonly #onExit = (): void => this.#killAllNow();
  #lastChoice: AcceleratorChoice | undefined;
  #closed = false;

  private constructor(dir: RuntimeDir, reaped: ReapedVm[], qemu: string, options: QemuVmBackendOptions) {
    this.#dir = dir;
    this.reaped = Object.freeze(reaped);
    this.qemuBinary = qemu;
    this.#setting = options.accelerator ?? 'auto';
    this.#setpriv = options.parentDeathSignal === false ? undefined : onPath('setpriv');
    this.#ports = new PortAllocator(dir, options.ports);
    this.#ledger = new MemoryLedger({ capacityBytes: options.capacityBytes ?? Math.floor(totalmem() * 0.75), minChargeBytes: 0 });
    this.#owner = { pid: process.pid, startTime: ownStartTime() };
    this.#o = {
      overheadBytes: options.overheadBytes ?? DEFAULT_OVERHEAD_BYTES,
      vcpus: options.vcpus ?? 1,
      stopGraceMs: options.stopGraceMs ?? 3000,
      consoleBytes: options.consoleBytes ?? 64 * 1024,
      startTimeoutMs: options.startTimeoutMs ?? 30_000,
      sandbox: options.sandbox ?? true,
      certificateWaitMs: options.certificateWaitMs ?? 10_000,
    };
    this.runner = (boot) => this.#boot(boot);
    process.on('exit', this.#onExit);
  }

  /** Opens (creating) the runtime directory, reaps what dead node processes left, and returns the backend. UNAVAILABLE without QEMU. */
  static async open(options: QemuVmBackendOptions = {}): Promise<QemuVmBackend> {
    const qemu = onPath(options.qemuBinary ?? 'qemu-system-x86_64');
    if (qemu === undefined) throw new TrustlaunchError('UNAVAILABLE', `${options.qemuBinary ?? 'qemu-system-x86_64'} is not installed (apt-get install qemu-system-x86)`);
    const dir = RuntimeDir.open(options.runtimeRoot ?? defaultRuntimeRoot('qemu'));
    const reaped = await reapLeftovers(dir);
    return new QemuVmBackend(dir, reaped, qemu, options);
  }

  get runtimeRoot(): string {
    return this.#dir.root;
  }

  /** The accelerator setting, and what the last boot chose (undefined before the first boot). */
  accelerator(): { readonly setting: AcceleratorSetting; readonly chosen: AcceleratorChoice | undefined } {
    return { setting: this.#setting, chosen: this.#lastChoice };
  }

  admit(memoryBytes: number): void {
    this.#ledger.admit(memoryBytes + this.#o.overheadBytes);
  }

  capacity(): VmCapacity {
    const { capacityBytes, chargedBytes, vms } = this.#ledger;
    return { capacityBytes, chargedBytes, availableBytes: capacityBytes - chargedBytes, vms };
  }

  usage(): VmUsage[] {
    return [...this.#vms.values()].map((vm) => ({
      vmId: vm.vmId,
      name: vm.name,
      declaredBytes: vm.declaredBytes,
      chargedBytes: vm.chargedBytes,
      residentBytes: residentBytes(vmProcesses(vm.qemu.identity)),
    }));
  }

  endpoint(vmId: DomainId): VmEndpoint | undefined {
    const vm = this.#vms.get(vmId);
    return vm === undefined ? undefined : { vmId, name: vm.name, host: '127.0.0.1', sshPort: vm.port };
  }

  console(vmId: DomainId): string | undefined {
    return this.#vms.get(vmId)?.qemu.console.text() ?? this.#consoles.get(vmId);
  }

  /** Types on the VM's serial console (dom0's side of it: like `virsh console`). NOT_FOUND for other VMs. */
  consoleInput(vmId: DomainId, bytes: string | Uint8Array): void {
    const vm = this.#vms.get(vmId);
    if (vm === undefined) throw new TrustlaunchError('NOT_FOUND', `no QEMU VM ${vmId}`);
    vm.qemu.consoleInput(bytes);
  }

  inspect(vmId: DomainId): QemuVmInspection | undefined {
    const vm = this.#vms.get(vmId);
    if (vm === undefined) return undefined;
    return { vmId, name: vm.name, qemuPid: vm.qemu.qemu.pid, marker: vm.qemu.marker, sshPort: vm.port, dir: vm.dir.path, accelerator: vm.accelerator, argv: vm.qemu.argv, memoryMiB: vm.memoryMiB };
  }

  timeline(vmId: DomainId): Timeline | undefined {
    return this.#vms.get(vmId)?.qemu.timeline();
  }

  channelStats(vmId: DomainId): ChannelStats | undefined {
    return this.#vms.get(vmId)?.qemu.channelStats();
  }

  /** Resolves (ms after QEMU was spawned) when the guest sent `event`; TIMEOUT, VM_BOOT_FAILED (it ended), NOT_FOUND. */
  waitForGuest(vmId: DomainId, event: GuestEvent, timeoutMs: number): Promise<number> {
    const vm = this.#vms.get(vmId);
    if (vm !== undefined) return vm.qemu.waitFor(event, timeoutMs);
    if (this.#consoles.has(vmId)) return Promise.reject(new TrustlaunchError('VM_BOOT_FAILED', `QEMU VM ${vmId} has ended`));
    return Promise.reject(new TrustlaunchError('NOT_FOUND', `no QEMU VM ${vmId}`));
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#vms.values()].map((vm) => this.#finish(vm)));
    process.off('exit', this.#onExit);
  }

  // --- boot ----------------------------------------------------------------------------

  async #boot(boot: VmBoot): Promise<DomainExecution> {
    if (this.#closed) throw new TrustlaunchError('UNAVAILABLE', 'the QEMU VM backend is closed');
    const vmId = boot.capability.vmId;
    if (this.#vms.has(vmId)) throw new TrustlaunchError('CONFLICT', `VM ${vmId} already runs`);
    const setup = parseGuestSetup(boot.guest);
    const cmdline = commandLine(boot.cmdline?.bytes);
    const declaredBytes = boot.capability.memory.size;
    if (declaredBytes < MIN_VM_MEMORY_BYTES) throw new TrustlaunchError('MALFORMED_REQUEST', `a QEMU VM needs at least ${MIN_VM_MEMORY_BYTES / MiB} MiB of memory`);
    const memoryMiB = Math.ceil(declaredBytes / MiB);
    const chargedBytes = this.#ledger.charge(vmId, declaredBytes + this.#o.overheadBytes);
    const undo: (() => unknown)[] = [() => this.#ledger.release(vmId)];
    try {
      const record: VmRecord = {
        v: 1,
        vmId,
        name: boot.name,
        marker: randomBytes(16).toString('hex'),
        owner: this.#owner,
        guest: null,
        sshPort: null,
        createdAt: new Date().toISOString(),
      };
      const dir = this.#dir.createVm(record);
      undo.push(() => this.#dir.removeVm(dir));

      // The measured copies: the bytes the hypervisor hashed, read from VM memory.
      const kernelPath = join(dir.path, KERNEL_FILE);
      const initrdPath = boot.initrd === undefined ? undefined : join(dir.path, INITRD_FILE);
      await writeMeasuredCopy(kernelPath, boot.image);
      if (initrdPath !== undefined && boot.initrd !== undefined) await writeMeasuredCopy(initrdPath, boot.initrd.bytes);

      const accelerator = await chooseAccelerator(this.#setting, { qemu: this.qemuBinary, kernelPath, initrdPath }, PROBE_WAIT_MS);
      this.#lastChoice = accelerator;

      const { port, qemu } = await this.#spawnOnFreePort(dir, record, { accel: accelerator.accel, memoryMiB, vcpus: this.#o.vcpus, kernelPath, initrdPath, cmdline, sandbox: this.#o.sandbox }, boot);
      undo.push(() => this.#ports.release(port), () => qemu.stop(0));
      const cancelConfig = afterCertificate(boot.capability.channel, this.#o.certificateWaitMs, () => boot.sendToGuest(configMessage(setup, 22)));
      undo.push(cancelConfig);
      // The domain was destroyed while we were starting it: nothing will ever call stop.
      if (boot.capability.channel.closed) throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vmId} was destroyed while it booted`);
      const vm: RunningVm = { vmId, name: boot.name, declaredBytes, chargedBytes, memoryMiB, port, dir, accelerator, qemu, cancelConfig, finished: undefined };
      this.#vms.set(vmId, vm);
      // A QEMU that ends on its own is cleaned up now; a failure shows when stop() is awaited.
      void qemu.exited.then(() => this.#finish(vm)).catch(() => undefined);
      return { stop: () => this.#finish(vm), exited: qemu.exited };
    } catch (e) {
      for (const step of undo.reverse()) await step();
      throw e;
    }
  }

  /** Allocates a port and starts QEMU on it; another port when QEMU lost the race for it. */
  async #spawnOnFreePort(dir: VmDir, record: VmRecord, args: Omit<QemuArgs, 'sshPort'>, boot: VmBoot): Promise<{ port: number; qemu: QemuVm }> {
    let last: unknown;
    for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
      const port = await this.#ports.allocate(dir);
      this.#dir.writeRecord(dir, { ...record, sshPort: port });
      try {
        const qemu = await QemuVm.spawn({
          qemu: this.qemuBinary,
          args: qemuArgs({ ...args, sshPort: port }),
          marker: record.marker,
          dir: dir.path,
          sshPort: port,
          channel: boot.capability.channel,
          consoleBytes: this.#o.consoleBytes,
          setpriv: this.#setpriv,
          startTimeoutMs: this.#o.startTimeoutMs,
        });
        this.#dir.writeRecord(dir, { ...record, sshPort: port, guest: qemu.qemu });
        return { port, qemu };
      } catch (e) {
        this.#ports.release(port);
        if (!isTrustlaunchError(e, 'CONFLICT')) throw e;
        last = e;
      }
    }
    throw new TrustlaunchError('VM_BOOT_FAILED', `QEMU lost its forwarded port ${PORT_ATTEMPTS} times`, { cause: last });
  }

  /** Stops the VM for certain and gives back its port, directory (with the copies) and memory; idempotent. */
  #finish(vm: RunningVm): Promise<void> {
    vm.finished ??= (async () => {
      vm.cancelConfig();
      const result = await vm.qemu.stop(this.#o.stopGraceMs);
      this.#keepConsole(vm);
      this.#vms.delete(vm.vmId);
      this.#ledger.release(vm.vmId);
      if (result.survivors.length > 0) {
        // Keep the record: a later reaper (after this node process ends) tries again.
        throw new Error(`VM ${vm.vmId}: ${result.survivors.length} process(es) survived SIGKILL: ${result.survivors.map((p) => p.pid).join(', ')}`);
      }
      this.#ports.release(vm.port);
      this.#dir.removeVm(vm.dir);
    })();
    return vm.finished;
  }

  #keepConsole(vm: RunningVm): void {
    this.#consoles.set(vm.vmId, vm.qemu.console.text());
    for (const id of this.#consoles.keys()) {
      if (this.#consoles.size <= FINISHED_CONSOLES) break;
      this.#consoles.delete(id);
    }
  }

  /** process.on('exit'): synchronous, best effort (QEMU also has the parent-death signal). */
  #killAllNow(): void {
    for (const vm of this.#vms.values()) {
      killNow(vm.qemu.identity);
      this.#ports.release(vm.port);
      rmSync(vm.dir.path, { recursive: true, force: true });
    }
  }
}

/**
 * Runs `then` right after the first `host-certificate` message goes to the guest (on the
 * guest's end of the channel, after the carrier wrote it), or after `ms` at the latest.
 * Returns a function that cancels it.
 */
function afterCertificate(channel: VmChannelEndpoint, ms: number, then: () => void): () => void {
  if (ms <= 0) {
    then();
    return () => undefined;
  }
  let pending = true;
  let timer: NodeJS.Timeout | undefined;
  let stopListening: () => void = () => undefined;
  const cancel = (): void => {
    pending = false;
    stopListening();
    clearTimeout(timer);
  };
  const fire = (): void => {
    if (!pending) return;
    cancel();
    then();
  };
  stopListening = channel.onMessage((m) => {
    if (typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'host-certificate') fire();
  });
  if (pending) timer = setTimeout(fire, ms);
  return cancel;
}

/** The measured command line as QEMU's `-append` argument: one line of text (its bytes are exactly what was hashed). */
function commandLine(bytes: Uint8Array | undefined): string {
  if (bytes === undefined) return '';
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'the kernel command line is not UTF-8');
  }
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(text)) throw new TrustlaunchError('MALFORMED_REQUEST', 'the kernel command line holds a control character (a newline, a NUL…)');
  return text;
}

/** Writes a measured part into a new file of the VM directory (never an existing one), read-only. */
async function writeMeasuredCopy(path: string, bytes: Uint8Array): Promise<void> {
  await writeFile(path, bytes, { mode: 0o400, flag: 'wx' });
}

/** Opens the QEMU VM backend (reaping leftovers of dead node processes first). */
export function openQemuVmBackend(options: QemuVmBackendOptions = {}): Promise<QemuVmBackend> {
  return QemuVmBackend.open(options);
}
