// MMIO: which domain may touch which device's BARs. This is the CPU-side half of device
// isolation (the IOMMU is the DMA-side half): in Xen the `iomem` permission a domain
// holds over machine frames, enforced through its second-stage (EPT) mappings. A domain
// without the grant that touches a BAR gets MMIO_DENIED, the attempt is recorded, and
// the device sees nothing.
import { TrustlaunchError } from '../../protocol/errors.js';
import type { DomainId } from './domain-id.js';
import { formatBdf, type MmioBar, type PciDevice, type PciTopology, type SourceId } from './pci.js';

export type MmioSize = 1 | 2 | 4;

export interface MmioAccess {
  /** Host physical address. */
  readonly address: number;
  readonly size: MmioSize;
  readonly kind: 'read' | 'write';
  /** The value written (write accesses). */
  readonly value?: number;
}

/** What a device decodes in its BARs: register reads and writes at an offset. */
export interface MmioDeviceModel {
  read(bar: MmioBar, offset: number, size: MmioSize): number;
  write(bar: MmioBar, offset: number, size: MmioSize, value: number): void;
  /** Plain data of the device's register state, for "nothing changed" checks. */
  snapshot(): unknown;
}

/** Reads of addresses no device decodes complete with all ones (a master abort); writes vanish. */
export const MASTER_ABORT = 0xffffffff;

/** A device whose registers are plain storage: enough for the platform devices dom0 drives. */
export class ScratchRegisters implements MmioDeviceModel {
  readonly #regs = new Map<string, number>();

  read(bar: MmioBar, offset: number, size: MmioSize): number {
    return this.#regs.get(`${bar.index}:${offset}:${size}`) ?? 0;
  }

  write(bar: MmioBar, offset: number, size: MmioSize, value: number): void {
    this.#regs.set(`${bar.index}:${offset}:${size}`, value);
  }

  snapshot(): unknown {
    return [...this.#regs].sort(([a], [b]) => (a < b ? -1 : 1));
  }
}

export class MmioSpace {
  readonly #topology: PciTopology;
  readonly #grants = new Map<SourceId, DomainId>();
  readonly #models = new Map<SourceId, MmioDeviceModel>();
  readonly #onDenied: (domain: DomainId, device: PciDevice, access: MmioAccess) => void;

  constructor(topology: PciTopology, onDenied: (domain: DomainId, device: PciDevice, access: MmioAccess) => void) {
    this.#topology = topology;
    this.#onDenied = onDenied;
    for (const d of topology.devices()) this.#models.set(d.sid, new ScratchRegisters());
  }

  /** Puts a device model behind a device's BARs (the auth device's is the mediated one). */
  attach(sid: SourceId, model: MmioDeviceModel): void {
    if (this.#topology.device(sid) === undefined) throw new RangeError(`no device ${sid}`);
    this.#models.set(sid, model);
  }

  grant(sid: SourceId, domain: DomainId): void {
    this.#grants.set(sid, domain);
  }

  revoke(sid: SourceId): void {
    this.#grants.delete(sid);
  }

  holder(sid: SourceId): DomainId | undefined {
    return this.#grants.get(sid);
  }

  /** One MMIO access by `domain`. Throws MMIO_DENIED (recorded, nothing changed) without the grant. */
  access(domain: DomainId, access: MmioAccess): number {
    const { address, size, kind } = access;
    if (!Number.isSafeInteger(address) || address < 0 || address % size !== 0 || ![1, 2, 4].includes(size)) {
      throw new RangeError(`MMIO access must be naturally aligned, 1, 2 or 4 bytes: ${address}/${size}`);
    }
    if (kind === 'write' && (!Number.isInteger(access.value) || (access.value as number) < 0 || (access.value as number) >= 2 ** (8 * size))) {
      throw new RangeError(`MMIO write value does not fit ${size} bytes`);
    }
    const hit = this.#topology.barAt(address, size);
    if (hit === undefined) return kind === 'read' ? MASTER_ABORT >>> (32 - 8 * size) : 0;
    if (this.#grants.get(hit.device.sid) !== domain) {
      this.#onDenied(domain, hit.device, access);
      throw new TrustlaunchError('MMIO_DENIED', `domain ${domain} has no MMIO grant for ${formatBdf(hit.device.bdf)} (${hit.device.name})`, {
        detail: { domain, bdf: formatBdf(hit.device.bdf), address, kind },
      });
    }
    const model = this.#models.get(hit.device.sid) as MmioDeviceModel;
    const offset = address - hit.bar.base;
    if (kind === 'read') return model.read(hit.bar, offset, size);
    model.write(hit.bar, offset, size, access.value as number);
    return 0;
  }

  snapshot(): { grants: [SourceId, DomainId][]; devices: [SourceId, unknown][] } {
    return {
      grants: [...this.#grants].sort(([a], [b]) => a - b),
      devices: [...this.#models].sort(([a], [b]) => a - b).map(([sid, m]) => [sid, m.snapshot()]),
    };
  }
}
