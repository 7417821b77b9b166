// The trusted hypervisor (DESIGN.md §3.1): domains and their lifecycle, the requests
// domains make through their capabilities (each checked against the caller's role), the
// launch gate's steps, VM building, and the mediated auth device. The instance never
// leaves this directory: the node gets a HypervisorNode, dom0 a Dom0Capability, the
// mini-domain and VMs their own capabilities (capability-factory.ts).
import { TrustlaunchError } from '../../protocol/errors.js';
import type { Digest } from '../../protocol/digest.js';
import { IdSchema, SshPublicKeySchema } from '../../protocol/messages.js';
import { PLATFORM_PCRS } from '../../protocol/pcrs.js';
import type { DeviceDmaRequest, DeviceInfo, DomainExecution, MiniDomainEntry, MiniDomainLaunch, VmBuildRequest, VmInfo, VmRunner } from './capabilities.js';
import { makeMiniDomainCapability, makeVmCapability } from './capability-factory.js';
import type { DeviceSlot } from './device-slot.js';
import { DOMID_HARDWARE, DOMID_IO, type DomainId, type DomainRole, type DomainState } from './domain-id.js';
import type { DmaResult, PagePermission } from './iommu.js';
import { assignmentDenied } from './iommu.js';
import { type InvariantInput, assertInvariants } from './invariants.js';
import { hashTheCopy, launchThroughGate, type GateHost, type GateStep } from './launch-gate.js';
import type { LaunchPolicy } from './launch-policy.js';
import type { MeasuredBoot, RemeasureOutcome } from './measured-boot.js';
import { MediatedAuthDevice } from './mediation/device-handle.js';
import { AuthDeviceModel } from './mediation/device-model.js';
import type { DeviceCall } from './mediation/mailbox-codec.js';
import { DomainMemory } from './memory.js';
import type { MmioAccess } from './mmio.js';
import { authDeviceSpec, formatBdf, parseBdf, sourceId, PciTopology, type PciDeviceSpec, type SourceId } from './pci.js';
import { Platform } from './platform.js';
import type { SecurityEventLog } from './security-events.js';
import { createVmChannelPair, type VmChannelEndpoint } from './vm-channel.js';
import { VmReportInbox } from './vm-reports.js';
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
});

export interface HypervisorParts {
  readonly slot: DeviceSlot;
  readonly measured: MeasuredBoot;
  readonly policy: LaunchPolicy;
  readonly events: SecurityEventLog;
  readonly limits: HypervisorLimits;
  readonly platformDevices: readonly PciDeviceSpec[];
  readonly miniDomain: MiniDomainEntry | undefined;
  readonly vmRunner: VmRunner | undefined;
  readonly clock: () => Date;
  readonly trace: ((step: GateStep, domainId: DomainId) => void) | undefined;
}

interface DomainRecord {
  readonly id: DomainId;
  readonly role: DomainRole;
  readonly name: string;
  state: DomainState;
  readonly memory: DomainMemory;
  execution: DomainExecution | undefined;
}

interface MiniDomainRecord extends DomainRecord {
  readonly role: 'minidomain';
  launch: MiniDomainLaunch | undefined;
  readonly mailbox: { readonly command: number; readonly response: number };
}

interface VmRecord extends DomainRecord {
  readonly role: 'vm';
  readonly imageBytes: number;
  kernelDigest: Digest | undefined;
  readonly guest: unknown;
  readonly channel: { readonly hypervisorEnd: VmChannelEndpoint; readonly guestEnd: VmChannelEndpoint };
  sshPort: number | null;
}

const HISTORY = 64;

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
  readonly #authModel: AuthDeviceModel;
  readonly #domains = new Map<DomainId, DomainRecord>();
  readonly #history: DomainRecord[] = [];
  #nextId: DomainId = 1;
  #mini: MiniDomainRecord | undefined;
  #launches = 0;

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
    this.#authModel = new AuthDeviceModel({
      sid: this.authSid,
      slot: parts.slot,
      maxMessageBytes: this.#limits.mailboxBytes,
      dma: (t) => this.platform.dma(t),
      screen: (call) => this.#screen(call),
      powerOn: () => this.#devicePowerOn(),
    });
    this.platform.mmio.attach(this.authSid, this.#authModel);

    // dom0: its memory identity-mapped in its I/O page table, then its devices.
    const dom0 = this.#createDomain('hardware', 'dom0', pagesFor(this.#limits.dom0MemoryBytes), DOMID_HARDWARE);
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
    const d = this.#domains.get(id);
    if (d === undefined || d.state === 'destroyed') throw new TrustlaunchError('DOMAIN_STATE_INVALID', `domain ${id} is destroyed`);
    return d;
  }

  /** dom0 passes a device group to a VM. The auth device's group is reserved for the launch gate. */
  assignDevice(actor: DomainId, bdf: string, target: DomainId): void {
    const sid = sourceId(parseBdf(bdf));
    this.#checkNotReserved(actor, sid);
    if (target === actor) this.#deny(actor, assignmentDenied(sid, 'requester-is-target', `domain ${actor} cannot assign a device to itself`));
    const t = this.#domains.get(target);
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

  launchMiniDomain(image: Uint8Array): Promise<MiniDomainLaunch> {
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

  // --- VMs ---------------------------------------------------------------------------

  async buildVm(req: VmBuildRequest): Promise<VmInfo> {
    if (!IdSchema.safeParse(req.name).success) throw new TrustlaunchError('MALFORMED_REQUEST', 'a VM name is a lowercase DNS label');
    if (!(req.image instanceof Uint8Array)) throw new TypeError('image must be bytes');
    if (req.image.length < 1 || req.image.length > this.#limits.maxVmImageBytes) throw new TrustlaunchError('BODY_TOO_LARGE', `a VM image has 1..${this.#limits.maxVmImageBytes} bytes`);
    const imagePages = pagesFor(req.image.length);
    const memoryBytes = req.memoryBytes ?? imagePages * PAGE_SIZE + 1024 * 1024;
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes < imagePages * PAGE_SIZE || memoryBytes > this.#limits.maxVmMemoryBytes) {
      throw new TrustlaunchError('CAPACITY_EXCEEDED', `VM memory must hold the image and stay within ${this.#limits.maxVmMemoryBytes} bytes`);
    }
    const live = [...this.#domains.values()].filter((d): d is VmRecord => d.role === 'vm' && d.state !== 'destroyed');
    if (live.length >= this.#limits.maxVms) throw new TrustlaunchError('CAPACITY_EXCEEDED', `this node runs at most ${this.#limits.maxVms} VMs`);
    if (live.some((v) => v.name === req.name)) throw new TrustlaunchError('CONFLICT', `a VM named ${req.name} exists`);

    const base = this.#createDomain('vm', req.name, pagesFor(memoryBytes));
    // Copy now, before the first await: dom0's buffer is never read again.
    base.memory.write(0, req.image);
    const vm: VmRecord = Object.assign(base, {
      role: 'vm' as const,
      imageBytes: req.image.length,
      kernelDigest: undefined,
      guest: req.guest,
      channel: createVmChannelPair(),
      sshPort: null,
    });
    this.#domains.set(vm.id, vm);
    vm.channel.hypervisorEnd.onMessage((m) => this.#fromGuest(vm, m));
    try {
      vm.kernelDigest = await hashTheCopy(vm.memory, vm.imageBytes);
    } catch (e) {
      await this.#destroy(vm, 'build failed');
      throw e;
    }
    if (vm.state === 'destroyed') throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vm.id} was destroyed while it was being built`);
    return this.vmInfo(vm.id);
  }

  async startVm(vmId: DomainId): Promise<VmInfo> {
    const vm = this.#vm(vmId);
    if (vm.state !== 'building' || vm.kernelDigest === undefined) throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vmId} is ${vm.state}`);
    vm.state = 'running';
    const runner = this.#parts.vmRunner;
    if (runner !== undefined) {
      try {
        vm.execution = await runner({
          capability: makeVmCapability(this, vm.id, vm.channel.guestEnd),
          name: vm.name,
          image: vm.memory.read(0, vm.imageBytes),
          kernelDigest: vm.kernelDigest,
          guest: vm.guest,
          sendToGuest: (message) => vm.channel.hypervisorEnd.send(message),
        });
      } catch (e) {
        await this.#destroy(vm, 'boot failed');
        throw new TrustlaunchError('VM_BOOT_FAILED', `VM ${vmId} did not boot: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      this.#watch(vm);
    }
    return this.vmInfo(vmId);
  }

  async destroyVm(vmId: DomainId): Promise<void> {
    const vm = this.#vm(vmId);
    if (vm.state === 'destroyed') return;
    await this.#destroy(vm, 'destroyed by dom0');
  }

  vmInfo(vmId: DomainId): VmInfo {
    const vm = this.#vm(vmId);
    if (vm.kernelDigest === undefined) throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vmId} is still being measured`);
    return Object.freeze({
      vmId: vm.id,
      name: vm.name,
      state: vm.state,
      kernelDigest: vm.kernelDigest,
      imageBytes: vm.imageBytes,
      memoryBytes: vm.memory.size,
      hostKeyReported: this.reports.get(vm.id) !== undefined,
      sshPort: vm.sshPort,
    });
  }

  vmInfos(): VmInfo[] {
    return [...this.#domains.values(), ...this.#history].filter((d) => d.role === 'vm' && (d as VmRecord).kernelDigest !== undefined).map((d) => this.vmInfo(d.id));
  }

  sendHostCertificate(vmId: DomainId, certificate: string): void {
    const vm = this.#vm(vmId);
    if (vm.state !== 'running') throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vmId} is ${vm.state}`);
    if (typeof certificate !== 'string' || certificate.length > 16_384) throw new TrustlaunchError('MALFORMED_REQUEST', 'a host certificate is an OpenSSH certificate line');
    vm.channel.hypervisorEnd.send({ v: 1, type: 'host-certificate', certificate });
  }

  // --- measurements and status -------------------------------------------------------

  async remeasure(): Promise<RemeasureOutcome> {
    const outcome = await this.measured.remeasure();
    if (outcome === 'replayed') this.events.record('PCRS_REMEASURED', null, { events: this.measured.length });
    if (outcome === 'unexpected') this.events.record('PCR_STATE_UNEXPECTED', null, { events: this.measured.length });
    return outcome;
  }

  domainViews(): { id: DomainId; role: DomainRole; state: DomainState; name: string }[] {
    return [...this.#domains.values()].map((d) => ({ id: d.id, role: d.role, state: d.state, name: d.name }));
  }

  invariantInput(): InvariantInput {
    return { platform: this.platform.snapshot(), devices: this.platform.topology.devices(), domains: this.domainViews(), authSid: this.authSid };
  }

  checkInvariants(): void {
    assertInvariants(this.invariantInput());
  }

  async shutdown(): Promise<void> {
    for (const d of [...this.#domains.values()]) if (d.role !== 'hardware') await this.#destroy(d, 'node shutdown');
    const dom0 = this.#domains.get(DOMID_HARDWARE);
    if (dom0 !== undefined) await this.#destroy(dom0, 'node shutdown');
    await this.#parts.slot.run((d) => d.powerOff());
  }

  // --- internals -----------------------------------------------------------------------

  #createDomain(role: DomainRole, name: string, pages: number, id?: DomainId): DomainRecord {
    const domainId = id ?? this.#nextId++;
    if (domainId >= 0x7ff0) throw new TrustlaunchError('CAPACITY_EXCEEDED', 'domain ids exhausted');
    const memory = new DomainMemory(this.platform.memory, domainId, pages);
    this.platform.iommu.createTable(domainId);
    const record: DomainRecord = { id: domainId, role, name, state: 'building', memory, execution: undefined };
    this.#domains.set(domainId, record);
    return record;
  }

  /** Destruction order: state first (its capabilities die), devices to quarantine, table, memory. */
  async #destroy(d: DomainRecord, reason: string, kind?: 'MINIDOMAIN_STOPPED' | 'MINIDOMAIN_CRASHED'): Promise<void> {
    if (d.state === 'destroyed') return;
    d.state = 'destroyed';
    for (const sid of this.platform.iommu.devicesOf(d.id)) {
      if (this.platform.ownerOf(sid) === d.id) this.platform.deassign(sid, null);
    }
    this.platform.iommu.destroyTable(d.id);
    d.memory.release();
    this.#domains.delete(d.id);
    this.#history.push(d);
    if (this.#history.length > HISTORY) this.#history.shift();
    if (d.role === 'vm') {
      (d as VmRecord).channel.hypervisorEnd.close();
      this.reports.drop(d.id);
    }
    if (d.role === 'minidomain') {
      if (this.#mini === d) this.#mini = undefined;
      if (kind !== undefined) this.events.record(kind, d.id, { reason: reason.slice(0, 200) });
    }
    const execution = d.execution;
    d.execution = undefined;
    // The domain is already isolated; a runner that fails to stop cannot undo that.
    if (execution !== undefined) await execution.stop().catch(() => undefined);
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

  #vm(vmId: DomainId): VmRecord {
    const d = this.#domains.get(vmId) ?? this.#history.find((h) => h.id === vmId);
    if (d?.role !== 'vm') throw new TrustlaunchError('NOT_FOUND', `no VM ${vmId}`);
    return d as VmRecord;
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
        const mini = this.#domains.get(domainId) as MiniDomainRecord;
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
        const d = this.#domains.get(domainId);
        return d === undefined ? Promise.resolve() : this.#destroy(d, reason);
      },
      refused: (domainId, expected, actual) => this.events.record('LAUNCH_DIGEST_MISMATCH', domainId, { expected, actual }),
      trace: (step, domainId) => this.#parts.trace?.(step, domainId),
    };
  }

  #stage(image: Uint8Array): { domainId: DomainId; memory: DomainMemory; imageBytes: number } {
    if (!(image instanceof Uint8Array)) throw new TypeError('the mini-domain image must be bytes');
    if (this.#mini !== undefined) throw new TrustlaunchError('DOMAIN_STATE_INVALID', `a mini-domain (${this.#mini.id}) is ${this.#mini.state}; stop it first`);
    if (image.length > this.#limits.maxMiniDomainImageBytes) throw new TrustlaunchError('BODY_TOO_LARGE', `a mini-domain image has at most ${this.#limits.maxMiniDomainImageBytes} bytes`);
    const imagePages = pagesFor(image.length);
    const mailboxPages = this.#limits.mailboxBytes / PAGE_SIZE;
    const base = this.#createDomain('minidomain', 'minidomain', imagePages + 2 * mailboxPages);
    const mini: MiniDomainRecord = Object.assign(base, {
      role: 'minidomain' as const,
      launch: undefined,
      mailbox: { command: imagePages * PAGE_SIZE, response: (imagePages + mailboxPages) * PAGE_SIZE },
    });
    this.#domains.set(mini.id, mini);
    this.#mini = mini;
    mini.memory.write(0, image);
    return { domainId: mini.id, memory: mini.memory, imageBytes: image.length };
  }

  async #startMiniDomain(domainId: DomainId, imageBytes: number): Promise<void> {
    const mini = this.live(domainId) as MiniDomainRecord;
    const launch = mini.launch as MiniDomainLaunch;
    const device = new MediatedAuthDevice({
      domainId,
      kind: this.#parts.slot.kind,
      description: this.#parts.slot.description,
      mmioBase: this.#authBase,
      commandBuffer: mini.mailbox.command,
      responseBuffer: mini.mailbox.response,
      bufferBytes: this.#limits.mailboxBytes,
      isRunning: () => mini.state === 'running',
      readMemory: (gpa, length) => mini.memory.read(gpa, length),
      writeMemory: (gpa, bytes) => mini.memory.write(gpa, bytes),
      mmio: (access) => this.platform.mmioAccess(domainId, access),
      completion: () => this.#authModel.completion(),
    });
    this.events.record('MINIDOMAIN_LAUNCHED', domainId, { digest: launch.digest, launch: launch.launch });
    const entry = this.#parts.miniDomain;
    if (entry === undefined) return;
    const capability = makeMiniDomainCapability(this, domainId, device, launch);
    mini.execution = await entry({ capability, image: mini.memory.read(0, imageBytes) });
    this.#watch(mini);
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

  #fromGuest(vm: VmRecord, message: unknown): void {
    if (vm.state === 'destroyed' || typeof message !== 'object' || message === null) return;
    const m = message as Record<string, unknown>;
    if (m['v'] !== 1) return;
    if (m['type'] === 'host-key') {
      const key = SshPublicKeySchema.safeParse(m['key']);
      if (!key.success) {
        this.events.record('VM_CHANNEL_VIOLATION', vm.id, { reason: 'malformed host-key message' });
        return;
      }
      if (this.reports.get(vm.id) !== undefined) {
        // The first key is what gets attested; a second one is a protocol violation.
        this.events.record('VM_CHANNEL_VIOLATION', vm.id, { reason: 'second host-key message ignored' });
        return;
      }
      const [type, body] = key.data.split(' ') as [string, string];
      this.reports.put({ vmId: vm.id, name: vm.name, kernelDigest: vm.kernelDigest as Digest, sshHostKey: `${type} ${body}`, reportedAt: this.#parts.clock().toISOString() });
      return;
    }
    if (m['type'] === 'ready' && Number.isInteger(m['sshPort']) && (m['sshPort'] as number) > 0 && (m['sshPort'] as number) < 65536) vm.sshPort = m['sshPort'] as number;
  }
}

function pagesFor(bytes: number): number {
  return Math.ceil(bytes / PAGE_SIZE);
}

