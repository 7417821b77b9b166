// Hash helpers keyed by TPMI_ALG_HASH, so callers never translate algorithm ids by hand.
import { createHash, createHmac } from 'node:crypto';
import { HASH_ALGS, algName } from '../constants.js';

/** node:crypto's name for a TPM hash algorithm; a RangeError for one it does not know. */
export function nodeHashName(hashAlg: number): string {
  const h = HASH_ALGS.get(hashAlg);
  if (h === undefined) throw new RangeError(`${algName(hashAlg)} is not a hash algorithm`);
  return h.node;
}

export function hashSize(hashAlg: number): number {
  const h = HASH_ALGS.get(hashAlg);
  if (h === undefined) throw new RangeError(`${algName(hashAlg)} is not a hash algorithm`);
  return h.size;
}

export function tpmHash(hashAlg: number, ...parts: readonly Uint8Array[]): Buffer {
  const h = createHash(nodeHashName(hashAlg));
  for (const p of parts) h.update(p);
  return h.digest();
}

export function tpmHmac(hashAlg: number, key: Uint8Array, ...parts: readonly Uint8Array[]): Buffer {
  const h = createHmac(nodeHashName(hashAlg), key);
  for (const p of parts) h.update(p);
  return h.digest();
}
