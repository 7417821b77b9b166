// PCI addressing and the devices of the node's model platform.
// A requester id is bus‖device‖function (PCIe Base spec §2.2.6.2); VT-d calls it the
// source-id and indexes its root table by bus and its context table by devfn
// (VT-d spec §3.4.1, §9.1, §9.3). IOMMU groups are the sets of functions the platform
// cannot isolate from each other (no ACS, multi-function devices): they move together.

export interface Bdf {
  readonly bus: number;
  readonly device: number;
  readonly fn: number;
}

/** The 16-bit requester id / VT-d source-id: bus << 8 | device << 3 | function. */
export type SourceId = number;

export function makeBdf(bus: number, device: number, fn: number): Bdf {
  if (!isIntIn(bus, 0, 255) || !isIntIn(device, 0, 31) || !isIntIn(fn, 0, 7)) {
    throw new RangeError(`not a PCI address: bus ${bus}, device ${device}, function ${fn}`);
  }
  return Object.freeze({ bus, device, fn });
}

const BDF_TEXT = /^([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/;

/** Parses the usual `bb:dd.f` form (lowercase hex, as lspci prints it). */
export function parseBdf(text: string): Bdf {
  const m = BDF_TEXT.exec(text);
  if (m === null) throw new RangeError(`not a PCI address (want bb:dd.f): ${JSON.stringify(text.slice(0, 20))}`);
  return makeBdf(parseInt(m[1] as string, 16), parseInt(m[2] as string, 16), parseInt(m[3] as string, 16));
}

export function formatBdf(b: Bdf): string {
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  return `${hex(b.bus)}:${hex(b.device)}.${b.fn}`;
}

export function devfn(b: Bdf): number {
  return (b.device << 3) | b.fn;
}

export function sourceId(b: Bdf): SourceId {
  return (b.bus << 8) | devfn(b);
}

export function bdfOfSourceId(sid: SourceId): Bdf {
  if (!isIntIn(sid, 0, 0xffff)) throw new RangeError(`not a 16-bit source-id: ${sid}`);
  return makeBdf(sid >> 8, (sid >> 3) & 0x1f, sid & 7);
}

export function formatSourceId(sid: SourceId): string {
  return formatBdf(bdfOfSourceId(sid));
}

function isIntIn(n: number, lo: number, hi: number): boolean {
  return Number.isInteger(n) && n >= lo && n <= hi;
}

/** A memory BAR: a range of host physical addresses decoded by the device (PCI Local Bus spec §6.2.5.1). */
export interface MmioBar {
  readonly index: number;
  readonly base: number;
  readonly size: number;
}

export type PciDeviceClass = 'auth-device' | 'storage' | 'network' | 'accelerator';

/** Who owns a device when the hypervisor boots: the hardware domain or quarantine (`dom_io`). */
export type InitialOwner = 'hardware-domain' | 'quarantine';

export interface PciDeviceSpec {
  readonly bdf: string;
  readonly name: string;
  readonly class: PciDeviceClass;
  readonly bars: readonly MmioBar[];
  /** Name of the IOMMU group; functions sharing it move together. */
  readonly group: string;
  readonly initialOwner: InitialOwner;
}

export interface PciDevice {
  readonly bdf: Bdf;
  readonly sid: SourceId;
  readonly name: string;
  readonly class: PciDeviceClass;
  readonly bars: readonly MmioBar[];
  readonly group: string;
  readonly initialOwner: InitialOwner;
}

const PAGE = 4096;
/** Addresses are JavaScript numbers; keep every BAR below 2^52 so sums stay exact. */
const MAX_ADDRESS = 2 ** 52;

/** The PCI devices of one node, validated once; immutable afterwards. */
export class PciTopology {
  readonly #devices: readonly PciDevice[];
  readonly #bySid: ReadonlyMap<SourceId, PciDevice>;
  readonly #groups: ReadonlyMap<string, readonly PciDevice[]>;

  constructor(specs: readonly PciDeviceSpec[]) {
    const devices: PciDevice[] = [];
    const bySid = new Map<SourceId, PciDevice>();
    const groups = new Map<string, PciDevice[]>();
    for (const spec of specs) {
      const b = parseBdf(spec.bdf);
      const sid = sourceId(b);
      if (bySid.has(sid)) throw new RangeError(`two devices at ${spec.bdf}`);
      for (const bar of spec.bars) checkBar(spec, bar);
      const dev: PciDevice = Object.freeze({
        bdf: b,
        sid,
        name: spec.name,
        class: spec.class,
        bars: Object.freeze(spec.bars.map((bar) => Object.freeze({ ...bar }))),
        group: spec.group,
        initialOwner: spec.initialOwner,
      });
      devices.push(dev);
      bySid.set(sid, dev);
      const members = groups.get(spec.group) ?? [];
      members.push(dev);
      groups.set(spec.group, members);
    }
    checkNoOverlap(devices);
    for (const [name, members] of groups) {
      // A group starts under one owner, or the "whole group moves" rule is broken from boot.
      if (new Set(members.map((d) => d.initialOwner)).size !== 1) throw new RangeError(`IOMMU group ${name} has members with different initial owners`);
    }
    this.#devices = Object.freeze(devices);
    this.#bySid = bySid;
    this.#groups = new Map([...groups].map(([k, v]) => [k, Object.freeze(v)]));
  }

  devices(): readonly PciDevice[] {
    return this.#devices;
  }

  device(sid: SourceId): PciDevice | undefined {
    return this.#bySid.get(sid);
  }

  /** Every function of the IOMMU group `sid` belongs to (including itself). */
  groupOf(sid: SourceId): readonly PciDevice[] {
    const dev = this.#bySid.get(sid);
    if (dev === undefined) return [];
    return this.#groups.get(dev.group) ?? [];
  }

  /** The device and BAR that decode `[address, address + size)`, if any does. */
  barAt(address: number, size: number): { device: PciDevice; bar: MmioBar } | undefined {
    for (const device of this.#devices) {
      for (const bar of device.bars) {
        if (address < bar.base + bar.size && address + size > bar.base) return { device, bar };
      }
    }
    return undefined;
  }
}

function checkBar(spec: PciDeviceSpec, bar: MmioBar): void {
  if (!Number.isSafeInteger(bar.base) || !Number.isSafeInteger(bar.size) || bar.size <= 0 || bar.base % PAGE !== 0 || bar.size % PAGE !== 0 || bar.base + bar.size > MAX_ADDRESS) {
    throw new RangeError(`BAR ${bar.index} of ${spec.bdf} is not page-aligned or out of range`);
  }
}

function checkNoOverlap(devices: readonly PciDevice[]): void {
  const bars = devices.flatMap((d) => d.bars.map((bar) => ({ d, bar }))).sort((a, b) => a.bar.base - b.bar.base);
  for (let i = 1; i < bars.length; i++) {
    const prev = bars[i - 1] as (typeof bars)[number];
    const cur = bars[i] as (typeof bars)[number];
    if (prev.bar.base + prev.bar.size > cur.bar.base) throw new RangeError(`BARs of ${formatBdf(prev.d.bdf)} and ${formatBdf(cur.d.bdf)} overlap`);
  }
}

// --- the auth device's fixed place --------------------------------------------------

/**
 * The TPM-like auth device: behind the LPC bridge at 00:1f.0, with the TPM's fixed
 * MMIO window 0xFED40000–0xFED44FFF (five 4 KiB localities; TCG PC Client Platform TPM
 * Profile §6.5.2). Its own IOMMU group, quarantined at boot.
 */
export const AUTH_DEVICE_TPM: PciDeviceSpec = Object.freeze({
  bdf: '00:1f.0',
  name: 'auth-device (TPM 2.0, CRB interface)',
  class: 'auth-device',
  bars: Object.freeze([Object.freeze({ index: 0, base: 0xfed40000, size: 0x5000 })]),
  group: 'auth-device',
  initialOwner: 'quarantine',
});

/** Claim 2's second option: a storage-only PCI device (the mini-domain does the crypto). */
export const AUTH_DEVICE_NVSTORE: PciDeviceSpec = Object.freeze({
  bdf: '00:06.0',
  name: 'auth-device (pci-nvstore, persistent storage only)',
  class: 'auth-device',
  bars: Object.freeze([Object.freeze({ index: 0, base: 0xfebf0000, size: 0x1000 })]),
  group: 'auth-device',
  initialOwner: 'quarantine',
});

/** Which PCI configuration an auth-device backend sits at. */
export function authDeviceSpec(kind: 'sim' | 'swtpm' | 'tpm' | 'pci-nvstore'): PciDeviceSpec {
  return kind === 'pci-nvstore' ? AUTH_DEVICE_NVSTORE : AUTH_DEVICE_TPM;
}

/**
 * The rest of the model platform, all owned by dom0 at boot: a storage controller, a
 * dual-port NIC whose functions share a group (no ACS between them), and an accelerator
 * with an audio function on bus 1 (a typical GPU group).
 */
export const PLATFORM_DEVICES: readonly PciDeviceSpec[] = Object.freeze([
  { bdf: '00:02.0', name: 'storage controller', class: 'storage', bars: [{ index: 0, base: 0xfeb00000, size: 0x4000 }], group: 'storage', initialOwner: 'hardware-domain' },
  { bdf: '00:03.0', name: 'network port 0', class: 'network', bars: [{ index: 0, base: 0xfeb20000, size: 0x20000 }], group: 'nic', initialOwner: 'hardware-domain' },
  { bdf: '00:03.1', name: 'network port 1', class: 'network', bars: [{ index: 0, base: 0xfeb40000, size: 0x20000 }], group: 'nic', initialOwner: 'hardware-domain' },
  { bdf: '01:00.0', name: 'accelerator', class: 'accelerator', bars: [{ index: 0, base: 0xf0000000, size: 0x1000000 }], group: 'accelerator', initialOwner: 'hardware-domain' },
  { bdf: '01:00.1', name: 'accelerator audio', class: 'accelerator', bars: [{ index: 0, base: 0xf1000000, size: 0x4000 }], group: 'accelerator', initialOwner: 'hardware-domain' },
] satisfies PciDeviceSpec[]);

export function nodeTopology(authKind: 'sim' | 'swtpm' | 'tpm' | 'pci-nvstore', extra: readonly PciDeviceSpec[] = PLATFORM_DEVICES): PciTopology {
  return new PciTopology([...extra, authDeviceSpec(authKind)]);
}
