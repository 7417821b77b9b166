// What each domain is handed: capability objects for its role, and nothing else
// (DESIGN.md §3.1 "Each domain receives only the capabilities its role needs"). They are
// frozen objects of functions; none exposes the device, a PCR bank, the IOMMU, or any
// other domain's memory. These types are the API the rest of the node builds on.
import type { Digest } from '../../protocol/digest.js';
import type { AuthDevice } from '../../tpm/auth-device.js';
import type { TcgEvent } from '../../tpm/eventlog/event.js';
import type { DomainId, DomainState } from './domain-id.js';
import type { DmaResult, PagePermission } from './iommu.js';
import type { MmioAccess } from './mmio.js';
import type { MmioBar, PciDeviceClass } from './pci.js';
import type { VmChannelEndpoint, VmChannelMessage } from './vm-channel.js';

/** A domain's own memory, by guest-physical address. */
export interface MemoryCapability {
  readonly size: number;
  read(gpa: number, length: number): Uint8Array;
  write(gpa: number, bytes: Uint8Array): void;
}

/** The domain's own second-level I/O page table: IOVA pages onto its own guest pages only. */
export interface IoPageTableCapability {
  map(iovaPfn: number, gfn: number, perm: PagePermission): void;
  unmap(iovaPfn: number): void;
}

/** A DMA a domain programs one of its devices to perform (the device's requester id). */
export interface DeviceDmaRequest {
  readonly address: number;
  readonly kind: 'read' | 'write';
  readonly length?: number;
  readonly data?: Uint8Array;
  readonly at?: 'untranslated' | 'translation-request';
}

/** What every domain holds. */
export interface DomainCapability {
  readonly domainId: DomainId;
  readonly memory: MemoryCapability;
  readonly iommu: IoPageTableCapability;
  /** One MMIO access at a host physical address; MMIO_DENIED (recorded) without the device's grant. */
  mmio(access: MmioAccess): number;
  /** Programs device `bdf` (which this domain must own) to perform a DMA. */
  dma(bdf: string, request: DeviceDmaRequest): DmaResult;
}

export interface DeviceInfo {
  readonly bdf: string;
  readonly name: string;
  readonly class: PciDeviceClass;
  readonly group: string;
  readonly bars: readonly MmioBar[];
  /** Owning domain, or DOMID_IO when quarantined. */
  readonly owner: DomainId;
}

/**
 * What the manager sends with a VM for the mini-domain, through dom0: untrusted. The
 * hypervisor only checks its shape and hands it over with the VM's report; the
 * mini-domain binds it into the signed claims, so any change in transit is caught by the
 * CA or the user. The kernel digest and the host key never come from here.
 */
export interface VmLaunchMetadata {
  /** The user's nonce (32 bytes, base64url). */
  readonly nonce: string;
  /** The VM's hostname: the principal of its SSH host certificate. */
  readonly hostname: string;
  /** The user's OpenSSH public key to authorize in the VM. */
  readonly authorizedKey?: string;
}

/** booting → attesting → attested | refused; `unattested` when the node runs with attestation off. */
export type AttestationState = 'booting' | 'attesting' | 'attested' | 'refused' | 'unattested';

/** A VM's attestation as dom0 sees it: non-secret status, written by the mini-domain only. */
export interface VmAttestation {
  readonly state: AttestationState;
  /** Error code: why it was refused, or the last transient failure while attesting. */
  readonly reason: string | null;
  readonly updatedAt: string;
}

/** The mini-domain's update of a VM's attestation. `note` is its own restart bookkeeping (bounded JSON; never shown to dom0). */
export interface AttestationUpdate {
  readonly state: AttestationState;
  readonly reason?: string | null;
  readonly note?: unknown;
}

/**
 * A multi-part image (the QEMU backend's bundle): a kernel, optionally an initramfs and
 * the kernel command line (its exact bytes: UTF-8, no trailing newline). Each part is
 * copied into VM memory and the copy hashed on its own; the VM's report names all three
 * digests, so an allowlist can pin the triple.
 */
export interface VmImageBundle {
  readonly kernel: Uint8Array | ArrayBuffer;
  readonly initrd?: Uint8Array | ArrayBuffer;
  readonly cmdline?: Uint8Array | ArrayBuffer;
}

/** The digests of what the hypervisor measured for a VM: always the kernel, and the initramfs and command line when the image has them. */
export interface VmMeasurements {
  readonly kernel: Digest;
  readonly initrd?: Digest;
  readonly cmdline?: Digest;
}

/** One measured part of a VM's image: a view of the VM's own memory and the SHA-256 of exactly those bytes. */
export interface MeasuredPart {
  readonly bytes: Uint8Array;
  readonly digest: Digest;
}

export interface VmBuildRequest {
  /** The manager's VM id (a DNS label); fixed for the VM's life and carried into its report. */
  readonly name: string;
  /**
   * The kernel image, or a bundle of kernel, initramfs and command line. A Uint8Array is
   * copied into VM memory; a whole ArrayBuffer is transferred (detached from the caller: a
   * page transfer, no copy; a bundle's parts are copied into one backing, then detached).
   * Either way the hypervisor hashes what is in VM memory and never reads the caller's
   * bytes again.
   */
  readonly image: Uint8Array | ArrayBuffer | VmImageBundle;
  /** Untrusted launch metadata for the mini-domain (nonce, hostname, authorized key). */
  readonly launch?: VmLaunchMetadata;
  /** Memory of the VM; at least the image rounded up to pages (default: that plus 1 MiB). */
  readonly memoryBytes?: number;
  /** Opaque to the hypervisor; handed to the VM runner (untrusted: comes from dom0). */
  readonly guest?: unknown;
}

export interface VmInfo {
  readonly vmId: DomainId;
  readonly name: string;
  readonly state: DomainState;
  /** SHA-256 of the image (a bundle's kernel) as copied into VM memory. */
  readonly kernelDigest: Digest;
  /** Every measured part's digest (kernel, and a bundle's initrd and cmdline). */
  readonly measurements: VmMeasurements;
  /** Bytes of all parts together. */
  readonly imageBytes: number;
  readonly memoryBytes: number;
  readonly hostKeyReported: boolean;
  /** The guest's `ready` message, once it arrived. */
  readonly sshPort: number | null;
  readonly attestation: VmAttestation;
}

export interface MiniDomainLaunch {
  readonly domainId: DomainId;
  readonly digest: Digest;
  /** 1 for the first launch since boot, 2 after one restart, … (also in the PCR 12 event). */
  readonly launch: number;
}

export interface MiniDomainStatus {
  readonly state: DomainState | 'absent';
  readonly domainId: DomainId | null;
  readonly launches: number;
}

/** dom0, the hardware domain: untrusted. Builds and runs VMs, hands over the mini-domain image. */
export interface Dom0Capability extends DomainCapability {
  /** Every PCI device with its owner (what lspci and xl pci-assignable-list show). */
  devices(): readonly DeviceInfo[];
  /** Passes a device (its whole IOMMU group) from dom0 or quarantine to a VM. */
  assignDevice(bdf: string, vmId: DomainId): void;
  /** Returns a device (its whole IOMMU group) to quarantine. */
  deassignDevice(bdf: string): void;
  /**
   * The launch gate (claims 4, 8, 10). Resolves once the mini-domain runs;
   * LAUNCH_DIGEST_MISMATCH if the image is not the one frozen at boot. A Uint8Array is
   * copied, a whole ArrayBuffer transferred (detached from dom0), before the call returns.
   */
  launchMiniDomain(image: Uint8Array | ArrayBuffer): Promise<MiniDomainLaunch>;
  stopMiniDomain(): Promise<void>;
  miniDomain(): MiniDomainStatus;
  buildVm(request: VmBuildRequest): Promise<VmInfo>;
  startVm(vmId: DomainId): Promise<VmInfo>;
  destroyVm(vmId: DomainId): Promise<void>;
  vm(vmId: DomainId): VmInfo;
  vms(): readonly VmInfo[];
}

/** What the hypervisor tells the mini-domain about a VM (DESIGN.md §4.2 step 5). */
export interface VmReport {
  readonly vmId: DomainId;
  readonly name: string;
  readonly kernelDigest: Digest;
  /** Every measured part's digest: the kernel's again, and a bundle's initrd and cmdline. */
  readonly measurements: VmMeasurements;
  /** The OpenSSH public key line the VM sent on its channel (first `host-key` message). */
  readonly sshHostKey: string;
  readonly reportedAt: string;
  /** From dom0, untrusted: bind it, never believe it. Null when dom0 sent none. */
  readonly launch: VmLaunchMetadata | null;
  readonly attestation: VmAttestation;
  /** What this or an earlier mini-domain stored with `setAttestation` (undefined if nothing). */
  readonly note: unknown;
}

/** The platform PCRs as the mini-domain may use them (pci-nvstore: they live in the hypervisor). */
export interface PlatformPcrPort {
  read(pcrs: readonly number[]): ReadonlyMap<number, Uint8Array>;
  /** CAPABILITY_DENIED (recorded) for the PCRs the hypervisor measures. */
  extend(pcr: number, digest: Uint8Array): void;
}

/** A TPM-like device (sim, swtpm, tpm) behind its CRB interface: the mediated AuthDevice. */
export interface MediatedTpmDevice {
  readonly kind: 'tpm';
  readonly device: AuthDevice;
}

/**
 * The storage-only pci-nvstore device: the mini-domain's own driver programs its registers
 * (MMIO at `mmioBase`) and has it move blocks by DMA into `dmaWindow`, the part of its
 * memory mapped in its I/O page table (IOVA = guest-physical address).
 */
export interface NvStoreDevicePort {
  readonly kind: 'pci-nvstore';
  readonly bdf: string;
  readonly mmioBase: number;
  readonly dmaWindow: { readonly gpa: number; readonly bytes: number };
  /** Waits for the command in flight (the model's stand-in for the completion interrupt). */
  completion(): Promise<void>;
  readonly pcrs: PlatformPcrPort;
}

export type MiniDomainDevice = MediatedTpmDevice | NvStoreDevicePort;

/** The mini-domain (attestation agent): the only holder of the device handle. */
export interface MiniDomainCapability extends DomainCapability {
  readonly nodeId: string;
  /** The auth device through the MMIO grant and this domain's I/O page table. */
  readonly authDevice: MiniDomainDevice;
  readonly launch: MiniDomainLaunch;
  /** A copy of the hypervisor's measured-boot event log (for evidence). */
  eventLog(): TcgEvent[];
  /** Reports of the live VMs that reported a host key. */
  vmReports(): readonly VmReport[];
  /** Calls `listener` with each report as it arrives (not those already there); returns the unsubscribe function. */
  onVmReport(listener: (report: VmReport) => void): () => void;
  /** The report of `vmId` once its host key arrives; NOT_FOUND for unknown VMs, TIMEOUT after `timeoutMs`. */
  waitForVmReport(vmId: DomainId, timeoutMs: number): Promise<VmReport>;
  /** Sends the CA's OpenSSH host certificate to the VM over its channel. */
  sendHostCertificate(vmId: DomainId, certificate: string): void;
  /** Records a VM's attestation state (dom0 sees state and reason). Only forward moves; final states stay. */
  setAttestation(vmId: DomainId, update: AttestationUpdate): void;
  /** SCHEDOP_watchdog: a mini-domain that stops kicking for `limits.miniDomainWatchdogMs` is destroyed as hung. */
  kickWatchdog(): void;
}

/** A VM: its private channel to the hypervisor (dom0 never holds it), plus its own memory and devices. */
export interface VmCapability extends DomainCapability {
  readonly vmId: DomainId;
  readonly channel: VmChannelEndpoint;
}

/** A started domain's execution, as its runner reports it. */
export interface DomainExecution {
  stop(): Promise<void>;
  /** Settles when the domain's code ended on its own (a crash, for the mini-domain). */
  readonly exited?: Promise<unknown>;
}

export interface MiniDomainBoot {
  readonly capability: MiniDomainCapability;
  /** The measured bytes: a view of the mini-domain's own memory (no copy; valid while the domain lives). */
  readonly image: Uint8Array;
}

/** Runs the mini-domain's code once the launch gate passed. */
export type MiniDomainEntry = (boot: MiniDomainBoot) => DomainExecution | Promise<DomainExecution>;

export interface VmBoot {
  readonly capability: VmCapability;
  readonly name: string;
  /** The measured bytes (a bundle's kernel), a view of the VM's own memory (no copy): exactly what must run. */
  readonly image: Uint8Array;
  readonly kernelDigest: Digest;
  /** A bundle's initramfs, measured (absent for a single-part image). */
  readonly initrd?: MeasuredPart;
  /** A bundle's kernel command line, measured: its exact bytes. */
  readonly cmdline?: MeasuredPart;
  readonly guest: unknown;
  /** dom0's launch metadata (untrusted), e.g. for the guest's hostname and authorized key. */
  readonly launch: VmLaunchMetadata | null;
  /** Sends on the hypervisor's end of the VM channel (e.g. the `config` message). */
  sendToGuest(message: VmChannelMessage): void;
}

/** A VM backend (process, qemu): runs a VM the hypervisor built. */
export type VmRunner = (boot: VmBoot) => Promise<DomainExecution>;
