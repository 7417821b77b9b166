// One event of a crypto-agile log (TCG_PCR_EVENT2, PC Client PFP §10.2.2) in neutral form,
// and the ways to make one. Binary and JSON forms both convert to and from this.
import { createHash } from 'node:crypto';
import { TPM_ALG } from '../constants.js';

export interface TcgDigest {
  /** TPM_ALG_ID of the bank. */
  readonly hashAlg: number;
  readonly digest: Buffer;
}

export interface TcgEvent {
  readonly pcrIndex: number;
  readonly eventType: number;
  /** TPML_DIGEST_VALUES: one digest per bank the log records. */
  readonly digests: readonly TcgDigest[];
  readonly event: Buffer;
}

/** The SHA-256 digest of an event, if it records that bank. */
export function sha256Of(e: TcgEvent): Buffer | undefined {
  return e.digests.find((d) => d.hashAlg === TPM_ALG.SHA256)?.digest;
}

/**
 * An event for the SHA-256 bank: `digest` is what gets extended; by default the SHA-256 of
 * the event data (the profile's rule for most types; for code, the digest of the image).
 */
export function sha256Event(pcrIndex: number, eventType: number, event: Uint8Array, digest?: Uint8Array): TcgEvent {
  const d = digest === undefined ? createHash('sha256').update(event).digest() : Buffer.from(digest);
  if (d.length !== 32) throw new RangeError('a SHA-256 event digest has 32 bytes');
  return { pcrIndex, eventType, digests: [{ hashAlg: TPM_ALG.SHA256, digest: d }], event: Buffer.from(event) };
}
