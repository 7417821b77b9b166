// The hypervisor's table of domains: creation (memory and an empty I/O page table) and
// teardown in the order isolation needs: the state first (the domain's capabilities stop
// working), then its devices back to quarantine, its table, its frames (scrubbed).
// Destroyed domains stay readable in a short history; their ids are never reused.
import { TrustlaunchError } from '../../protocol/errors.js';
import type { DomainExecution } from './capabilities.js';
import { DOMID_FIRST_RESERVED, type DomainId, type DomainRole, type DomainState } from './domain-id.js';
import { DomainMemory } from './memory.js';
import type { Platform } from './platform.js';

export interface DomainRecord {
  readonly id: DomainId;
  readonly role: DomainRole;
  readonly name: string;
  state: DomainState;
  readonly memory: DomainMemory;
  execution: DomainExecution | undefined;
}

const HISTORY = 64;

export class DomainTable {
  readonly #platform: Platform;
  readonly #live = new Map<DomainId, DomainRecord>();
  readonly #history: DomainRecord[] = [];
  #nextId: DomainId = 1;

  constructor(platform: Platform) {
    this.#platform = platform;
  }

  /** A new domain in `building`, with `pages` of memory and an empty I/O page table. */
  create(role: DomainRole, name: string, pages: number, id?: DomainId): DomainRecord {
    const domainId = id ?? this.#nextId++;
    if (domainId >= DOMID_FIRST_RESERVED) throw new TrustlaunchError('CAPACITY_EXCEEDED', 'domain ids exhausted');
    const memory = new DomainMemory(this.#platform.memory, domainId, pages);
    this.#platform.iommu.createTable(domainId);
    const record: DomainRecord = { id: domainId, role, name, state: 'building', memory, execution: undefined };
    this.#live.set(domainId, record);
    return record;
  }

  get(id: DomainId): DomainRecord | undefined {
    return this.#live.get(id);
  }

  /** A live domain or one from the recent history. */
  find(id: DomainId): DomainRecord | undefined {
    return this.#live.get(id) ?? this.#history.find((h) => h.id === id);
  }

  /** A live domain's record, or DOMAIN_STATE_INVALID (a stale capability of a destroyed domain). */
  live(id: DomainId): DomainRecord {
    const d = this.#live.get(id);
    if (d === undefined || d.state === 'destroyed') throw new TrustlaunchError('DOMAIN_STATE_INVALID', `domain ${id} is destroyed`);
    return d;
  }

  values(): DomainRecord[] {
    return [...this.#live.values()];
  }

  /** Live domains, then the recent history. */
  all(): DomainRecord[] {
    return [...this.#live.values(), ...this.#history];
  }

  /** Isolates and frees `d`; false when it was already destroyed. */
  teardown(d: DomainRecord): boolean {
    if (d.state === 'destroyed') return false;
    d.state = 'destroyed';
    for (const sid of this.#platform.iommu.devicesOf(d.id)) {
      if (this.#platform.ownerOf(sid) === d.id) this.#platform.deassign(sid, null);
    }
    this.#platform.iommu.destroyTable(d.id);
    d.memory.release();
    this.#live.delete(d.id);
    this.#history.push(d);
    if (this.#history.length > HISTORY) this.#history.shift();
    return true;
  }
}
