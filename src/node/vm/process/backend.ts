// The process VM backend (DESIGN.md §3.5, docs/process-vms.md): the default, needing only
// Node.js and OpenSSH. `runner` is the hypervisor's hook; each boot is a pipeline of named
// steps, and every resource a step took is given back if a later one fails:
//
//   setup    one program (no bundle); dom0's `guest` parsed      UNSUPPORTED, MALFORMED_REQUEST
//   charge   declared memory against the capacity               CAPACITY_EXCEEDED
//   record   a private VM directory and its record (for reaping)
//   port     an SSH port on 127.0.0.1 (reserved, probed)         CAPACITY_EXCEEDED
//   spawn    the measured bytes into `node -`, fd 3 bridged       VM_BOOT_FAILED
//   config   hostname, authorized keys and port, on the channel
//
// The runner resolves once the guest runs (like `xl create`); the guest's `host-key` and
// `ready` arrive on the channel afterwards. A guest that exits on its own is cleaned up
// at once; the hypervisor then destroys its domain through `exited`.
import { rmSync } from 'node:fs';
import { totalmem } from 'node:os';
import { randomBytes } from 'node:crypto';
import { TrustlaunchError } from '../../../protocol/errors.js';
import type { DomainExecution, DomainId, VmBoot } from '../../hypervisor/index.js';
import { configMessage, parseGuestSetup, type VmBackend, type VmCapacity, type VmEndpoint, type VmUsage } from '../backend.js';
import type { ChannelStats } from '../channel-bridge.js';
import { MemoryLedger } from '../memory-ledger.js';
import { ownStartTime, killNow, residentBytes, vmProcesses } from '../proc.js';
import { PortAllocator, type PortRange } from '../ports.js';
import { ProcessVm, type GuestEvent, type Timeline } from './process-vm.js';
import { reapLeftovers, type ReapedVm } from '../reaper.js';
import { RuntimeDir, type VmDir, type VmRecord } from '../runtime-dir.js';

export interface ProcessVmBackendOptions {
  /** Runtime directory (default: /run/trustlaunch/process-vms as root, else under the temp dir). */
  readonly runtimeRoot?: string;
  /** SSH ports handed out (default 20000..31999, below Linux's ephemeral range). */
  readonly ports?: PortRange;
  /** Memory the backend may hand out (default: 75 % of the machine's). */
  readonly capacityBytes?: number;
  /** Each VM is charged at least this (default 64 MiB). */
  readonly minChargeBytes?: number;
  /** The Node.js that runs guests (default: this one, process.execPath). */
  readonly nodeExecutable?: string;
  /** Between SIGTERM and SIGKILL (default 3 s). */
  readonly stopGraceMs?: number;
  /** Console bytes kept per VM (default 64 KiB). */
  readonly consoleBytes?: number;
}

/** Where a VM's processes are, for the node's status and for tests (no secrets). */
export interface ProcessVmInspection {
  readonly vmId: DomainId;
  readonly name: string;
  readonly guestPid: number;
  readonly marker: string;
  readonly sshPort: number;
  /** The VM's private runtime directory (the guest's TMPDIR is `tmp/` below it). */
  readonly dir: string;
}

interface RunningVm {
  readonly vmId: DomainId;
  readonly name: string;
  readonly declaredBytes: number;
  readonly chargedBytes: number;
  readonly port: number;
  readonly dir: VmDir;
  readonly process: ProcessVm;
  finished: Promise<void> | undefined;
}

const FINISHED_CONSOLES = 32;

export class ProcessVmBackend implements VmBackend {
  readonly kind = 'process' as const;
  readonly runner: (boot: VmBoot) => Promise<DomainExecution>;
  /** What the reaper found when this backend opened its runtime directory. */
  readonly reaped: readonly ReapedVm[];
  readonly #dir: RuntimeDir;
  readonly #ports: PortAllocator;
  readonly #ledger: MemoryLedger;
  readonly #owner: { readonly pid: number; readonly startTime: string };
  readonly #nodeExecutable: string;
  readonly #stopGraceMs: number;
  readonly #consoleBytes: number;
  readonly #vms = new Map<DomainId, RunningVm>();
  readonly #consoles = new Map<DomainId, string>();
  readonly #onExit = (): void => this.#killAllNow();
  #closed = false;

  private constructor(dir: RuntimeDir, reaped: ReapedVm[], options: ProcessVmBackendOptions) {
    this.#dir = dir;
    this.reaped = Object.freeze(reaped);
    this.#ports = new PortAllocator(dir, options.ports);
    this.#ledger = new MemoryLedger({
      capacityBytes: options.capacityBytes ?? Math.floor(totalmem() * 0.75),
      ...(options.minChargeBytes === undefined ? {} : { minChargeBytes: options.minChargeBytes }),
    });
    this.#owner = { pid: process.pid, startTime: ownStartTime() };
    this.#nodeExecutable = options.nodeExecutable ?? process.execPath;
    this.#stopGraceMs = options.stopGraceMs ?? 3000;
    this.#consoleBytes = options.consoleBytes ?? 64 * 1024;
    this.runner = (boot) => this.#boot(boot);
    process.on('exit', this.#onExit);
  }

  /** Opens (creating) the runtime directory, reaps what dead node processes left, and returns the backend. */
  static async open(options: ProcessVmBackendOptions = {}): Promise<ProcessVmBackend> {
    const dir = RuntimeDir.open(options.runtimeRoot);
    const reaped = await reapLeftovers(dir);
    return new ProcessVmBackend(dir, reaped, options);
  }

  get runtimeRoot(): string {
    return this.#dir.root;
  }

  admit(memoryBytes: number): void {
    this.#ledger.admit(memoryBytes);
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
      residentBytes: residentBytes(vmProcesses(vm.process.identity)),
    }));
  }

  endpoint(vmId: DomainId): VmEndpoint | undefined {
    const vm = this.#vms.get(vmId);
    return vm === undefined ? undefined : { vmId, name: vm.name, host: '127.0.0.1', sshPort: vm.port };
  }

  console(vmId: DomainId): string | undefined {
    return this.#vms.get(vmId)?.process.console.text() ?? this.#consoles.get(vmId);
  }

  inspect(vmId: DomainId): ProcessVmInspection | undefined {
    const vm = this.#vms.get(vmId);
    if (vm === undefined) return undefined;
    return { vmId, name: vm.name, guestPid: vm.process.guest.pid, marker: vm.process.marker, sshPort: vm.port, dir: vm.dir.path };
  }

  timeline(vmId: DomainId): Timeline | undefined {
    return this.#vms.get(vmId)?.process.timeline();
  }

  channelStats(vmId: DomainId): ChannelStats | undefined {
    return this.#vms.get(vmId)?.process.channelStats();
  }

  /** Resolves (ms after spawn) when the guest sent `event`; TIMEOUT, VM_BOOT_FAILED (it ended), NOT_FOUND. */
  waitForGuest(vmId: DomainId, event: GuestEvent, timeoutMs: number): Promise<number> {
    const vm = this.#vms.get(vmId);
    if (vm !== undefined) return vm.process.waitFor(event, timeoutMs);
    if (this.#consoles.has(vmId)) return Promise.reject(new TrustlaunchError('VM_BOOT_FAILED', `process VM ${vmId} has ended`));
    return Promise.reject(new TrustlaunchError('NOT_FOUND', `no process VM ${vmId}`));
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#vms.values()].map((vm) => this.#finish(vm)));
    process.off('exit', this.#onExit);
  }

  // --- boot ----------------------------------------------------------------------------

  async #boot(boot: VmBoot): Promise<DomainExecution> {
    if (this.#closed) throw new TrustlaunchError('UNAVAILABLE', 'the process VM backend is closed');
    const vmId = boot.capability.vmId;
    if (this.#vms.has(vmId)) throw new TrustlaunchError('CONFLICT', `VM ${vmId} already runs`);
    if (boot.initrd !== undefined || boot.cmdline !== undefined) {
      throw new TrustlaunchError('UNSUPPORTED', 'the process backend runs one guest program; a kernel bundle (initrd, cmdline) needs the qemu backend');
    }
    const setup = parseGuestSetup(boot.guest);
    const declaredBytes = boot.capability.memory.size;
    const chargedBytes = this.#ledger.charge(vmId, declaredBytes);
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
      const port = await this.#ports.allocate(dir);
      undo.push(() => this.#ports.release(port));
      this.#dir.writeRecord(dir, { ...record, sshPort: port });
      const guest = await ProcessVm.spawn({ boot, marker: record.marker, dir: dir.path, tmp: dir.tmp, nodeExecutable: this.#nodeExecutable, consoleBytes: this.#consoleBytes });
      undo.push(() => guest.stop(0));
      this.#dir.writeRecord(dir, { ...record, sshPort: port, guest: guest.guest });
      boot.sendToGuest(configMessage(setup, port));
      // The domain was destroyed while we were starting it: nothing will ever call stop.
      if (boot.capability.channel.closed) throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vmId} was destroyed while it booted`);
      const vm: RunningVm = { vmId, name: boot.name, declaredBytes, chargedBytes, port, dir, process: guest, finished: undefined };
      this.#vms.set(vmId, vm);
      // A guest that ends on its own is cleaned up now; a failure shows when stop() is awaited.
      void guest.exited.then(() => this.#finish(vm)).catch(() => undefined);
      return { stop: () => this.#finish(vm), exited: guest.exited };
    } catch (e) {
      for (const step of undo.reverse()) await step();
      throw e;
    }
  }

  /** Stops the VM for certain and gives back its port, directory and memory; idempotent. */
  #finish(vm: RunningVm): Promise<void> {
    vm.finished ??= (async () => {
      const result = await vm.process.stop(this.#stopGraceMs);
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
    this.#consoles.set(vm.vmId, vm.process.console.text());
    for (const id of this.#consoles.keys()) {
      if (this.#consoles.size <= FINISHED_CONSOLES) break;
      this.#consoles.delete(id);
    }
  }

  /** process.on('exit'): synchronous, best effort; the guests also stop when their channel closes. */
  #killAllNow(): void {
    for (const vm of this.#vms.values()) {
      killNow(vm.process.identity);
      this.#ports.release(vm.port);
      rmSync(vm.dir.path, { recursive: true, force: true });
    }
  }
}

/** Opens the process VM backend (reaping leftovers of dead node processes first). */
export function openProcessVmBackend(options: ProcessVmBackendOptions = {}): Promise<ProcessVmBackend> {
  return ProcessVmBackend.open(options);
}
