// The hypervisor's security event log: append-only, in memory, bounded. Every refused
// attempt (MMIO without the grant, a DMA fault, a denied assignment, a tampered image)
// and every trust-relevant step (mini-domain launched, crashed, re-measured) is one event.
// The node's status reporting reads it; nothing can remove or edit an event.
import type { DomainId } from './domain-id.js';

export type SecurityEventKind =
  | 'MMIO_DENIED'
  | 'IOMMU_FAULT'
  | 'BUS_MASTER_DISABLED'
  | 'ASSIGNMENT_DENIED'
  | 'IOMMU_MAP_DENIED'
  | 'CAPABILITY_DENIED'
  | 'LAUNCH_DIGEST_MISMATCH'
  | 'LAUNCH_POLICY_FROZEN'
  | 'MINIDOMAIN_LAUNCHED'
  | 'MINIDOMAIN_STOPPED'
  | 'MINIDOMAIN_CRASHED'
  | 'DEVICE_ASSIGNED'
  | 'DEVICE_QUARANTINED'
  | 'PCRS_REMEASURED'
  | 'PCR_STATE_UNEXPECTED'
  | 'VM_CHANNEL_VIOLATION';

export type SecurityDetailValue = string | number | boolean | null;

export interface SecurityEvent {
  /** Position since boot, counting events that were dropped for space. */
  readonly seq: number;
  /** ISO 8601 time. */
  readonly time: string;
  readonly kind: SecurityEventKind;
  /** The domain that acted or was acted on; null for the hypervisor itself. */
  readonly domain: DomainId | null;
  readonly detail: Readonly<Record<string, SecurityDetailValue>>;
}

export class SecurityEventLog {
  readonly #capacity: number;
  readonly #clock: () => Date;
  readonly #events: SecurityEvent[] = [];
  #next = 0;

  constructor(capacity: number, clock: () => Date = () => new Date()) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('security log capacity must be a positive integer');
    this.#capacity = capacity;
    this.#clock = clock;
  }

  record(kind: SecurityEventKind, domain: DomainId | null, detail: Record<string, SecurityDetailValue> = {}): SecurityEvent {
    const event: SecurityEvent = Object.freeze({ seq: this.#next++, time: this.#clock().toISOString(), kind, domain, detail: Object.freeze({ ...detail }) });
    if (this.#events.length >= this.#capacity) this.#events.shift();
    this.#events.push(event);
    return event;
  }

  /** Events kept, oldest first; with `sinceSeq`, only those after it. */
  list(sinceSeq = -1): readonly SecurityEvent[] {
    return this.#events.filter((e) => e.seq > sinceSeq);
  }

  /** Events recorded since boot, including those dropped for space. */
  get total(): number {
    return this.#next;
  }

  get dropped(): number {
    return this.#next - this.#events.length;
  }
}
