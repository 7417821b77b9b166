// The trusted hypervisor (DESIGN.md §3.1): domains and their lifecycle, the requests
// domains make through their capabilities (each checked against the caller's role), the
// launch gate's steps, and the mediated auth device (VMs: vms.ts; the domain table: domains.ts). The instance never
// leaves this directory: the node gets a HypervisorNode, dom0 a Dom0Capability, the
// mini-domain and VMs their own capabilities (capability-factory.ts).
import { TrustlaunchError } from '../../protocol/errors.js';
import { PLATFORM_PCRS } from '../../protocol/pcrs.js';
import type { AuthDevice } from '../../tpm/auth-device.js';
import type { BlockMedium } from '../../tpm/nvstore/medium.js';
import type { DeviceDmaRequest, DeviceInfo, MiniDomainDevice, MiniDomainEntry, MiniDomainLaunch, VmRunner } from './capabilities.js';
import { makeMiniDomainCapability, makeVmCapability } from './capability-factory.js';
import type { DeviceSlot, PcrHolder } from './device-slot.js';
import { NvStoreDeviceModel } from './devices/nvstore.js';
import type { PlatformPcrBank } from './devices/platform-pcrs.js';
import { DOMID_HARDWARE, DOMID_IO, type DomainId, type DomainRole, type DomainState } from './domain-id.js';
import type { DmaResult, PagePermission } from './iommu.js';
import { assignmentDenied } from './iommu.js';
import { type InvariantInput, assertInvariants } from './invariants.js';
import { DomainTable, type DomainRecord } from './domains.js';
import { launchThroughGate, type GateHost, type GateStep } from './launch-gate.js';
import type { LaunchPolicy } from './launch-policy.js';
import type { MeasuredBoot, RemeasureOutcome } from './measured-boot.js';
import { MediatedAuthDevice } from './mediation/device-handle.js';
import { AuthDeviceModel } from './mediation/device-model.js';
import type { DeviceCall } from './mediation/mailbox-codec.js';
import type { DomainMemory } from './memory.js';
import type { MmioAccess } from './mmio.js';
import { authDeviceSpec, formatBdf, formatSourceId, parseBdf, sourceId, PciTopology, type PciDeviceSpec, type SourceId } from './pci.js';
import { Platform } from './platform.js';
import type { SecurityEventLog } from './security-events.js';
import { VmReportInbox } from './vm-reports.js';
import { VmManager } from './vms.js';
import { PAGE_SIZE } from './vtd/structures.js';

export interface HypervisorLimits {
  readonly maxMiniDomainImageBytes: number;
  readonly maxVmImageBytes: number;
  readonly maxVmMemoryBytes: number;
  readonly maxVms: number;
  readonly hostMemoryBytes: number;
  readonly dom0MemoryBytes: number;
  /** Size of each of the mini-domain's two device buffers (command, response). */
  readonly mailboxBytes: number;
  readonly faultThreshold: number;
  readonly faultLogCapacity: number;
  readonly securityLogCapacity: number;
  /** A mini-domain that does not kick its watchdog for this long is destroyed as hung (Xen's SCHEDOP_watchdog). */
  readonly miniDomainWatchdogMs: number;
  /** Largest single pci-nvstore transfer, in blocks. */
  readonly nvstoreMaxBlocks: number;
}

export const DEFAULT_LIMITS: HypervisorLimits = Object.freeze({
  maxMiniDomainImageBytes: 64 * 1024 * 1024,
  maxVmImageBytes: 512 * 1024 * 1024,
  maxVmMemoryBytes: 1024 * 1024 * 1024,
  maxVms: 64,
  hostMemoryBytes: 16 * 1024 * 1024 * 1024,
  dom0MemoryBytes: 4 * 1024 * 1024,
  mailboxBytes: 64 * 1024,
  faultThreshold: 16,
  faultLogCapacity: 256,
  securityLogCapacity: 4096,
  miniDomainWatchdogMs: 60_000,
  nvstoreMaxBlocks: 128,
});

/** The auth device as the hypervisor holds it: a TPM-like device, or the storage-only pci-nvstore with the hypervisor's PCR bank. */
export type HeldAuthDevice =
  | { readonly kind: 'tpm'; readonly slot: DeviceSlot<AuthDevice> }
  | { readonly kind: 'pci-nvstore'; readonly medium: BlockMedium; readonly pcrs: PlatformPcrBank; readonly slot: DeviceSlot<PlatformPcrBank> };

/** Why a mini-domain ended: dom0 stopped it, its code died, or its watchdog expired. */
export type MiniDomainExit = { readonly kind: 'stopped' | 'crashed' | 'hung'; readonly reason: string; readonly domainId: DomainId };

export interface HypervisorParts {
  /** Whatever keeps the platform PCRs (the device, or the hypervisor's bank for pci-nvstore). */
  readonly slot: DeviceSlot<PcrHolder>;
  readonly device: HeldAuthDevice;
  readonly measured: MeasuredBoot;
  readonly policy: LaunchPolicy;
  readonly events: SecurityEventLog;
  readonly limits: HypervisorLimits;
  readonly platformDevices: readonly PciDeviceSpec[];
  readonly miniDomain: MiniDomainEntry | undefined;
  readonly vmRunner: VmRunner | undefined;
  readonly clock: () => Date;
  readonly trace: ((step: GateStep, domainId: DomainId) => void) | undefined;
  readonly onMiniDomainExit: ((exit: MiniDomainExit) => void) | undefined;
}

interface MiniDomainRecord extends DomainRecord {
  readonly role: 'minidomain';
  launch: MiniDomainLaunch | undefined;
  readonly mailbox: { readonly command: number; readonly response: number };
}

export class Hypervisor {
  readonly platform: Platform;
  readonly policy: LaunchPolicy;
  readonly events: SecurityEventLog;
  readonly measured: MeasuredBoot;
  readonly authSid: SourceId;
  readonly reports = new VmReportInbox();
  readonly #parts: HypervisorParts;
  readonly #limits: HypervisorLimits;
  readonly #authBase: number;
  readonly #authModel: AuthDeviceModel | NvStoreDeviceModel;
  readonly domains: DomainTable;
  readonly vms: VmManager;
  #mini: MiniDomainRecord | undefined;
  #launches = 0;
  #watchdog: NodeJS.Timeout | undefined;
  #shuttingDown = false;

  constructor(parts: HypervisorParts) {
    this.#parts = parts;
    this.#limits = parts.limits;
    this.policy = parts.policy;
    this.events = parts.events;
    this.measured = parts.measured;
    const authSpec = authDeviceSpec(parts.slot.kind);
    const topology = new PciTopology([...parts.platformDevices, authSpec]);
    this.platform = new Platform({
      topology,
      events: parts.events,
      maxFrames: Math.floor(this.#limits.hostMemoryBytes / PAGE_SIZE),
      faultThreshold: this.#limits.faultThreshold,
      faultLogCapacity: this.#limits.faultLogCapacity,
    });
    this.authSid = sourceId(parseBdf(authSpec.bdf));
    this.#authBase = (authSpec.bars[0] as { base: number }).base;
    const held = parts.device;
    this.#authModel =
      held.kind === 'tpm'
        ? new AuthDeviceModel({
            sid: this.authSid,
            slot: held.slot,
            maxMessageBytes: this.#limits.mailboxBytes,
            dma: (t) => this.platform.dma(t),
            screen: (call) => this.#screen(call),
            powerOn: () => this.#devicePowerOn(),
          })
        : new NvStoreDeviceModel({ sid: this.authSid, medium: held.medium, maxBlocks: this.#limits.nvstoreMaxBlocks, dma: (t) => this.platform.dma(t) });
    this.platform.mmio.attach(this.authSid, this.#authModel);
    this.domains = new DomainTable(this.platform);
    this.vms = new VmManager({
      domains: this.domains,
      events: this.events,
      reports: this.reports,
      limits: this.#limits,
      runner: parts.vmRunner,
      clock: parts.clock,
      destroy: (d, reason) => this.#destroy(d, reason),
      watch: (d) => this.#watch(d),
      capability: (vmId, channel) => makeVmCapability(this, vmId, channel),
    });

    // dom0: its memory identity-mapped in its I/O page table, then its devices.
    const dom0 = this.domains.create('hardware', 'dom0', pagesFor(this.#limits.dom0MemoryBytes), DOMID_HARDWARE);
    for (let gfn = 0; gfn < dom0.memory.pages; gfn++) this.platform.map(DOMID_HARDWARE, gfn, dom0.memory.hfn(gfn) as number, { r: true, w: true });
    dom0.state = 'running';
    for (const d of topology.devices()) {
      if (d.initialOwner === 'hardware-domain' && this.platform.ownerOf(d.sid) === DOMID_IO) this.platform.assign(d.sid, DOMID_HARDWARE, null);
    }
  }

  get nodeId(): string {
    return this.policy.nodeId;
  }

  get deviceKind(): DeviceSlot['kind'] {
    return this.#parts.slot.kind;
  }

  get deviceDescription(): string {
    return this.#parts.slot.description;
  }

  // --- requests from domains ---------------------------------------------------------

  /** A running domain's record, or DOMAIN_STATE_INVALID (a stale capability of a destroyed domain). */
  live(id: DomainId): DomainRecord {
    return this.domains.live(id);
  }

  /** dom0 passes a device group to a VM. The auth device's group is reserved for the launch gate. */
  assignDevice(actor: DomainId, bdf: string, target: DomainId): void {
    const sid = sourceId(parseBdf(bdf));
    this.#checkNotReserved(actor, sid);
    if (target === actor) this.#deny(actor, assignmentDenied(sid, 'requester-is-target', `domain ${actor} cannot assign a device to itself`));
    const t = this.domains.get(target);
    if (t?.role !== 'vm' || t.state === 'destroyed') this.#deny(actor, assignmentDenied(sid, 'target-not-a-live-domain', `domain ${target} is not a live VM`));
    this.platform.assign(sid, target, actor);
  }

  /** dom0 returns a device group (its own or a VM's) to quarantine. */
  deassignDevice(actor: DomainId, bdf: string): void {
    const sid = sourceId(parseBdf(bdf));
    this.#checkNotReserved(actor, sid);
    this.platform.deassign(sid, actor);
  }

  /** Maps IOVA page `iovaPfn` of the actor's table to the actor's own guest page `gfn`. */
  map(actor: DomainId, iovaPfn: number, gfn: number, perm: PagePermission): void {
    const d = this.live(actor);
    const hfn = Number.isSafeInteger(gfn) ? d.memory.hfn(gfn) : undefined;
    if (hfn === undefined) {
      const e = new TrustlaunchError('IOMMU_MAP_DENIED', `guest page ${gfn} is outside domain ${actor}'s memory`, { detail: { domain: actor, gfn } });
      this.events.record('IOMMU_MAP_DENIED', actor, { message: e.message, reason: 'gfn-outside-domain' });
      throw e;
    }
    this.platform.map(actor, iovaPfn, hfn, { r: perm.r === true, w: perm.w === true });
  }

  unmap(actor: DomainId, iovaPfn: number): void {
    this.live(actor);
    this.platform.unmap(actor, iovaPfn);
  }

  mmio(actor: DomainId, access: MmioAccess): number {
    this.live(actor);
    return this.platform.mmioAccess(actor, access);
  }

  /** The actor programs a device it owns; programming another's device means touching its registers: MMIO_DENIED. */
  dma(actor: DomainId, bdf: string, req: DeviceDmaRequest): DmaResult {
    this.live(actor);
    const device = this.platform.topology.device(sourceId(parseBdf(bdf)));
    if (device === undefined || this.platform.ownerOf(device.sid) !== actor) {
      this.events.record('MMIO_DENIED', actor, { bdf, reason: 'device-not-owned', kind: 'dma-program' });
      throw new TrustlaunchError('MMIO_DENIED', `domain ${actor} does not own ${bdf}`, { detail: { domain: actor, bdf } });
    }
    const at = req.at === undefined ? {} : { at: req.at };
    return this.platform.dma(req.kind === 'write' ? { sid: device.sid, address: req.address, kind: 'write', data: req.data ?? new Uint8Array(0), ...at } : { sid: device.sid, address: req.address, kind: 'read', length: req.length ?? 0, ...at });
  }

  readMemory(actor: DomainId, gpa: number, length: number): Uint8Array {
    return this.live(actor).memory.read(gpa, length);
  }

  writeMemory(actor: DomainId, gpa: number, bytes: Uint8Array): void {
    this.live(actor).memory.write(gpa, bytes);
  }

  memorySize(actor: DomainId): number {
    return this.live(actor).memory.size;
  }

  devices(): DeviceInfo[] {
    return this.platform.topology.devices().map((d) => ({ bdf: formatBdf(d.bdf), name: d.name, class: d.class, group: d.group, bars: d.bars, owner: this.platform.ownerOf(d.sid) }));
  }

  // --- the mini-domain -------------------------------------------------------------

  launchMiniDomain(image: Uint8Array | ArrayBuffer): Promise<MiniDomainLaunch> {
    return launchThroughGate(this.#gateHost(), image);
  }

  async stopMiniDomain(reason = 'stopped by dom0'): Promise<void> {
    const mini = this.#mini;
    if (mini === undefined) return;
    await this.#destroy(mini, reason, 'MINIDOMAIN_STOPPED');
  }

  /** The mini-domain's code died: quarantine the device at once; VMs keep running (G6). */
  async miniDomainCrashed(reason: string): Promise<void> {
    const mini = this.#mini;
    if (mini?.state !== 'running') return;
    await this.#destroy(mini, reason, 'MINIDOMAIN_CRASHED');
  }

  miniDomainStatus(): { state: DomainState | 'absent'; domainId: DomainId | null; launches: number } {
    const m = this.#mini;
    return { state: m?.state ?? 'absent', domainId: m?.id ?? null, launches: this.#launches };
  }

  // --- measurements and status -------------------------------------------------------

  async remeasure(): Promise<RemeasureOutcome> {
    const outcome = await this.measured.remeasure();
    if (outcome === 'replayed') this.events.record('PCRS_REMEASURED', null, { events: this.measured.length });
    if (outcome === 'unexpected') this.events.record('PCR_STATE_UNEXPECTED', null, { events: this.measured.length });
    return outcome;
  }

  domainViews(): { id: DomainId; role: DomainRole; state: DomainState; name: string }[] {
    return this.domains.values().map((d) => ({ id: d.id, role: d.role, state: d.state, name: d.name }));
  }

  invariantInput(): InvariantInput {
    return { platform: this.platform.snapshot(), devices: this.platform.topology.devices(), domains: this.domainViews(), authSid: this.authSid };
  }

  checkInvariants(): void {
    assertInvariants(this.invariantInput());
  }

  async shutdown(): Promise<void> {
    this.#shuttingDown = true;
    for (const d of this.domains.values()) if (d.role !== 'hardware') await this.#destroy(d, 'node shutdown');
    const dom0 = this.domains.get(DOMID_HARDWARE);
    if (dom0 !== undefined) await this.#destroy(dom0, 'node shutdown');
    await this.#parts.slot.run((d) => d.powerOff());
    if (this.#authModel instanceof NvStoreDeviceModel) await this.#authModel.close();
  }

  /** The mini-domain's watchdog kick (SCHEDOP_watchdog). */
  kickWatchdog(domainId: DomainId): void {
    const mini = this.live(domainId);
    if (mini.role !== 'minidomain') return;
    clearTimeout(this.#watchdog);
    this.#watchdog = setTimeout(() => {
      if (this.#mini === mini && mini.state === 'running') void this.#destroy(mini, `no watchdog kick for ${this.#limits.miniDomainWatchdogMs} ms`, 'MINIDOMAIN_CRASHED', 'hung');
    }, this.#limits.miniDomainWatchdogMs);
    this.#watchdog.unref();
  }

  // --- internals -----------------------------------------------------------------------

  /** Tears the domain down (DomainTable.teardown), then its role's cleanup, then stops its code. */
  async #destroy(d: DomainRecord, reason: string, kind?: 'MINIDOMAIN_STOPPED' | 'MINIDOMAIN_CRASHED', exit: MiniDomainExit['kind'] = kind === 'MINIDOMAIN_STOPPED' ? 'stopped' : 'crashed'): Promise<void> {
    if (!this.domains.teardown(d)) return;
    this.vms.destroyed(d);
    const wasLaunched = d.role === 'minidomain' && (d as MiniDomainRecord).launch !== undefined && kind !== undefined;
    if (d.role === 'minidomain') {
      if (this.#mini === d) {
        this.#mini = undefined;
        clearTimeout(this.#watchdog);
        this.reports.unsubscribeAll();
      }
      if (kind !== undefined) this.events.record(kind, d.id, { reason: reason.slice(0, 200), ...(exit === 'hung' ? { watchdog: true } : {}) });
    }
    const execution = d.execution;
    d.execution = undefined;
    // The domain is already isolated; a runner that fails to stop cannot undo that.
    if (execution !== undefined) await execution.stop().catch(() => undefined);
    // Tell the node (after the device is quarantined and the code stopped) so it can hand the image over again.
    if (wasLaunched && !this.#shuttingDown) this.#parts.onMiniDomainExit?.({ kind: exit, reason, domainId: d.id });
  }

  #watch(d: DomainRecord): void {
    const exited = d.execution?.exited;
    if (exited === undefined) return;
    const onExit = (why: string): void => {
      if (d.state !== 'running') return;
      void (d.role === 'minidomain' ? this.#destroy(d, why, 'MINIDOMAIN_CRASHED') : this.#destroy(d, why));
    };
    exited.then(
      () => onExit('exited'),
      (e: unknown) => onExit(e instanceof Error ? e.message : String(e)),
    );
  }

  #deny(actor: DomainId, e: TrustlaunchError): never {
    this.events.record('ASSIGNMENT_DENIED', actor, { message: e.message, reason: typeof e.detail?.['reason'] === 'string' ? e.detail['reason'] : '' });
    throw e;
  }

  #checkNotReserved(actor: DomainId, sid: SourceId): void {
    if (this.platform.topology.groupOf(sid).some((d) => d.sid === this.authSid)) {
      this.#deny(actor, assignmentDenied(sid, 'reserved-device', 'the auth device moves only through the launch gate'));
    }
  }

  #gateHost(): GateHost {
    return {
      policy: this.policy,
      stage: (image) => this.#stage(image),
      measure: async (domainId, digest) => {
        const launch = ++this.#launches;
        await this.measured.measureMiniDomain(digest, launch);
        const mini = this.domains.get(domainId) as MiniDomainRecord;
        mini.launch = Object.freeze({ domainId, digest, launch });
        return mini.launch;
      },
      assignDevice: (domainId) => {
        const mini = this.live(domainId) as MiniDomainRecord;
        mini.state = 'running';
        const pages = this.#limits.mailboxBytes / PAGE_SIZE;
        for (const base of [mini.mailbox.command, mini.mailbox.response]) {
          for (let i = 0; i < pages; i++) {
            const gfn = base / PAGE_SIZE + i;
            this.platform.map(domainId, gfn, mini.memory.hfn(gfn) as number, { r: true, w: true });
          }
        }
        this.platform.assign(this.authSid, domainId, null);
      },
      start: (domainId, imageBytes) => this.#startMiniDomain(domainId, imageBytes),
      destroy: (domainId, reason) => {
        const d = this.domains.get(domainId);
        return d === undefined ? Promise.resolve() : this.#destroy(d, reason);
      },
      refused: (domainId, expected, actual) => this.events.record('LAUNCH_DIGEST_MISMATCH', domainId, { expected, actual }),
      trace: (step, domainId) => this.#parts.trace?.(step, domainId),
    };
  }

  #stage(image: Uint8Array | ArrayBuffer): { domainId: DomainId; memory: DomainMemory; imageBytes: number } {
    if (!(image instanceof Uint8Array) && !(image instanceof ArrayBuffer)) throw new TypeError('the mini-domain image is a Uint8Array (copied) or an ArrayBuffer (transferred)');
    if (this.#mini !== undefined) throw new TrustlaunchError('DOMAIN_STATE_INVALID', `a mini-domain (${this.#mini.id}) is ${this.#mini.state}; stop it first`);
    if (image.byteLength > this.#limits.maxMiniDomainImageBytes) throw new TrustlaunchError('BODY_TOO_LARGE', `a mini-domain image has at most ${this.#limits.maxMiniDomainImageBytes} bytes`);
    const imagePages = pagesFor(image.byteLength);
    const mailboxPages = this.#limits.mailboxBytes / PAGE_SIZE;
    const base = this.domains.create('minidomain', 'minidomain', imagePages + 2 * mailboxPages);
    const mini: MiniDomainRecord = Object.assign(base, {
      role: 'minidomain' as const,
      launch: undefined,
      mailbox: { command: imagePages * PAGE_SIZE, response: (imagePages + mailboxPages) * PAGE_SIZE },
    });
    this.#mini = mini;
    const imageBytes = mini.memory.load(image);
    return { domainId: mini.id, memory: mini.memory, imageBytes };
  }

  async #startMiniDomain(domainId: DomainId, imageBytes: number): Promise<void> {
    const mini = this.live(domainId) as MiniDomainRecord;
    const launch = mini.launch as MiniDomainLaunch;
    const device = this.#miniDomainDevice(mini);
    this.events.record('MINIDOMAIN_LAUNCHED', domainId, { digest: launch.digest, launch: launch.launch });
    this.kickWatchdog(domainId);
    const entry = this.#parts.miniDomain;
    if (entry === undefined) return;
    const capability = makeMiniDomainCapability(this, domainId, device, launch);
    mini.execution = await entry({ capability, image: mini.memory.view(0, imageBytes) });
    this.#watch(mini);
  }

  /** What the mini-domain drives: the mediated TPM, or the pci-nvstore's registers, its DMA window and the platform PCRs. */
  #miniDomainDevice(mini: MiniDomainRecord): MiniDomainDevice {
    const domainId = mini.id;
    const model = this.#authModel;
    const held = this.#parts.device;
    if (held.kind === 'tpm') {
      const device = new MediatedAuthDevice({
        domainId,
        kind: held.slot.kind,
        description: held.slot.description,
        mmioBase: this.#authBase,
        commandBuffer: mini.mailbox.command,
        responseBuffer: mini.mailbox.response,
        bufferBytes: this.#limits.mailboxBytes,
        isRunning: () => mini.state === 'running',
        readMemory: (gpa, length) => mini.memory.read(gpa, length),
        writeMemory: (gpa, bytes) => mini.memory.write(gpa, bytes),
        mmio: (access) => this.platform.mmioAccess(domainId, access),
        completion: () => model.completion(),
      });
      return Object.freeze({ kind: 'tpm', device });
    }
    const refuse = (why: string): never => {
      this.events.record('CAPABILITY_DENIED', domainId, { method: 'pcrExtend', reason: why });
      throw new TrustlaunchError('CAPABILITY_DENIED', `the mini-domain may not ${why}`);
    };
    return Object.freeze({
      kind: 'pci-nvstore',
      bdf: formatSourceId(this.authSid),
      mmioBase: this.#authBase,
      // The two mailbox buffers are adjacent and mapped for DMA: one window.
      dmaWindow: Object.freeze({ gpa: mini.mailbox.command, bytes: 2 * this.#limits.mailboxBytes }),
      completion: () => model.completion(),
      pcrs: Object.freeze({
        read: (pcrs: readonly number[]) => {
          this.live(domainId);
          return held.pcrs.readNow(pcrs);
        },
        extend: (pcr: number, digest: Uint8Array) => {
          this.live(domainId);
          held.pcrs.extendByMiniDomain(pcr, digest, refuse);
        },
      }),
    });
  }

  /** The hypervisor's rules on what the mini-domain may ask of the device. */
  #screen(call: DeviceCall): void {
    const owner = this.platform.ownerOf(this.authSid);
    const refuse = (why: string): never => {
      this.events.record('CAPABILITY_DENIED', owner, { method: call.method, reason: why });
      throw new TrustlaunchError('CAPABILITY_DENIED', `the mini-domain may not ${why}`);
    };
    if (call.method === 'powerOff') refuse('power the device off (the hypervisor owns its power)');
    if (call.method === 'pcrExtend' && PLATFORM_PCRS.includes(call.args[0] as number)) refuse(`extend PCR ${String(call.args[0])} (measured by the hypervisor)`);
  }

  async #devicePowerOn(): Promise<void> {
    await this.#parts.slot.run((d) => d.powerOn());
    await this.remeasure();
  }
}

function pagesFor(bytes: number): number {
  return Math.ceil(bytes / PAGE_SIZE);
}

