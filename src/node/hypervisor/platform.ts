// The node's hardware as the hypervisor drives it: PCI topology, host memory, the VT-d
// remapping unit and the MMIO grants, kept in step. Assignment moves a device's IOMMU
// context entries and its MMIO grant together; every refusal and every DMA fault becomes
// a security event. Only the hypervisor holds a Platform.
import { isTrustlaunchError } from '../../protocol/errors.js';
import { DOMID_IO, type DomainId } from './domain-id.js';
import { Iommu, type DmaResult, type DmaTransfer, type IommuSnapshot, type PagePermission } from './iommu.js';
import { PhysicalMemory } from './memory.js';
import { MmioSpace, type MmioAccess } from './mmio.js';
import { formatBdf, formatSourceId, type PciTopology, type SourceId } from './pci.js';
import type { SecurityEventLog } from './security-events.js';
import { faultReasonName } from './vtd/fault.js';
import { createHash } from 'node:crypto';

export interface PlatformOptions {
  readonly topology: PciTopology;
  readonly events: SecurityEventLog;
  /** Host memory in 4 KiB frames. */
  readonly maxFrames: number;
  readonly faultThreshold: number;
  readonly faultLogCapacity: number;
}

/** Plain data of the whole hardware state (see `Platform.snapshot`). */
export interface PlatformSnapshot {
  readonly iommu: IommuSnapshot;
  readonly mmio: ReturnType<MmioSpace['snapshot']>;
  /** [hfn, owner, SHA-256 of the contents or null when never written / not asked]. */
  readonly frames: readonly (readonly [hfn: number, owner: DomainId, contents: string | null])[];
}

export class Platform {
  readonly topology: PciTopology;
  readonly memory: PhysicalMemory;
  readonly iommu: Iommu;
  readonly mmio: MmioSpace;
  readonly events: SecurityEventLog;

  constructor(options: PlatformOptions) {
    this.topology = options.topology;
    this.events = options.events;
    this.memory = new PhysicalMemory({ maxFrames: options.maxFrames });
    this.iommu = new Iommu(options.topology, this.memory, {
      faultThreshold: options.faultThreshold,
      faultLogCapacity: options.faultLogCapacity,
      onFault: (fault, owner, disabled) => {
        const detail = { bdf: formatSourceId(fault.sid), fr: fault.fr, reason: faultReasonName(fault.fr), fi: fault.fi, t: fault.t };
        this.events.record('IOMMU_FAULT', owner ?? null, detail);
        if (disabled) this.events.record('BUS_MASTER_DISABLED', owner ?? null, { bdf: formatSourceId(fault.sid), faults: this.iommu.faultCount(fault.sid) });
      },
    });
    this.mmio = new MmioSpace(options.topology, (domain, device, access) => {
      this.events.record('MMIO_DENIED', domain, { bdf: formatBdf(device.bdf), address: access.address, kind: access.kind, size: access.size });
    });
  }

  /** Moves the IOMMU group of `sid` to `to`: context entries and MMIO grants together. */
  assign(sid: SourceId, to: DomainId, actor: DomainId | null): SourceId[] {
    const moved = this.#recorded('ASSIGNMENT_DENIED', actor, () => this.iommu.assignGroup(sid, to));
    for (const m of moved) this.mmio.grant(m, to);
    this.events.record('DEVICE_ASSIGNED', to, { bdf: formatSourceId(sid), group: moved.map(formatSourceId).join(' '), by: actor });
    return moved;
  }

  /** Returns the IOMMU group of `sid` to quarantine: no context entry, no MMIO grant. */
  deassign(sid: SourceId, actor: DomainId | null): SourceId[] {
    const from = this.iommu.owner(sid) ?? null;
    const moved = this.#recorded('ASSIGNMENT_DENIED', actor, () => this.iommu.deassignGroup(sid));
    for (const m of moved) this.mmio.revoke(m);
    this.events.record('DEVICE_QUARANTINED', from, { bdf: formatSourceId(sid), group: moved.map(formatSourceId).join(' '), by: actor });
    return moved;
  }

  map(domain: DomainId, iovaPfn: number, hfn: number, perm: PagePermission): void {
    this.#recorded('IOMMU_MAP_DENIED', domain, () => this.iommu.map(domain, iovaPfn, hfn, perm));
  }

  unmap(domain: DomainId, iovaPfn: number): void {
    this.#recorded('IOMMU_MAP_DENIED', domain, () => this.iommu.unmap(domain, iovaPfn));
  }

  dma(transfer: DmaTransfer): DmaResult {
    return this.iommu.dma(transfer);
  }

  mmioAccess(domain: DomainId, access: MmioAccess): number {
    return this.mmio.access(domain, access);
  }

  /** Who owns each device: a domain id, or DOMID_IO for quarantine. */
  ownerOf(sid: SourceId): DomainId {
    return this.iommu.owner(sid) ?? DOMID_IO;
  }

  /** Everything that decides isolation, as plain data; `contents` adds a digest of each written frame. */
  snapshot(contents = false): PlatformSnapshot {
    const frames: [number, DomainId, string | null][] = [];
    for (const [hfn, owner, data] of this.memory.frames()) {
      frames.push([hfn, owner, contents && data !== undefined ? createHash('sha256').update(data).digest('hex') : null]);
    }
    frames.sort(([a], [b]) => a - b);
    return { iommu: this.iommu.snapshot(), mmio: this.mmio.snapshot(), frames };
  }

  #recorded<T>(kind: 'ASSIGNMENT_DENIED' | 'IOMMU_MAP_DENIED', actor: DomainId | null, op: () => T): T {
    try {
      return op();
    } catch (e) {
      if (isTrustlaunchError(e, kind)) this.events.record(kind, actor, { message: e.message, reason: typeof e.detail?.['reason'] === 'string' ? e.detail['reason'] : '' });
      throw e;
    }
  }
}
