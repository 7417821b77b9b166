// Non-recoverable DMA-remapping faults, legacy mode (VT-d spec ch. 7 "Address Translation
// Faults", fault reason encodings; the same table Linux prints from
// dma_remap_fault_reasons[]) and the fault recording register's fields (§10.4.14).
import type { SourceId } from '../pci.js';

export const FAULT_REASON = {
  /** 1h: the Present field of the root entry is clear. */
  ROOT_ENTRY_NOT_PRESENT: 0x1,
  /** 2h: the Present field of the context entry is clear. */
  CONTEXT_ENTRY_NOT_PRESENT: 0x2,
  /** 3h: invalid programming of a context entry (unsupported AW or TT). */
  CONTEXT_ENTRY_INVALID: 0x3,
  /** 4h: input address above 2^X − 1, X = min(MGAW, AW of the context entry). */
  ADDRESS_BEYOND_MGAW: 0x4,
  /** 5h: write to a page whose second-level entry has W clear (or is not present). */
  PTE_WRITE_NOT_SET: 0x5,
  /** 6h: read from a page whose second-level entry has R clear (or is not present). */
  PTE_READ_NOT_SET: 0x6,
  /** 7h: error reaching the second-level table through SLPTPTR. */
  NEXT_PAGE_TABLE_INVALID: 0x7,
  /** 8h: error reaching the root table through RTADDR_REG. */
  ROOT_TABLE_ADDRESS_INVALID: 0x8,
  /** 9h: error reaching the context table through CTP. */
  CONTEXT_TABLE_POINTER_INVALID: 0x9,
  /** Ah: non-zero reserved field in a present root entry (the model has no reserved bits). */
  ROOT_ENTRY_RESERVED: 0xa,
  /** Bh: non-zero reserved field in a present context entry (the model has no reserved bits). */
  CONTEXT_ENTRY_RESERVED: 0xb,
  /** Ch: non-zero reserved field in a present paging entry (the model has no reserved bits). */
  PTE_RESERVED: 0xc,
  /** Dh: translation request blocked by the context entry's TT field. */
  TRANSLATION_REQUEST_BLOCKED: 0xd,
} as const;

export type FaultReason = (typeof FAULT_REASON)[keyof typeof FAULT_REASON];
export type FaultReasonName = keyof typeof FAULT_REASON;

const NAMES = new Map<number, FaultReasonName>(Object.entries(FAULT_REASON).map(([k, v]) => [v, k as FaultReasonName]));

export function faultReasonName(fr: FaultReason): FaultReasonName {
  return NAMES.get(fr) as FaultReasonName;
}

/** FRCD.T (§10.4.14): 0 = write request, 1 = read request. */
export type FaultType = 0 | 1;
export const FAULT_TYPE = { WRITE: 0, READ: 1 } as const;

/** One fault recording register: source-id, fault info (faulting page address), reason, type. */
export interface FaultRecord {
  readonly sid: SourceId;
  /** FRCD.FI: the page-aligned address of the faulted request. */
  readonly fi: number;
  readonly fr: FaultReason;
  readonly t: FaultType;
}

/**
 * The fault log: the hypervisor drains the fault recording registers into it. Bounded:
 * once full, the oldest record is dropped and counted, so a flood of faults cannot grow
 * memory and the latest faults stay visible.
 */
export class FaultLog {
  readonly #capacity: number;
  readonly #records: FaultRecord[] = [];
  #dropped = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('fault log capacity must be a positive integer');
    this.#capacity = capacity;
  }

  record(fault: FaultRecord): void {
    if (this.#records.length >= this.#capacity) {
      this.#records.shift();
      this.#dropped++;
    }
    this.#records.push(Object.freeze({ sid: fault.sid, fi: fault.fi, fr: fault.fr, t: fault.t }));
  }

  records(): readonly FaultRecord[] {
    return [...this.#records];
  }

  /** Records dropped because the log was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Every fault recorded since boot, kept or dropped. */
  get total(): number {
    return this.#records.length + this.#dropped;
  }
}
