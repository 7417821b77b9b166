// The CA's receipt-signing keys as a JWK Set (RFC 7517 §5): what the CA publishes and
// what a client pins. Each key carries `kid` (default: its RFC 7638 thumbprint), `alg`
// and `use: sig`; only ES256 (P-256) and EdDSA (Ed25519) keys sign receipts.
import type { KeyObject } from 'node:crypto';
import { TrustlaunchError } from '../../protocol/errors.js';
import { jwkThumbprint } from '../fingerprints.js';
import { exportPublicJwk, importPublicJwk, type PublicJwk } from '../keys.js';
import { algorithmForKey } from '../signatures.js';

export type ReceiptAlgorithm = 'ES256' | 'EdDSA';
export const RECEIPT_ALGORITHMS: readonly ReceiptAlgorithm[] = ['ES256', 'EdDSA'];

export type PublishedJwk = PublicJwk & { readonly kid: string; readonly alg: ReceiptAlgorithm; readonly use: 'sig' };
export interface Jwks {
  readonly keys: readonly PublishedJwk[];
}

/** A verification key as the verifier holds it. */
export interface PinnedKey {
  readonly key: KeyObject;
  readonly alg: ReceiptAlgorithm;
  /** Absent for keys pinned as bare KeyObjects: they match any `kid`. */
  readonly kid: string | undefined;
}

const MAX_JWKS_KEYS = 16;

/** The receipt algorithm of a key: EdDSA for Ed25519, ES256 for P-256; MALFORMED_KEY otherwise. */
export function receiptAlgorithmForKey(key: KeyObject): ReceiptAlgorithm {
  const alg = algorithmForKey(key);
  if (alg === 'ES384') throw new TrustlaunchError('MALFORMED_KEY', 'receipts are signed with ES256 (P-256) or EdDSA (Ed25519) keys');
  return alg;
}

/** The default `kid` of a receipt key: its RFC 7638 JWK thumbprint. */
export function receiptKeyId(key: KeyObject): string {
  return jwkThumbprint(key);
}

/** Publishes public keys (private keys give their public half) as a JWK Set. */
export function toJwks(keys: ReadonlyArray<{ readonly key: KeyObject; readonly kid?: string }>): Jwks {
  return {
    keys: keys.map(({ key, kid }) => ({ ...exportPublicJwk(key), kid: kid ?? receiptKeyId(key), alg: receiptAlgorithmForKey(key), use: 'sig' as const })),
  };
}

/** Reads a pinned JWK Set; every key must be a public ES256/EdDSA key whose `alg`, if given, fits it. */
export function parseJwks(input: unknown): PinnedKey[] {
  const keys = typeof input === 'object' && input !== null ? (input as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > MAX_JWKS_KEYS) {
    throw new TrustlaunchError('MALFORMED_KEY', `a JWK Set is {"keys": [...]} with 1..${MAX_JWKS_KEYS} keys`);
  }
  return keys.map((jwk: unknown) => {
    const key = importPublicJwk(jwk);
    const alg = receiptAlgorithmForKey(key);
    const { kid, alg: declared, use } = jwk as { kid?: unknown; alg?: unknown; use?: unknown };
    if (declared !== undefined && declared !== alg) throw new TrustlaunchError('MALFORMED_KEY', `JWK alg ${JSON.stringify(declared)} does not fit a key that signs ${alg}`);
    if (use !== undefined && use !== 'sig') throw new TrustlaunchError('MALFORMED_KEY', 'a receipt key must have use "sig"');
    if (kid !== undefined && (typeof kid !== 'string' || kid.length === 0 || kid.length > 128)) throw new TrustlaunchError('MALFORMED_KEY', 'JWK kid must be a short string');
    return { key, alg, kid };
  });
}
