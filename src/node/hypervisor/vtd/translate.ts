// The DMA-remapping walk for one request (VT-d spec §3.4.2 "Context-Entry" walk, §3.6
// second-level translation, ch. 7 fault conditions): RTADDR → root entry[bus] →
// context entry[devfn] → second-level leaf entry. A pure function of the tables, so
// every fault reason can be checked against hand-built tables and the IOMMU model can
// only reach memory the way the hardware would.
import { FAULT_REASON, FAULT_TYPE, type FaultReason, type FaultRecord } from './fault.js';
import { HARDWARE_CAPS, PAGE_SIZE, TRANSLATION_TYPE, addressWidthBits, type DmaRequest, type RemappingTables, type SlPte } from './structures.js';

export type Translation =
  | { readonly ok: true; readonly hpa: number; readonly pte: SlPte; readonly did: number }
  | {
      readonly ok: false;
      readonly fault: FaultRecord;
      /** False when the context entry's FPD suppresses recording (§9.3). */
      readonly recorded: boolean;
    };

export function pageBase(address: number): number {
  return address - (address % PAGE_SIZE);
}

/** Translates one address. `req.address` must be a non-negative safe integer (the caller checks). */
export function translate(tables: RemappingTables, req: DmaRequest): Translation {
  const fail = (fr: FaultReason, recorded = true): Translation => ({
    ok: false,
    fault: { sid: req.sid, fi: pageBase(req.address), fr, t: req.kind === 'write' ? FAULT_TYPE.WRITE : FAULT_TYPE.READ },
    recorded,
  });

  // Step 1: the root table, indexed by bus.
  if (tables.root === undefined) return fail(FAULT_REASON.ROOT_TABLE_ADDRESS_INVALID);
  const root = tables.root[req.sid >> 8];
  if (root === undefined || !root.present) return fail(FAULT_REASON.ROOT_ENTRY_NOT_PRESENT);

  // Step 2: the context table the root entry points to, indexed by devfn.
  const contextTable = tables.contextTables.get(root.ctp);
  if (contextTable === undefined) return fail(FAULT_REASON.CONTEXT_TABLE_POINTER_INVALID);
  const ce = contextTable[req.sid & 0xff];
  if (ce === undefined || !ce.present) return fail(FAULT_REASON.CONTEXT_ENTRY_NOT_PRESENT);

  // From here on the context entry's FPD decides whether a fault is recorded.
  const recorded = !ce.fpd;
  const awBits = addressWidthBits(ce.aw);
  if (awBits === undefined || !HARDWARE_CAPS.supportedAw.includes(ce.aw) || !HARDWARE_CAPS.supportedTt.includes(ce.tt)) {
    return fail(FAULT_REASON.CONTEXT_ENTRY_INVALID, recorded);
  }
  if (req.at === 'translation-request' && ce.tt === TRANSLATION_TYPE.UNTRANSLATED_ONLY) {
    return fail(FAULT_REASON.TRANSLATION_REQUEST_BLOCKED, recorded);
  }
  if (req.address >= 2 ** Math.min(awBits, HARDWARE_CAPS.mgawBits)) return fail(FAULT_REASON.ADDRESS_BEYOND_MGAW, recorded);

  // Step 3: the domain's second-level table, then the leaf entry's permission bit.
  const table = tables.pageTables.get(ce.slptptr);
  if (table === undefined) return fail(FAULT_REASON.NEXT_PAGE_TABLE_INVALID, recorded);
  const pte = table.get(Math.floor(req.address / PAGE_SIZE));
  const permitted = req.kind === 'write' ? pte?.w === true : pte?.r === true;
  if (pte === undefined || !permitted) {
    return fail(req.kind === 'write' ? FAULT_REASON.PTE_WRITE_NOT_SET : FAULT_REASON.PTE_READ_NOT_SET, recorded);
  }
  return { ok: true, hpa: pte.addr + (req.address % PAGE_SIZE), pte, did: ce.did };
}
