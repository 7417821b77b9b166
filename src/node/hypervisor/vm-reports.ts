// The reports the hypervisor hands the mini-domain (DESIGN.md §4.2 step 5): per VM its
// kernel digest (hashed by the hypervisor from the copy in VM memory), the first SSH
// host key the VM sent on its private channel, and dom0's untrusted launch metadata.
// Waiters are bounded in time and number; subscribers hear of each report as it arrives.
import { TrustlaunchError } from '../../protocol/errors.js';
import type { VmReport } from './capabilities.js';
import type { DomainId } from './domain-id.js';

export const MAX_WAIT_MS = 10 * 60 * 1000;
const MAX_WAITERS_PER_VM = 16;
const MAX_SUBSCRIBERS = 16;

/** What the inbox keeps: the report without the attestation state the VM manager adds on reading. */
export type VmReportBase = Omit<VmReport, 'attestation' | 'note'>;

interface Waiter {
  resolve(report: VmReportBase): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export class VmReportInbox {
  readonly #reports = new Map<DomainId, VmReportBase>();
  readonly #waiters = new Map<DomainId, Set<Waiter>>();
  readonly #subscribers = new Set<(report: VmReportBase) => void>();

  get(vmId: DomainId): VmReportBase | undefined {
    return this.#reports.get(vmId);
  }

  list(): readonly VmReportBase[] {
    return [...this.#reports.values()];
  }

  put(report: VmReportBase): void {
    const frozen = Object.freeze({ ...report });
    this.#reports.set(report.vmId, frozen);
    for (const w of this.#take(report.vmId)) w.resolve(frozen);
    // Delivered on a later turn: a subscriber never runs inside the VM's channel handler.
    for (const s of [...this.#subscribers]) queueMicrotask(() => this.#subscribers.has(s) && s(frozen));
  }

  /** Forgets a destroyed VM; its waiters fail with NOT_FOUND. */
  drop(vmId: DomainId): void {
    this.#reports.delete(vmId);
    for (const w of this.#take(vmId)) w.reject(new TrustlaunchError('NOT_FOUND', `VM ${vmId} was destroyed before it reported a host key`));
  }

  subscribe(listener: (report: VmReportBase) => void): () => void {
    if (this.#subscribers.size >= MAX_SUBSCRIBERS) throw new TrustlaunchError('CAPACITY_EXCEEDED', 'too many report subscribers');
    this.#subscribers.add(listener);
    return () => this.#subscribers.delete(listener);
  }

  /** Drops every subscriber (the mini-domain that held them is gone). */
  unsubscribeAll(): void {
    this.#subscribers.clear();
  }

  wait(vmId: DomainId, timeoutMs: number): Promise<VmReportBase> {
    const known = this.#reports.get(vmId);
    if (known !== undefined) return Promise.resolve(known);
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0 || timeoutMs > MAX_WAIT_MS) return Promise.reject(new RangeError(`timeoutMs must be within 0..${MAX_WAIT_MS}`));
    const set = this.#waiters.get(vmId) ?? new Set<Waiter>();
    if (set.size >= MAX_WAITERS_PER_VM) return Promise.reject(new TrustlaunchError('CAPACITY_EXCEEDED', `too many waiters for VM ${vmId}`));
    this.#waiters.set(vmId, set);
    return new Promise<VmReportBase>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          set.delete(w);
          reject(new TrustlaunchError('TIMEOUT', `VM ${vmId} reported no host key within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      set.add(w);
    });
  }

  #take(vmId: DomainId): Waiter[] {
    const set = this.#waiters.get(vmId);
    this.#waiters.delete(vmId);
    const all = [...(set ?? [])];
    for (const w of all) clearTimeout(w.timer);
    return all;
  }
}
