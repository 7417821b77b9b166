// The JWS Compact Serialization (RFC 7515 §7.1) of a receipt, split and bounded before
// anything else looks at it. Nothing here is trusted: the signature step decides.
import { fromBase64url } from '../../protocol/base64url.js';
import { TrustlaunchError } from '../../protocol/errors.js';

/** A receipt is a few hundred bytes; anything far larger is not one. */
export const MAX_RECEIPT_CHARS = 16_384;

export interface CompactParts {
  /** The protected header, decoded (untrusted until the signature verifies). */
  readonly header: Readonly<Record<string, unknown>>;
  /** The payload bytes, not yet decoded. */
  readonly payload: Buffer;
  readonly signature: Buffer;
}

function malformed(message: string): TrustlaunchError {
  return new TrustlaunchError('RECEIPT_MALFORMED', message, { detail: { step: 'parse' } });
}

/** Parses JSON that must be an object (a JOSE header or a claims set). */
export function parseJsonObject(bytes: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw malformed(`the ${what} is not UTF-8 JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed(`the ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

export function splitCompact(jwt: unknown): CompactParts {
  if (typeof jwt !== 'string') throw malformed('a receipt is a string');
  if (jwt.length > MAX_RECEIPT_CHARS) throw malformed(`a receipt is at most ${MAX_RECEIPT_CHARS} characters`);
  const parts = jwt.split('.');
  if (parts.length !== 3) throw malformed('a receipt has three dot-separated parts (JWS compact serialization)');
  const [h, p, s] = parts as [string, string, string];
  const decode = (text: string, what: string): Buffer => {
    try {
      return fromBase64url(text, 'RECEIPT_MALFORMED');
    } catch {
      throw malformed(`the ${what} is not base64url without padding`);
    }
  };
  return { header: parseJsonObject(decode(h, 'header'), 'header'), payload: decode(p, 'payload'), signature: decode(s, 'signature') };
}
