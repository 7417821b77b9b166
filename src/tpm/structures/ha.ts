// TPMT_HA (Part 2 §10.3.2): hashAlg ‖ digest, the digest's size fixed by hashAlg.
import { HASH_ALGS, TPM_ALG, algName } from '../constants.js';
import type { TpmReader } from '../marshal/reader.js';
import type { TpmWriter } from '../marshal/writer.js';

export interface TpmtHa {
  readonly hashAlg: number;
  readonly digest: Uint8Array;
}

/** Digest size of a TPMI_ALG_HASH, or undefined when the value is not a hash this code knows. */
export function digestSize(hashAlg: number): number | undefined {
  return HASH_ALGS.get(hashAlg)?.size;
}

/** Reads a TPMI_ALG_HASH; TPM_ALG_NULL only when `allowNull` (the "+" of TPMI_ALG_HASH+). */
export function readHashAlg(r: TpmReader, field: string, allowNull = false): number {
  const alg = r.u16(field);
  if (HASH_ALGS.has(alg) || (allowNull && alg === TPM_ALG.NULL)) return alg;
  return r.fail(field, `${algName(alg)} is not a hash algorithm`);
}

export function readTpmtHa(r: TpmReader, field = 'TPMT_HA'): TpmtHa {
  const hashAlg = readHashAlg(r, `${field}.hashAlg`, true);
  const digest = r.bytes(digestSize(hashAlg) ?? 0, `${field}.digest`);
  return { hashAlg, digest };
}

export function writeTpmtHa(w: TpmWriter, ha: TpmtHa): void {
  const size = ha.hashAlg === TPM_ALG.NULL ? 0 : digestSize(ha.hashAlg);
  if (size === undefined || size !== ha.digest.length) {
    throw new RangeError(`TPMT_HA: ${algName(ha.hashAlg)} wants ${String(size)} digest bytes, got ${ha.digest.length}`);
  }
  w.u16(ha.hashAlg).bytes(ha.digest);
}
