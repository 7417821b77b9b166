import { TrustlaunchError, type ErrorCode } from './errors.js';

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Encodes bytes as base64url without padding (RFC 4648 §5). */
export function toBase64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/**
 * Decodes base64url without padding, strictly: no padding, no other alphabet, and the
 * encoding must be canonical (re-encoding gives the same text), so one value has one form.
 */
export function fromBase64url(text: string, code: ErrorCode = 'MALFORMED_REQUEST'): Buffer {
  if (!B64URL.test(text) || text.length % 4 === 1) {
    throw new TrustlaunchError(code, 'not base64url without padding');
  }
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) {
    throw new TrustlaunchError(code, 'non-canonical base64url encoding');
  }
  return bytes;
}

export function isBase64url(text: string): boolean {
  if (!B64URL.test(text) || text.length % 4 === 1) return false;
  return Buffer.from(text, 'base64url').toString('base64url') === text;
}
