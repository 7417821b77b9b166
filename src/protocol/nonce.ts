import { randomBytes } from 'node:crypto';
import { TrustlaunchError } from './errors.js';

/** A nonce: exactly 32 random bytes, base64url without padding (43 characters). */
export type Nonce = string & { readonly __nonce: unique symbol };

export const NONCE_BYTES = 32;
const NONCE = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/; // 43 chars; the last carries 4 bits, 2 zero

export function isNonce(text: unknown): text is Nonce {
  return typeof text === 'string' && NONCE.test(text);
}

export function parseNonce(text: string): Nonce {
  if (!isNonce(text)) {
    throw new TrustlaunchError('MALFORMED_NONCE', 'a nonce is 32 bytes as base64url without padding (43 characters)');
  }
  return text;
}

export function newNonce(): Nonce {
  return randomBytes(NONCE_BYTES).toString('base64url') as Nonce;
}

export function nonceBytes(nonce: Nonce): Buffer {
  return Buffer.from(parseNonce(nonce), 'base64url');
}
