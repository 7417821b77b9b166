// Memory accounting for VMs: each VM declares its memory (the hypervisor's `memoryBytes`,
// the size of its VmCapability's memory) and is charged at least a floor (a backend's
// fixed cost: a process VM's node + sshd are ~50 MiB resident), plus any per-VM overhead
// the backend adds (QEMU's own process). A VM that would take the
// charged total beyond the capacity is refused with CAPACITY_EXCEEDED before anything runs.
import { TrustlaunchError } from '../../protocol/errors.js';
import type { DomainId } from '../hypervisor/index.js';

export interface MemoryLedgerOptions {
  readonly capacityBytes: number;
  /** Each VM is charged at least this much (default 64 MiB). */
  readonly minChargeBytes?: number;
}

export const DEFAULT_MIN_CHARGE_BYTES = 64 * 1024 * 1024;

export class MemoryLedger {
  readonly capacityBytes: number;
  readonly minChargeBytes: number;
  readonly #charges = new Map<DomainId, number>();
  #total = 0;

  constructor(options: MemoryLedgerOptions) {
    const min = options.minChargeBytes ?? DEFAULT_MIN_CHARGE_BYTES;
    if (!Number.isSafeInteger(options.capacityBytes) || options.capacityBytes < 1) throw new RangeError('capacityBytes must be a positive integer');
    if (!Number.isSafeInteger(min) || min < 0) throw new RangeError('minChargeBytes must be a non-negative integer');
    this.capacityBytes = options.capacityBytes;
    this.minChargeBytes = min;
  }

  chargeFor(declaredBytes: number): number {
    return Math.max(declaredBytes, this.minChargeBytes);
  }

  /** Throws CAPACITY_EXCEEDED unless a VM declaring `declaredBytes` fits now. */
  admit(declaredBytes: number): void {
    if (!Number.isSafeInteger(declaredBytes) || declaredBytes < 0) throw new TypeError('declared memory is a byte count');
    const charge = this.chargeFor(declaredBytes);
    if (this.#total + charge > this.capacityBytes) {
      throw new TrustlaunchError('CAPACITY_EXCEEDED', `a VM charged ${charge} bytes does not fit: ${this.capacityBytes - this.#total} of ${this.capacityBytes} bytes free`, {
        detail: { chargeBytes: charge, availableBytes: this.capacityBytes - this.#total, capacityBytes: this.capacityBytes },
      });
    }
  }

  /** Admits and records the VM's charge. */
  charge(vmId: DomainId, declaredBytes: number): number {
    if (this.#charges.has(vmId)) throw new TrustlaunchError('CONFLICT', `VM ${vmId} is already charged`);
    this.admit(declaredBytes);
    const charge = this.chargeFor(declaredBytes);
    this.#charges.set(vmId, charge);
    this.#total += charge;
    return charge;
  }

  release(vmId: DomainId): void {
    const charge = this.#charges.get(vmId);
    if (charge === undefined) return;
    this.#charges.delete(vmId);
    this.#total -= charge;
  }

  get chargedBytes(): number {
    return this.#total;
  }

  get vms(): number {
    return this.#charges.size;
  }
}
