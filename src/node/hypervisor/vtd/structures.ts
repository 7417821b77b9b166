// The VT-d remapping structures, legacy (non-scalable) mode, with the spec's field names.
// Root entry: VT-d spec §9.1; context entry: §9.3; second-level paging entry: §9.8.
// The model keeps each entry's architectural fields and drops reserved bits; the
// multi-level second-level walk is collapsed into one leaf lookup per 4 KiB page,
// which keeps the leaf semantics (R, W, ADDR) and the address-width check.
import type { SourceId } from '../pci.js';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

/** Context-entry AW encodings (§9.3): adjusted guest address widths. */
export const ADDRESS_WIDTH = {
  /** 001b: 39-bit AGAW, 3-level table. */
  AGAW_39: 1,
  /** 010b: 48-bit AGAW, 4-level table. */
  AGAW_48: 2,
  /** 011b: 57-bit AGAW, 5-level table. */
  AGAW_57: 3,
} as const;

/** Bits of input address each AW encoding covers (§9.3, Table "Address Width"). */
export function addressWidthBits(aw: number): number | undefined {
  return aw === 1 ? 39 : aw === 2 ? 48 : aw === 3 ? 57 : undefined;
}

/** Context-entry TT encodings (§9.3, legacy mode). */
export const TRANSLATION_TYPE = {
  /** 00b: untranslated requests only; translation requests (ATS) are blocked. */
  UNTRANSLATED_ONLY: 0,
  /** 01b: untranslated and translated requests (device-TLB). */
  DEVICE_TLB: 1,
  /** 10b: pass-through (no translation); the model's hardware does not support it. */
  PASS_THROUGH: 2,
} as const;

/** What this model's remapping unit reports in its Capability / Extended Capability registers. */
export interface HardwareCaps {
  /** CAP.SAGAW: supported AW encodings. */
  readonly supportedAw: readonly number[];
  /** CAP.MGAW: maximum guest address width in bits. */
  readonly mgawBits: number;
  /** Valid TT encodings (ECAP.DT = 0 and ECAP.PT = 0 leave only 00b). */
  readonly supportedTt: readonly number[];
}

export const HARDWARE_CAPS: HardwareCaps = Object.freeze({
  supportedAw: Object.freeze([ADDRESS_WIDTH.AGAW_39, ADDRESS_WIDTH.AGAW_48]),
  mgawBits: 48,
  supportedTt: Object.freeze([TRANSLATION_TYPE.UNTRANSLATED_ONLY]),
});

/** Root entry (§9.1): P and the context-table pointer CTP. */
export interface RootEntry {
  readonly present: boolean;
  readonly ctp: number;
}

/** Context entry (§9.3). */
export interface ContextEntry {
  readonly present: boolean;
  /** Fault Processing Disable: when set, faults through this entry are not recorded. */
  readonly fpd: boolean;
  readonly tt: number;
  /** Host physical address of the domain's second-level page table. */
  readonly slptptr: number;
  readonly aw: number;
  /** Domain identifier: which domain's translations (and IOTLB tags) apply. */
  readonly did: number;
}

/** Second-level paging entry, leaf (§9.8): read, write and the host physical page address. */
export interface SlPte {
  readonly r: boolean;
  readonly w: boolean;
  readonly addr: number;
}

/** One second-level I/O page table: IOVA page number → leaf entry. */
export type IoPageTable = ReadonlyMap<number, SlPte>;

/** Everything the DMA-remapping walk reads: the "hardware memory" of the structures. */
export interface RemappingTables {
  /** Root-table address register (RTADDR_REG, §10.4.6) points here; undefined = not programmed. */
  readonly root: readonly (RootEntry | undefined)[] | undefined;
  /** Context tables by their host physical address (the CTP of a root entry). */
  readonly contextTables: ReadonlyMap<number, readonly (ContextEntry | undefined)[]>;
  /** Second-level page tables by their host physical address (the SLPTPTR of a context entry). */
  readonly pageTables: ReadonlyMap<number, IoPageTable>;
}

/** Kinds of memory request a device can issue. */
export type DmaKind = 'read' | 'write';

/** An untranslated memory request, or an ATS translation request (PCIe ATS spec §2.1). */
export interface DmaRequest {
  readonly sid: SourceId;
  /** The I/O virtual address the device put on the bus. */
  readonly address: number;
  readonly kind: DmaKind;
  /** 'translation-request' asks the IOMMU for a translation (Address Translation Services). */
  readonly at?: 'untranslated' | 'translation-request';
}
