// VMs (DESIGN.md §4.2 steps 3–5): the image dom0 hands over is copied (or transferred)
// into VM memory and the copy hashed (the kernel digest; a bundle's initramfs and command
// line each get their own); starting hands the VM runner the
// measured bytes and the VM's capability with the guest end of its private channel; the
// hypervisor end reads the guest's messages, and the first valid host key becomes the
// VM's report, together with dom0's untrusted launch metadata. The mini-domain records
// each VM's attestation state here, where dom0 can read it but not change it.
import { z } from 'zod';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { Digest } from '../../protocol/digest.js';
import { HostnameSchema, IdSchema, NonceSchema, SshPublicKeySchema, describeIssues } from '../../protocol/messages.js';
import type { AttestationState, AttestationUpdate, DomainExecution, VmAttestation, VmBuildRequest, VmCapability, VmInfo, VmLaunchMetadata, VmMeasurements, VmReport, VmRunner } from './capabilities.js';
import type { DomainId, DomainState } from './domain-id.js';
import type { DomainRecord, DomainTable } from './domains.js';
import { hashTheCopy } from './launch-gate.js';
import type { SecurityEventLog } from './security-events.js';
import { createVmChannelPair, type VmChannelEndpoint } from './vm-channel.js';
import type { VmReportBase, VmReportInbox } from './vm-reports.js';
import { PAGE_SIZE } from './vtd/structures.js';

/** Where one measured part lies in VM memory. */
interface PlacedPart {
  readonly gpa: number;
  readonly length: number;
}
type PartName = 'kernel' | 'initrd' | 'cmdline';
const PART_NAMES: readonly PartName[] = ['kernel', 'initrd', 'cmdline'];

export interface VmRecord extends DomainRecord {
  readonly role: 'vm';
  imageBytes: number;
  parts: Partial<Record<PartName, PlacedPart>>;
  /** Undefined until every part is hashed. */
  measurements: VmMeasurements | undefined;
  readonly guest: unknown;
  readonly launch: VmLaunchMetadata | null;
  readonly channel: { readonly hypervisorEnd: VmChannelEndpoint; readonly guestEnd: VmChannelEndpoint };
  sshPort: number | null;
  attestation: VmAttestation;
  note: unknown;
}

/** Linux's COMMAND_LINE_SIZE is 2048 on x86; other architectures allow more. */
export const MAX_CMDLINE_BYTES = 4096;
/** Runner refusals that say what is wrong with the request or the node, kept as they are (anything else is VM_BOOT_FAILED). */
const RUNNER_CODES_KEPT: readonly string[] = ['CAPACITY_EXCEEDED', 'MALFORMED_REQUEST', 'UNSUPPORTED'];

const LaunchMetadataSchema = z.strictObject({ nonce: NonceSchema, hostname: HostnameSchema, authorizedKey: SshPublicKeySchema.optional() });
const ReasonSchema = z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/, 'an error code');
/** The mini-domain's note per VM (its restart bookkeeping) is bounded. */
export const MAX_NOTE_BYTES = 64 * 1024;

/** Which attestation states may follow which (final states stay). */
const NEXT: Readonly<Record<AttestationState, readonly AttestationState[]>> = {
  booting: ['attesting', 'attested', 'refused', 'unattested'],
  attesting: ['attesting', 'attested', 'refused'],
  attested: [],
  refused: [],
  unattested: [],
};

/** What the VM manager needs from the hypervisor. */
export interface VmHost {
  readonly domains: DomainTable;
  readonly events: SecurityEventLog;
  readonly reports: VmReportInbox;
  readonly limits: { readonly maxVmImageBytes: number; readonly maxVmMemoryBytes: number; readonly maxVms: number };
  readonly runner: VmRunner | undefined;
  readonly clock: () => Date;
  destroy(d: DomainRecord, reason: string): Promise<void>;
  /** Destroys the domain when its execution ends on its own. */
  watch(d: DomainRecord): void;
  capability(vmId: DomainId, channel: VmChannelEndpoint): VmCapability;
}

const pagesFor = (bytes: number): number => Math.ceil(bytes / PAGE_SIZE);

export class VmManager {
  readonly #host: VmHost;

  constructor(host: VmHost) {
    this.#host = host;
  }

  async build(req: VmBuildRequest): Promise<VmInfo> {
    const { limits, domains } = this.#host;
    if (!IdSchema.safeParse(req.name).success) throw new TrustlaunchError('MALFORMED_REQUEST', 'a VM name is a lowercase DNS label');
    // Read once: a getter on dom0's object cannot show one value to the checks and another to the copy.
    const image = imageParts(req.image);
    const length = image.reduce((n, [, bytes]) => n + pagesFor(bytes.byteLength) * PAGE_SIZE, 0);
    const kernelBytes = (image[0] as [PartName, Uint8Array | ArrayBuffer])[1].byteLength;
    if (kernelBytes < 1 || length > limits.maxVmImageBytes) throw new TrustlaunchError('BODY_TOO_LARGE', `a VM image has 1..${limits.maxVmImageBytes} bytes`);
    const cmdline = image.find(([name]) => name === 'cmdline');
    if (cmdline !== undefined && cmdline[1].byteLength > MAX_CMDLINE_BYTES) throw new TrustlaunchError('BODY_TOO_LARGE', `a kernel command line has at most ${MAX_CMDLINE_BYTES} bytes`);
    let launch: VmLaunchMetadata | null = null;
    if (req.launch !== undefined) {
      const parsed = LaunchMetadataSchema.safeParse(req.launch);
      if (!parsed.success) throw new TrustlaunchError('MALFORMED_REQUEST', `launch metadata: ${describeIssues(parsed.error)}`);
      const { nonce, hostname, authorizedKey } = parsed.data;
      launch = Object.freeze(authorizedKey === undefined ? { nonce, hostname } : { nonce, hostname, authorizedKey });
    }
    const imagePages = pagesFor(length);
    const memoryBytes = req.memoryBytes ?? imagePages * PAGE_SIZE + 1024 * 1024;
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes < imagePages * PAGE_SIZE || memoryBytes > limits.maxVmMemoryBytes) {
      throw new TrustlaunchError('CAPACITY_EXCEEDED', `VM memory must hold the image and stay within ${limits.maxVmMemoryBytes} bytes`);
    }
    const live = domains.values().filter((d): d is VmRecord => d.role === 'vm');
    if (live.length >= limits.maxVms) throw new TrustlaunchError('CAPACITY_EXCEEDED', `this node runs at most ${limits.maxVms} VMs`);
    if (live.some((v) => v.name === req.name)) throw new TrustlaunchError('CONFLICT', `a VM named ${req.name} exists`);

    const base = domains.create('vm', req.name, pagesFor(memoryBytes));
    const vm: VmRecord = Object.assign(base, {
      role: 'vm' as const,
      imageBytes: 0,
      parts: {},
      measurements: undefined,
      guest: req.guest,
      launch,
      channel: createVmChannelPair(),
      sshPort: null,
      attestation: Object.freeze({ state: 'booting' as const, reason: null, updatedAt: this.#host.clock().toISOString() }),
      note: undefined,
    });
    // Copy (or transfer) now, before the first await: dom0's buffers are never read again.
    try {
      if (image.length === 1) {
        vm.parts = { kernel: { gpa: 0, length: base.memory.load((image[0] as [PartName, Uint8Array | ArrayBuffer])[1]) } };
      } else {
        const placed = base.memory.loadParts(image.map(([, bytes]) => bytes));
        vm.parts = Object.fromEntries(image.map(([name], i) => [name, placed[i] as PlacedPart]));
      }
      vm.imageBytes = Object.values(vm.parts).reduce((n, p) => n + p.length, 0);
    } catch (e) {
      await this.#host.destroy(vm, 'build failed');
      throw e;
    }
    vm.channel.hypervisorEnd.onMessage((m) => this.#fromGuest(vm, m));
    try {
      const digests: Partial<Record<PartName, Digest>> = {};
      for (const name of PART_NAMES) {
        const part = vm.parts[name];
        if (part !== undefined) digests[name] = await hashTheCopy(vm.memory, part.length, undefined, part.gpa);
      }
      vm.measurements = Object.freeze({ ...digests, kernel: digests.kernel as Digest });
    } catch (e) {
      await this.#host.destroy(vm, 'build failed');
      throw e;
    }
    if (vm.state === 'destroyed') throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vm.id} was destroyed while it was being built`);
    return this.info(vm.id);
  }

  async start(vmId: DomainId): Promise<VmInfo> {
    const vm = this.#vm(vmId);
    const measured = vm.measurements;
    if (vm.state !== 'building' || measured === undefined) throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vmId} is ${vm.state}`);
    vm.state = 'running';
    const runner = this.#host.runner;
    if (runner !== undefined) {
      let execution: DomainExecution;
      try {
        execution = await runner({
          capability: this.#host.capability(vm.id, vm.channel.guestEnd),
          name: vm.name,
          image: this.#view(vm, 'kernel') as Uint8Array,
          kernelDigest: measured.kernel,
          ...this.#measuredPart(vm, 'initrd'),
          ...this.#measuredPart(vm, 'cmdline'),
          guest: vm.guest,
          launch: vm.launch,
          sendToGuest: (message) => vm.channel.hypervisorEnd.send(message),
        });
      } catch (e) {
        await this.#host.destroy(vm, 'boot failed');
        // A refusal of the request (no capacity, a malformed setup) keeps its code; a boot that went wrong is VM_BOOT_FAILED.
        if (e instanceof TrustlaunchError && RUNNER_CODES_KEPT.includes(e.code)) throw e;
        throw new TrustlaunchError('VM_BOOT_FAILED', `VM ${vmId} did not boot: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      // (re-read: an await passed, and dom0 may have destroyed the VM meanwhile)
      if ((vm.state as DomainState) === 'destroyed') {
        // Destroyed while its runner was starting it: nobody will ever stop this execution but us.
        await execution.stop().catch(() => undefined);
        throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vmId} was destroyed while it booted`);
      }
      vm.execution = execution;
      this.#host.watch(vm);
    }
    return this.info(vmId);
  }

  async destroy(vmId: DomainId): Promise<void> {
    await this.#host.destroy(this.#vm(vmId), 'destroyed by dom0');
  }

  /** Called by the hypervisor once a VM domain is torn down. */
  destroyed(d: DomainRecord): void {
    if (d.role !== 'vm') return;
    (d as VmRecord).channel.hypervisorEnd.close();
    this.#host.reports.drop(d.id);
  }

  info(vmId: DomainId): VmInfo {
    const vm = this.#vm(vmId);
    if (vm.measurements === undefined) throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vmId} is still being measured`);
    return Object.freeze({
      vmId: vm.id,
      name: vm.name,
      state: vm.state,
      kernelDigest: vm.measurements.kernel,
      measurements: vm.measurements,
      imageBytes: vm.imageBytes,
      memoryBytes: vm.memory.size,
      hostKeyReported: this.#host.reports.get(vm.id) !== undefined,
      sshPort: vm.sshPort,
      attestation: vm.attestation,
    });
  }

  /** The full report the mini-domain sees: the inbox's report plus the VM's attestation state and note. */
  report(base: VmReportBase): VmReport {
    const vm = this.#vm(base.vmId);
    return Object.freeze({ ...base, attestation: vm.attestation, note: structuredClone(vm.note) });
  }

  /** The mini-domain records a VM's attestation state; only the moves in NEXT are allowed. */
  setAttestation(vmId: DomainId, update: AttestationUpdate): void {
    const vm = this.#vm(vmId);
    if (vm.state === 'destroyed') throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vmId} is destroyed`);
    const from = vm.attestation.state;
    if (!(NEXT[from] ?? []).includes(update.state)) throw new TrustlaunchError('CONFLICT', `VM ${vmId}: attestation cannot go from ${from} to ${String(update.state)}`);
    const reason = update.reason ?? null;
    if (reason !== null && !ReasonSchema.safeParse(reason).success) throw new TrustlaunchError('MALFORMED_REQUEST', 'an attestation reason is an error code');
    if (update.note !== undefined) {
      // Plain JSON only (functions, symbols, cycles refused), bounded; the clone is what is kept.
      let text: string | undefined;
      let clone: unknown;
      try {
        text = JSON.stringify(update.note);
        clone = structuredClone(update.note);
      } catch {
        text = undefined;
      }
      if (text === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', 'an attestation note is plain JSON');
      if (Buffer.byteLength(text) > MAX_NOTE_BYTES) throw new TrustlaunchError('BODY_TOO_LARGE', `an attestation note has at most ${MAX_NOTE_BYTES} bytes`);
      vm.note = clone;
    }
    vm.attestation = Object.freeze({ state: update.state, reason, updatedAt: this.#host.clock().toISOString() });
  }

  infos(): VmInfo[] {
    return this.#host.domains
      .all()
      .filter((d) => d.role === 'vm' && (d as VmRecord).measurements !== undefined)
      .map((d) => this.info(d.id));
  }

  sendHostCertificate(vmId: DomainId, certificate: string): void {
    const vm = this.#vm(vmId);
    if (vm.state !== 'running') throw new TrustlaunchError('DOMAIN_STATE_INVALID', `VM ${vmId} is ${vm.state}`);
    if (typeof certificate !== 'string' || certificate.length > 16_384) throw new TrustlaunchError('MALFORMED_REQUEST', 'a host certificate is an OpenSSH certificate line');
    vm.channel.hypervisorEnd.send({ v: 1, type: 'host-certificate', certificate });
  }

  /** A view of one measured part in the VM's own memory (no copy). */
  #view(vm: VmRecord, name: PartName): Uint8Array | undefined {
    const part = vm.parts[name];
    return part === undefined ? undefined : vm.memory.view(part.gpa, part.length);
  }

  #measuredPart(vm: VmRecord, name: 'initrd' | 'cmdline'): { initrd?: { bytes: Uint8Array; digest: Digest }; cmdline?: { bytes: Uint8Array; digest: Digest } } {
    const bytes = this.#view(vm, name);
    const digest = vm.measurements?.[name];
    return bytes === undefined || digest === undefined ? {} : { [name]: Object.freeze({ bytes, digest }) };
  }

  #vm(vmId: DomainId): VmRecord {
    const d = this.#host.domains.find(vmId);
    if (d?.role !== 'vm') throw new TrustlaunchError('NOT_FOUND', `no VM ${vmId}`);
    return d as VmRecord;
  }

  /** Messages from the guest (docs/vm-channel.md); unknown types are ignored. */
  #fromGuest(vm: VmRecord, message: unknown): void {
    if (vm.state === 'destroyed' || typeof message !== 'object' || message === null) return;
    const m = message as Record<string, unknown>;
    if (m['v'] !== 1) return;
    if (m['type'] === 'host-key') {
      const key = SshPublicKeySchema.safeParse(m['key']);
      if (!key.success) {
        this.#host.events.record('VM_CHANNEL_VIOLATION', vm.id, { reason: 'malformed host-key message' });
        return;
      }
      if (this.#host.reports.get(vm.id) !== undefined) {
        // The first key is what gets attested; a second one is a protocol violation.
        this.#host.events.record('VM_CHANNEL_VIOLATION', vm.id, { reason: 'second host-key message ignored' });
        return;
      }
      const [type, body] = key.data.split(' ') as [string, string];
      const measurements = vm.measurements as VmMeasurements;
      this.#host.reports.put({ vmId: vm.id, name: vm.name, kernelDigest: measurements.kernel, measurements, sshHostKey: `${type} ${body}`, reportedAt: this.#host.clock().toISOString(), launch: vm.launch });
      return;
    }
    const port = m['sshPort'];
    if (m['type'] === 'ready' && typeof port === 'number' && Number.isInteger(port) && port > 0 && port < 65536) vm.sshPort = port;
  }
}

/**
 * dom0's image as named parts, each read exactly once: a single Uint8Array / ArrayBuffer
 * (the kernel), or a bundle `{kernel, initrd?, cmdline?}` and nothing else.
 */
function imageParts(image: unknown): [PartName, Uint8Array | ArrayBuffer][] {
  const isBytes = (v: unknown): v is Uint8Array | ArrayBuffer => v instanceof Uint8Array || v instanceof ArrayBuffer;
  if (isBytes(image)) return [['kernel', image]];
  if (typeof image !== 'object' || image === null || Array.isArray(image)) throw new TypeError('image must be a Uint8Array, an ArrayBuffer or a {kernel, initrd?, cmdline?} bundle');
  const bundle = image as Record<string, unknown>;
  const keys = Object.keys(bundle);
  const unknown = keys.filter((k) => !(PART_NAMES as readonly string[]).includes(k));
  if (unknown.length > 0) throw new TrustlaunchError('MALFORMED_REQUEST', `an image bundle has kernel, initrd and cmdline only, not ${unknown.join(', ')}`);
  const parts: [PartName, Uint8Array | ArrayBuffer][] = [];
  for (const name of PART_NAMES) {
    if (!keys.includes(name)) continue;
    const value = bundle[name];
    if (value === undefined && name !== 'kernel') continue;
    if (!isBytes(value)) throw new TrustlaunchError('MALFORMED_REQUEST', `image bundle: ${name} is not bytes`);
    parts.push([name, value]);
  }
  if (parts[0]?.[0] !== 'kernel') throw new TrustlaunchError('MALFORMED_REQUEST', 'an image bundle needs a kernel');
  return parts;
}
