// The platform PCRs of a node whose auth device is the storage-only pci-nvstore: the
// device has no registers to measure into, so the hypervisor keeps the SHA-256 bank in
// its own memory (reset only when the node boots, like a TPM's PCRs with a platform
// reset). Measured boot extends it exactly as it extends a TPM's; the mini-domain, which
// runs the TPM engine for this backend, reads it and may extend only the PCRs the
// hypervisor does not measure (the same screening as the mediated TPM).
import { TrustlaunchError } from '../../../protocol/errors.js';
import { PLATFORM_PCRS } from '../../../protocol/pcrs.js';
import { PcrBank } from '../../../tpm/pcr-bank.js';
import type { PcrHolder } from '../device-slot.js';

export class PlatformPcrBank implements PcrHolder {
  readonly kind = 'pci-nvstore' as const;
  readonly description: string;
  readonly #bank = new PcrBank();

  constructor(description: string) {
    this.description = description;
  }

  powerOn(): Promise<void> {
    this.#bank.reset();
    return Promise.resolve();
  }

  powerOff(): Promise<void> {
    return Promise.resolve();
  }

  pcrExtend(pcr: number, digest: Uint8Array): Promise<void> {
    try {
      this.#bank.extend(pcr, digest);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  pcrRead(pcrs: readonly number[]): Promise<ReadonlyMap<number, Uint8Array>> {
    try {
      return Promise.resolve(this.readNow(pcrs));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /** Synchronous read (the mini-domain's TPM engine reads PCRs inside a command). */
  readNow(pcrs: readonly number[]): Map<number, Uint8Array> {
    return this.#bank.readMany(pcrs);
  }

  /** The mini-domain's extend: refused for the PCRs the hypervisor measures. */
  extendByMiniDomain(pcr: number, digest: Uint8Array, refuse: (why: string) => never): void {
    if (PLATFORM_PCRS.includes(pcr)) refuse(`extend PCR ${pcr} (measured by the hypervisor)`);
    if (!(digest instanceof Uint8Array)) throw new TrustlaunchError('MALFORMED_REQUEST', 'a PCR extend carries 32 bytes');
    this.#bank.extend(pcr, digest);
  }
}
