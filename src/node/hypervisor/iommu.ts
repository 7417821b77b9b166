// The DMA-remapping unit (VT-d) as the hypervisor programs it: the root and context
// tables, one second-level I/O page table per domain, the owner of every requester id,
// fault recording, and the per-device fault threshold that turns bus mastering off.
// Every mutating operation checks all of its preconditions before it changes anything,
// so a refused operation leaves the tables exactly as they were.
import { TrustlaunchError } from '../../protocol/errors.js';
import { DOMID_HARDWARE, DOMID_IO, DOMID_XEN, type DomainId } from './domain-id.js';
import type { PhysicalMemory } from './memory.js';
import { formatSourceId, type PciTopology, type SourceId } from './pci.js';
import { FaultLog, type FaultRecord } from './vtd/fault.js';
import { ADDRESS_WIDTH, PAGE_SIZE, TRANSLATION_TYPE, addressWidthBits, type ContextEntry, type DmaKind, type RemappingTables, type RootEntry, type SlPte } from './vtd/structures.js';
import { translate } from './vtd/translate.js';

/** The address width every context entry is programmed with (4-level, 48-bit). */
export const DOMAIN_AW = ADDRESS_WIDTH.AGAW_48;
const DOMAIN_AW_BITS = addressWidthBits(DOMAIN_AW) as number;
/** Largest single DMA transfer the model accepts (a bound on what a device can ask for). */
export const MAX_DMA_BYTES = 1 << 20;

export interface DmaTransfer {
  readonly sid: SourceId;
  readonly address: number;
  readonly kind: DmaKind;
  /** Bytes to read (read requests). */
  readonly length?: number;
  /** Bytes to write (write requests). */
  readonly data?: Uint8Array;
  readonly at?: 'untranslated' | 'translation-request';
}

export type DmaResult =
  | { readonly ok: true; readonly data: Uint8Array }
  | { readonly ok: false; readonly fault: FaultRecord }
  /** PCI command register Bus Master Enable is clear: the request never left the device. */
  | { readonly ok: false; readonly blocked: 'bus-master-disabled' };

export interface PagePermission {
  readonly r: boolean;
  readonly w: boolean;
}

export interface IommuOptions {
  /** Recorded faults of one device after which its bus mastering is turned off. */
  readonly faultThreshold: number;
  readonly faultLogCapacity: number;
  /** Told of every recorded fault (and whether it disabled the device). */
  readonly onFault?: (fault: FaultRecord, owner: DomainId | undefined, busMasterDisabled: boolean) => void;
}

export type AssignmentDenial =
  | 'no-such-device'
  | 'source-not-quarantine-or-hardware'
  | 'to-current-owner'
  | 'target-not-a-live-domain'
  | 'already-quarantined'
  | 'reserved-device'
  | 'requester-is-target'
  | 'requester-not-allowed';

export function assignmentDenied(sid: SourceId, reason: AssignmentDenial, message: string): TrustlaunchError {
  return new TrustlaunchError('ASSIGNMENT_DENIED', `${formatSourceId(sid)}: ${message}`, { detail: { bdf: formatSourceId(sid), reason } });
}

function mapDenied(message: string, detail: Record<string, unknown>): TrustlaunchError {
  return new TrustlaunchError('IOMMU_MAP_DENIED', message, { detail });
}

/** Plain data copy of everything the IOMMU decides with (for invariants and "nothing changed" checks). */
export interface IommuSnapshot {
  readonly root: readonly (RootEntry | null)[];
  readonly contextTables: readonly (readonly [ctp: number, entries: readonly (readonly [devfn: number, entry: ContextEntry])[]])[];
  readonly pageTables: readonly (readonly [slptptr: number, ptes: readonly (readonly [iovaPfn: number, pte: SlPte])[]])[];
  readonly tableOf: readonly (readonly [domain: DomainId, slptptr: number])[];
  readonly owners: readonly (readonly [sid: SourceId, owner: DomainId])[];
  readonly busMaster: readonly (readonly [sid: SourceId, enabled: boolean])[];
  readonly faultCounts: readonly (readonly [sid: SourceId, count: number])[];
}

export class Iommu {
  readonly #topology: PciTopology;
  readonly #memory: PhysicalMemory;
  readonly #options: IommuOptions;
  readonly #root: (RootEntry | undefined)[] = Array.from({ length: 256 }, () => undefined);
  readonly #contextTables = new Map<number, (ContextEntry | undefined)[]>();
  readonly #pageTables = new Map<number, Map<number, SlPte>>();
  readonly #tableOf = new Map<DomainId, number>();
  readonly #owners = new Map<SourceId, DomainId>();
  readonly #busMaster = new Map<SourceId, boolean>();
  readonly #faultCounts = new Map<SourceId, number>();
  readonly #faultLog: FaultLog;
  readonly #tables: RemappingTables;

  constructor(topology: PciTopology, memory: PhysicalMemory, options: IommuOptions) {
    if (!Number.isInteger(options.faultThreshold) || options.faultThreshold < 1) throw new RangeError('faultThreshold must be a positive integer');
    this.#topology = topology;
    this.#memory = memory;
    this.#options = options;
    this.#faultLog = new FaultLog(options.faultLogCapacity);
    // At reset every device is in quarantine; the hypervisor then hands dom0 its devices
    // through the ordinary assignment path.
    for (const d of topology.devices()) {
      this.#owners.set(d.sid, DOMID_IO);
      this.#busMaster.set(d.sid, true);
      this.#faultCounts.set(d.sid, 0);
    }
    this.#tables = { root: this.#root, contextTables: this.#contextTables, pageTables: this.#pageTables };
  }

  // --- domains' I/O page tables ---------------------------------------------------

  /** Gives a new domain an empty second-level table (in a frame the hypervisor owns). */
  createTable(domain: DomainId): void {
    if (this.#tableOf.has(domain)) throw new Error(`domain ${domain} already has an I/O page table`);
    const [hfn] = this.#memory.allocate(DOMID_XEN, 1) as [number];
    const slptptr = hfn * PAGE_SIZE;
    this.#pageTables.set(slptptr, new Map());
    this.#tableOf.set(domain, slptptr);
  }

  /** Frees a domain's table. The hypervisor de-assigns the domain's devices first. */
  destroyTable(domain: DomainId): void {
    const slptptr = this.#tableOf.get(domain);
    if (slptptr === undefined) return;
    if (this.devicesOf(domain).length > 0) throw new Error(`domain ${domain} still owns devices`);
    this.#pageTables.delete(slptptr);
    this.#tableOf.delete(domain);
    this.#memory.free([slptptr / PAGE_SIZE]);
  }

  hasTable(domain: DomainId): boolean {
    return this.#tableOf.has(domain);
  }

  /** Maps IOVA page `iovaPfn` of `domain` to host frame `hfn`, which the domain must own. */
  map(domain: DomainId, iovaPfn: number, hfn: number, perm: PagePermission): void {
    const table = this.#tableFor(domain);
    if (!Number.isSafeInteger(iovaPfn) || iovaPfn < 0 || iovaPfn >= 2 ** (DOMAIN_AW_BITS - 12)) {
      throw mapDenied(`IOVA page ${iovaPfn} is outside the ${DOMAIN_AW_BITS}-bit address width`, { domain, iovaPfn });
    }
    if (this.#memory.owner(hfn) !== domain) throw mapDenied(`host frame ${hfn} does not belong to domain ${domain}`, { domain, hfn });
    if (!perm.r && !perm.w) throw mapDenied('a mapping needs read or write permission (use unmap)', { domain, iovaPfn });
    table.set(iovaPfn, Object.freeze({ r: perm.r, w: perm.w, addr: hfn * PAGE_SIZE }));
  }

  unmap(domain: DomainId, iovaPfn: number): void {
    const table = this.#tableFor(domain);
    if (!table.has(iovaPfn)) throw mapDenied(`IOVA page ${iovaPfn} is not mapped`, { domain, iovaPfn });
    table.delete(iovaPfn);
  }

  /** Removes every mapping of the given host frames from `domain`'s table. */
  unmapFrames(domain: DomainId, hfns: ReadonlySet<number>): void {
    const table = this.#tableFor(domain);
    for (const [pfn, pte] of table) if (hfns.has(pte.addr / PAGE_SIZE)) table.delete(pfn);
  }

  // --- ownership of requester ids ------------------------------------------------

  owner(sid: SourceId): DomainId | undefined {
    return this.#owners.get(sid);
  }

  devicesOf(domain: DomainId): SourceId[] {
    return [...this.#owners].filter(([, o]) => o === domain).map(([sid]) => sid);
  }

  busMasterEnabled(sid: SourceId): boolean {
    return this.#busMaster.get(sid) ?? true;
  }

  /**
   * Moves the whole IOMMU group of `sid` to `to` (Xen's assign_device): only from
   * quarantine or the hardware domain, never to the current owner, only to a live domain.
   * All checks first; then each function gets a reset (fault count, bus mastering) and a
   * context entry pointing at the new owner's table. Returns the moved requester ids.
   */
  assignGroup(sid: SourceId, to: DomainId): SourceId[] {
    const group = this.#topology.groupOf(sid);
    if (group.length === 0) throw assignmentDenied(sid, 'no-such-device', 'no such device');
    const from = this.#owners.get(sid) as DomainId;
    for (const d of group) {
      // Groups always move together, so a split group would be a model bug, not a refusal.
      if (this.#owners.get(d.sid) !== from) throw new Error(`IOMMU group ${d.group} is split`);
    }
    if (from !== DOMID_IO && from !== DOMID_HARDWARE) {
      throw assignmentDenied(sid, 'source-not-quarantine-or-hardware', `owned by domain ${from}; devices move only from quarantine or the hardware domain`);
    }
    if (to === from) throw assignmentDenied(sid, 'to-current-owner', `already owned by domain ${to}`);
    const slptptr = this.#tableOf.get(to);
    if (to === DOMID_IO || slptptr === undefined) throw assignmentDenied(sid, 'target-not-a-live-domain', `domain ${to} does not exist or is destroyed`);

    for (const d of group) {
      this.#owners.set(d.sid, to);
      this.#setContext(d.sid, { present: true, fpd: false, tt: TRANSLATION_TYPE.UNTRANSLATED_ONLY, slptptr, aw: DOMAIN_AW, did: to });
      this.#resetFunction(d.sid);
    }
    return group.map((d) => d.sid);
  }

  /** Returns the whole group of `sid` to quarantine: context entries cleared, DMA blocked. */
  deassignGroup(sid: SourceId): SourceId[] {
    const group = this.#topology.groupOf(sid);
    if (group.length === 0) throw assignmentDenied(sid, 'no-such-device', 'no such device');
    if (this.#owners.get(sid) === DOMID_IO) throw assignmentDenied(sid, 'already-quarantined', 'already in quarantine');
    for (const d of group) {
      this.#owners.set(d.sid, DOMID_IO);
      this.#setContext(d.sid, undefined);
      this.#resetFunction(d.sid);
    }
    return group.map((d) => d.sid);
  }

  // --- DMA ---------------------------------------------------------------------------

  /**
   * A memory request from a device. Every page is translated before any byte moves; on a
   * fault nothing is transferred (a real device may have moved the pages before the
   * faulting one; the model completes or aborts a request as a whole).
   */
  dma(req: DmaTransfer): DmaResult {
    const length = req.kind === 'write' ? (req.data?.length ?? 0) : (req.length ?? 0);
    if (!Number.isSafeInteger(req.address) || req.address < 0) throw new RangeError(`DMA address ${req.address} is not a non-negative integer`);
    if (!Number.isSafeInteger(length) || length < 1 || length > MAX_DMA_BYTES) throw new RangeError(`DMA length ${length} outside 1..${MAX_DMA_BYTES}`);
    if (!this.busMasterEnabled(req.sid)) return { ok: false, blocked: 'bus-master-disabled' };

    const pieces: { hpa: number; at: number; n: number }[] = [];
    for (let at = 0; at < length; ) {
      const address = req.address + at;
      const n = Math.min(PAGE_SIZE - (address % PAGE_SIZE), length - at);
      const t = translate(this.#tables, { sid: req.sid, address, kind: req.kind, ...(req.at === undefined ? {} : { at: req.at }) });
      if (!t.ok) {
        if (t.recorded) this.#recordFault(t.fault);
        return { ok: false, fault: t.fault };
      }
      pieces.push({ hpa: t.hpa, at, n });
      at += n;
    }
    const out = new Uint8Array(req.kind === 'read' ? length : 0);
    for (const p of pieces) {
      const hfn = Math.floor(p.hpa / PAGE_SIZE);
      if (req.kind === 'read') out.set(this.#memory.readFrame(hfn, p.hpa % PAGE_SIZE, p.n), p.at);
      else this.#memory.writeFrame(hfn, p.hpa % PAGE_SIZE, (req.data as Uint8Array).subarray(p.at, p.at + p.n));
    }
    return { ok: true, data: out };
  }

  faultRecords(): readonly FaultRecord[] {
    return this.#faultLog.records();
  }

  faultCount(sid: SourceId): number {
    return this.#faultCounts.get(sid) ?? 0;
  }

  get faultTotals(): { readonly total: number; readonly dropped: number } {
    return { total: this.#faultLog.total, dropped: this.#faultLog.dropped };
  }

  /** The live tables for read-only inspection inside the hypervisor (translate, invariants). */
  get tables(): RemappingTables {
    return this.#tables;
  }

  snapshot(): IommuSnapshot {
    const byKey = <K extends number, V>(m: ReadonlyMap<K, V>): [K, V][] => [...m].sort(([a], [b]) => a - b);
    return {
      root: this.#root.map((r) => (r === undefined ? null : { ...r })),
      contextTables: byKey(this.#contextTables).map(([ctp, entries]) => [ctp, entries.flatMap((e, i) => (e === undefined ? [] : [[i, { ...e }] as const]))] as const),
      pageTables: byKey(this.#pageTables).map(([ptr, t]) => [ptr, byKey(t).map(([pfn, pte]) => [pfn, { ...pte }] as const)] as const),
      tableOf: byKey(this.#tableOf),
      owners: byKey(this.#owners),
      busMaster: byKey(this.#busMaster),
      faultCounts: byKey(this.#faultCounts),
    };
  }

  // --- internals ---------------------------------------------------------------------

  #tableFor(domain: DomainId): Map<number, SlPte> {
    const slptptr = this.#tableOf.get(domain);
    const table = slptptr === undefined ? undefined : this.#pageTables.get(slptptr);
    if (table === undefined) throw mapDenied(`domain ${domain} has no I/O page table`, { domain });
    return table;
  }

  /** Writes (or clears) one context entry, keeping "root entry present ⇔ its bus has a present context entry". */
  #setContext(sid: SourceId, entry: ContextEntry | undefined): void {
    const bus = sid >> 8;
    let ctp = this.#root[bus]?.ctp;
    if (ctp === undefined) {
      if (entry === undefined) return;
      const [hfn] = this.#memory.allocate(DOMID_XEN, 1) as [number];
      ctp = hfn * PAGE_SIZE;
      this.#contextTables.set(ctp, Array.from({ length: 256 }, () => undefined));
      this.#root[bus] = Object.freeze({ present: true, ctp });
    }
    const table = this.#contextTables.get(ctp) as (ContextEntry | undefined)[];
    table[sid & 0xff] = entry === undefined ? undefined : Object.freeze({ ...entry });
    if (table.every((e) => e === undefined)) {
      this.#contextTables.delete(ctp);
      this.#root[bus] = undefined;
      this.#memory.free([ctp / PAGE_SIZE]);
    }
  }

  /** Function-level reset on every change of owner: fault count cleared, bus mastering back on. */
  #resetFunction(sid: SourceId): void {
    this.#faultCounts.set(sid, 0);
    this.#busMaster.set(sid, true);
  }

  #recordFault(fault: FaultRecord): void {
    this.#faultLog.record(fault);
    const known = this.#faultCounts.has(fault.sid);
    let disabled = false;
    if (known) {
      const count = (this.#faultCounts.get(fault.sid) ?? 0) + 1;
      this.#faultCounts.set(fault.sid, count);
      if (count >= this.#options.faultThreshold && this.#busMaster.get(fault.sid) === true) {
        this.#busMaster.set(fault.sid, false);
        disabled = true;
      }
    }
    this.#options.onFault?.(fault, this.#owners.get(fault.sid), disabled);
  }
}
