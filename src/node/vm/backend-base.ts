// What the process and QEMU backends share (VmBackend, backend.ts): the runtime directory
// and its reaper, the port allocator, the memory ledger, the table of running VMs and the
// consoles of ended ones, the node-facing views, and the skeleton of a boot — check,
// charge, record, the backend's own steps, registration — in which every resource a step
// took is given back if a later one fails. Each backend adds its steps (`start`).
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { DomainExecution, DomainId, VmBoot } from '../hypervisor/index.js';
import type { VmBackend, VmCapacity, VmEndpoint, VmUsage } from './backend.js';
import type { ChannelStats } from './channel-bridge.js';
import type { MemoryLedger } from './memory-ledger.js';
import { killNow, ownStartTime, residentBytes, vmProcesses } from './proc.js';
import { PortAllocator, type PortRange } from './ports.js';
import type { ReapedVm } from './reaper.js';
import type { RuntimeDir, VmDir, VmRecord } from './runtime-dir.js';
import type { GuestEvent, Timeline } from './timeline.js';
import type { VmProcess } from './vm-process.js';

/** A VM a backend runs. */
export interface RunningVm<V extends VmProcess> {
  readonly vmId: DomainId;
  readonly name: string;
  readonly declaredBytes: number;
  readonly chargedBytes: number;
  readonly port: number;
  readonly dir: VmDir;
  readonly vm: V;
}

/** What a backend's own boot steps get: the VM's record and directory, and where to leave an undo step. */
export interface BootContext {
  readonly record: VmRecord;
  readonly dir: VmDir;
  readonly chargedBytes: number;
  /** Registers a step that gives back what the caller just took, if a later step fails. */
  readonly undo: (step: () => unknown) => void;
}

export interface BackendBaseOptions {
  readonly ports?: PortRange | undefined;
  readonly ledger: MemoryLedger;
  /** Charged per VM on top of its declared memory (QEMU's own). */
  readonly overheadBytes: number;
  readonly stopGraceMs: number;
  /** Names the backend in errors ("process", "QEMU"). */
  readonly label: string;
}

const FINISHED_CONSOLES = 32;

/** What a backend's checks made of a boot request, before anything is taken. */
export interface Prepared {
  /** Memory the VM declared (the hypervisor's `memoryBytes`). */
  readonly declaredBytes: number;
}

export abstract class VmBackendBase<V extends VmProcess, R extends RunningVm<V>, P extends Prepared> implements VmBackend {
  abstract readonly kind: 'process' | 'qemu';
  readonly runner: (boot: VmBoot) => Promise<DomainExecution>;
  /** What the reaper found when this backend opened its runtime directory. */
  readonly reaped: readonly ReapedVm[];
  protected readonly dir: RuntimeDir;
  protected readonly ports: PortAllocator;
  protected readonly vms = new Map<DomainId, R>();
  readonly #ledger: MemoryLedger;
  readonly #overheadBytes: number;
  readonly #stopGraceMs: number;
  readonly #label: string;
  readonly #owner: { readonly pid: number; readonly startTime: string };
  readonly #consoles = new Map<DomainId, string>();
  /** Each VM's stopping, once begun (by the VM itself ending, dom0, or close). */
  readonly #finished = new WeakMap<R, Promise<void>>();
  readonly #onExit = (): void => this.#killAllNow();
  #closed = false;

  protected constructor(dir: RuntimeDir, reaped: ReapedVm[], o: BackendBaseOptions) {
    this.dir = dir;
    this.reaped = Object.freeze(reaped);
    this.ports = new PortAllocator(dir, o.ports);
    this.#ledger = o.ledger;
    this.#overheadBytes = o.overheadBytes;
    this.#stopGraceMs = o.stopGraceMs;
    this.#label = o.label;
    this.#owner = { pid: process.pid, startTime: ownStartTime() };
    this.runner = (boot) => this.#boot(boot);
    process.on('exit', this.#onExit);
  }

  get runtimeRoot(): string {
    return this.dir.root;
  }

  admit(memoryBytes: number): void {
    this.#ledger.admit(memoryBytes + this.#overheadBytes);
  }

  capacity(): VmCapacity {
    const { capacityBytes, chargedBytes, vms } = this.#ledger;
    return { capacityBytes, chargedBytes, availableBytes: capacityBytes - chargedBytes, vms };
  }

  usage(): VmUsage[] {
    return [...this.vms.values()].map((r) => ({
      vmId: r.vmId,
      name: r.name,
      declaredBytes: r.declaredBytes,
      chargedBytes: r.chargedBytes,
      residentBytes: residentBytes(vmProcesses(r.vm.identity)),
    }));
  }

  endpoint(vmId: DomainId): VmEndpoint | undefined {
    const r = this.vms.get(vmId);
    return r === undefined ? undefined : { vmId, name: r.name, host: '127.0.0.1', sshPort: r.port };
  }

  console(vmId: DomainId): string | undefined {
    return this.vms.get(vmId)?.vm.console.text() ?? this.#consoles.get(vmId);
  }

  timeline(vmId: DomainId): Timeline | undefined {
    return this.vms.get(vmId)?.vm.timeline();
  }

  channelStats(vmId: DomainId): ChannelStats | undefined {
    return this.vms.get(vmId)?.vm.channelStats();
  }

  /** Resolves (ms after the VM's process was spawned) when `event` happened; TIMEOUT, VM_BOOT_FAILED (it ended), NOT_FOUND. */
  waitForGuest(vmId: DomainId, event: GuestEvent, timeoutMs: number): Promise<number> {
    const r = this.vms.get(vmId);
    if (r !== undefined) return r.vm.waitFor(event, timeoutMs);
    if (this.#consoles.has(vmId)) return Promise.reject(new TrustlaunchError('VM_BOOT_FAILED', `${this.#label} VM ${vmId} has ended`));
    return Promise.reject(new TrustlaunchError('NOT_FOUND', `no ${this.#label} VM ${vmId}`));
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.vms.values()].map((r) => this.#finish(r)));
    process.off('exit', this.#onExit);
  }

  /** The backend's checks of a boot request (MALFORMED_REQUEST, UNSUPPORTED…), before anything is taken. */
  protected abstract prepare(boot: VmBoot): P;

  /**
   * The backend's own boot steps, after the VM is charged and has its directory and record:
   * returns the running VM (its port and process). Undo steps run in reverse on failure.
   */
  protected abstract start(boot: VmBoot, prepared: P, ctx: BootContext): Promise<R>;

  async #boot(boot: VmBoot): Promise<DomainExecution> {
    if (this.#closed) throw new TrustlaunchError('UNAVAILABLE', `the ${this.#label} VM backend is closed`);
    const vmId = boot.capability.vmId;
    if (this.vms.has(vmId)) throw new TrustlaunchError('CONFLICT', `VM ${vmId} already runs`);
    const prepared = this.prepare(boot);
    const chargedBytes = this.#ledger.charge(vmId, prepared.declaredBytes + this.#overheadBytes);
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
      const dir = this.dir.createVm(record);
      undo.push(() => this.dir.removeVm(dir));
      const r = await this.start(boot, prepared, { record, dir, chargedBytes, undo: (step) => undo.push(step) });
      this.dir.writeRecord(dir, { ...record, sshPort: r.port, guest: r.vm.process });
      // The domain was destroyed while we were starting it: nothing will ever call stop.
      if (boot.capability.channel.closed) throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vmId} was destroyed while it booted`);
      this.vms.set(vmId, r);
      // A VM that ends on its own is cleaned up now; a failure shows when stop() is awaited.
      void r.vm.exited.then(() => this.#finish(r)).catch(() => undefined);
      return { stop: () => this.#finish(r), exited: r.vm.exited };
    } catch (e) {
      for (const step of undo.reverse()) await step();
      throw e;
    }
  }

  /** Stops the VM for certain and gives back its port, directory and memory; idempotent. */
  #finish(r: R): Promise<void> {
    let finished = this.#finished.get(r);
    if (finished !== undefined) return finished;
    finished = (async () => {
      const result = await r.vm.stop(this.#stopGraceMs);
      this.#keepConsole(r);
      this.vms.delete(r.vmId);
      this.#ledger.release(r.vmId);
      if (result.survivors.length > 0) {
        // Keep the record: a later reaper (after this node process ends) tries again.
        throw new Error(`VM ${r.vmId}: ${result.survivors.length} process(es) survived SIGKILL: ${result.survivors.map((p) => p.pid).join(', ')}`);
      }
      this.ports.release(r.port);
      this.dir.removeVm(r.dir);
    })();
    this.#finished.set(r, finished);
    return finished;
  }

  #keepConsole(r: R): void {
    this.#consoles.set(r.vmId, r.vm.console.text());
    for (const id of this.#consoles.keys()) {
      if (this.#consoles.size <= FINISHED_CONSOLES) break;
      this.#consoles.delete(id);
    }
  }

  /** process.on('exit'): synchronous, best effort (QEMU also has the parent-death signal; process guests stop when their channel closes). */
  #killAllNow(): void {
    for (const r of this.vms.values()) {
      killNow(r.vm.identity);
      this.ports.release(r.port);
      rmSync(r.dir.path, { recursive: true, force: true });
    }
  }
}
