// Bearer credentials: random tokens shown once, stored only as their SHA-256.
// Tokens carry 256 bits of randomness, so a plain hash (no salt, no KDF) is enough to
// make a leaked database useless for logging in.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { TrustlaunchError } from '../protocol/errors.js';

const TOKEN = /^tl[a-z]{1,8}_[A-Za-z0-9_-]{43}$/;

/** A new secret token such as `tladm_…`; `kind` tells people what it is for. */
export function generateToken(kind: 'adm' | 'enr' | 'usr' | 'join' | 'node'): string {
  return `tl${kind}_${randomBytes(32).toString('base64url')}`;
}

export function looksLikeToken(text: string): boolean {
  return TOKEN.test(text);
}

/** What is stored for a token: `sha256:<hex>` of its UTF-8 bytes. */
export function hashToken(token: string): string {
  return `sha256:${createHash('sha256').update(token, 'utf8').digest('hex')}`;
}

/** Compares a presented token with a stored hash in constant time. */
export function tokenMatches(token: string, storedHash: string): boolean {
  const a = Buffer.from(hashToken(token));
  const b = Buffer.from(storedHash);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The bearer token of a request, or UNAUTHENTICATED. Tokens never travel in URLs. */
export function bearerToken(request: FastifyRequest): string {
  const header = request.headers.authorization;
  if (header === undefined) throw new TrustlaunchError('UNAUTHENTICATED', 'missing Authorization: Bearer <token>');
  const match = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
  if (match?.[1] === undefined) throw new TrustlaunchError('UNAUTHENTICATED', 'malformed Authorization header');
  return match[1];
}
