// A PCR bank (Part 1 §17 "PCR Operations"): SHA-256, PCR_COUNT registers, all zero after
// TPM2_Startup(CLEAR), extend = H(old ‖ digest). The hypervisor's measured boot and the
// software TPM share this one implementation; a storage-only device gets its bank from here.
import { createHash } from 'node:crypto';
import { PCR_COUNT } from '../protocol/pcrs.js';

export const PCR_DIGEST_SIZE = 32;

/** What a TPM engine needs of a PCR bank, so PCRs can live outside the engine. */
export interface PcrBankLike {
  extend(index: number, digest: Uint8Array): void;
  read(index: number): Buffer;
  /** TPM2_Startup(CLEAR): every register back to its initial value. */
  reset(): void;
}

/** PCRs 17–22: the DRTM PCRs of the PC Client Platform TPM Profile, all ones after TPM2_Startup until a DRTM event resets them. */
export const DRTM_PCRS: readonly number[] = [17, 18, 19, 20, 21, 22];

/** A register's value after TPM2_Startup(CLEAR): zero, or all ones for the DRTM PCRs (as swtpm and hardware TPMs report). */
export function pcrInitialValue(index: number): Buffer {
  return Buffer.alloc(PCR_DIGEST_SIZE, DRTM_PCRS.includes(index) ? 0xff : 0);
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= PCR_COUNT) throw new RangeError(`PCR index ${index} outside 0..${PCR_COUNT - 1}`);
}

/** PCR[index] ← SHA-256(PCR[index] ‖ digest). */
export function extendValue(old: Uint8Array, digest: Uint8Array): Buffer {
  return createHash('sha256').update(old).update(digest).digest();
}

export class PcrBank implements PcrBankLike {
  readonly #regs: Buffer[];
  readonly #initial: (index: number) => Buffer;

  /** `initial` gives a register's value after reset (default pcrInitialValue; e.g. the locality byte in PCR 0 after a StartupLocality event). */
  constructor(initial: (index: number) => Buffer = pcrInitialValue) {
    this.#initial = initial;
    this.#regs = Array.from({ length: PCR_COUNT }, (_, i) => initial(i));
  }

  extend(index: number, digest: Uint8Array): void {
    checkIndex(index);
    if (digest.length !== PCR_DIGEST_SIZE) throw new RangeError(`a SHA-256 PCR extends with 32 bytes, got ${digest.length}`);
    this.#regs[index] = extendValue(this.#regs[index] as Buffer, digest);
  }

  read(index: number): Buffer {
    checkIndex(index);
    return Buffer.from(this.#regs[index] as Buffer);
  }

  readMany(indices: readonly number[]): Map<number, Buffer> {
    return new Map(indices.map((i) => [i, this.read(i)]));
  }

  reset(): void {
    for (let i = 0; i < PCR_COUNT; i++) this.#regs[i] = this.#initial(i);
  }
}
