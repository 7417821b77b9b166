// Verifying a receipt: a visible pipeline of named steps, each with its own error code.
// The signature is checked with a pinned key before any claim is read; keys are never
// taken from the token (`jwk`, `jku`, `x5u`, `x5c` headers are ignored).
//
//   parse       RECEIPT_MALFORMED              three base64url parts, JSON header, size bound
//   algorithm   RECEIPT_ALGORITHM_NOT_ALLOWED  header alg in the pinned list (none/HS*/RS* never)
//   type        RECEIPT_TYPE_INVALID           header typ is eat+jwt
//   signature   RECEIPT_SIGNATURE_INVALID      verifies with a pinned key of that alg (and kid)
//   claims      RECEIPT_MALFORMED              payload matches ReceiptClaimsSchema exactly
//   issuer      RECEIPT_ISSUER_MISMATCH        iss is the pinned CA
//   time        RECEIPT_EXPIRED / _NOT_YET_VALID  exp and iat against now ± skew
//   nonce       NONCE_MISMATCH                 eat_nonce is the nonce this client sent
import { compactVerify, errors as joseErrors } from 'jose';
import { KeyObject, timingSafeEqual } from 'node:crypto';
import { TrustlaunchError, type ErrorCode } from '../../protocol/errors.js';
import { RECEIPT_TYP, ReceiptClaimsSchema, describeIssues, type ReceiptClaims } from '../../protocol/messages.js';
import { parseJsonObject, splitCompact } from './compact.js';
import { RECEIPT_ALGORITHMS, parseJwks, receiptAlgorithmForKey, type Jwks, type PinnedKey, type ReceiptAlgorithm } from './jwks.js';

export interface VerifyReceiptOptions {
  /** The pinned CA keys: a JWK Set (as published by toJwks) or bare public keys. */
  readonly keys: Jwks | readonly KeyObject[];
  /** The pinned CA's issuer name (`iss`). */
  readonly issuer: string;
  /** Algorithms accepted (default ES256 and EdDSA); nothing else can be allowed. */
  readonly algorithms?: readonly ReceiptAlgorithm[];
  /** The nonce this client sent; checked when given. */
  readonly expectedNonce?: string;
  /** Allowed clock difference in seconds, 0..300 (default 60). */
  readonly clockSkewSeconds?: number;
  readonly now?: Date;
}

export type ReceiptStep = 'parse' | 'algorithm' | 'type' | 'signature' | 'claims' | 'issuer' | 'time' | 'nonce';

const DEFAULT_SKEW_SECONDS = 60;
const MAX_SKEW_SECONDS = 300;

function fail(code: ErrorCode, step: ReceiptStep, message: string, cause?: unknown): never {
  throw new TrustlaunchError(code, message, cause === undefined ? { detail: { step } } : { detail: { step }, cause });
}

/** What the verifier acts on, read once from the untrusted header. */
interface HeaderSnapshot {
  readonly alg: unknown;
  readonly typ: unknown;
  readonly kid: unknown;
  readonly crit: unknown;
}

interface Settings {
  readonly keys: readonly PinnedKey[];
  readonly issuer: string;
  readonly algorithms: readonly ReceiptAlgorithm[];
  readonly expectedNonce: string | undefined;
  readonly skewSeconds: number;
  readonly nowSeconds: number;
}

/** The caller's own options: mistakes there are TypeErrors (or MALFORMED_KEY for a bad pinned key), never an attack. */
function settings(opts: VerifyReceiptOptions): Settings {
  const skew = opts.clockSkewSeconds ?? DEFAULT_SKEW_SECONDS;
  if (!Number.isInteger(skew) || skew < 0 || skew > MAX_SKEW_SECONDS) throw new TypeError(`clockSkewSeconds must be an integer 0..${MAX_SKEW_SECONDS}`);
  const algorithms = opts.algorithms ?? RECEIPT_ALGORITHMS;
  if (algorithms.length === 0 || algorithms.some((a) => !RECEIPT_ALGORITHMS.includes(a))) throw new TypeError('algorithms must be a non-empty subset of ES256, EdDSA');
  if (typeof opts.issuer !== 'string' || opts.issuer.length === 0) throw new TypeError('issuer is required');
  const now = opts.now ?? new Date();
  if (Number.isNaN(now.getTime())) throw new TypeError('now is not a valid date');
  const keys = Array.isArray(opts.keys)
    ? (opts.keys as readonly KeyObject[]).map((key): PinnedKey => {
        if (!(key instanceof KeyObject) || key.type !== 'public') throw new TypeError('pinned keys must be public KeyObjects');
        return { key, alg: receiptAlgorithmForKey(key), kid: undefined };
      })
    : parseJwks(opts.keys);
  if (keys.length === 0) throw new TypeError('at least one pinned key is required');
  return { keys, issuer: opts.issuer, algorithms, expectedNonce: opts.expectedNonce, skewSeconds: skew, nowSeconds: Math.floor(now.getTime() / 1000) };
}

// --- the steps ----------------------------------------------------------------------

function parseReceipt(jwt: unknown): { header: HeaderSnapshot; payload: Buffer } {
  const { header, payload } = splitCompact(jwt);
  const snapshot: HeaderSnapshot = { alg: header['alg'], typ: header['typ'], kid: header['kid'], crit: header['crit'] };
  if (snapshot.crit !== undefined) fail('RECEIPT_MALFORMED', 'parse', 'the receipt header has critical extensions ("crit"), which no receipt uses');
  if (snapshot.kid !== undefined && (typeof snapshot.kid !== 'string' || snapshot.kid.length > 128)) fail('RECEIPT_MALFORMED', 'parse', 'the receipt header kid is not a short string');
  return { header: snapshot, payload };
}

function checkAlgorithm(header: HeaderSnapshot, allowed: readonly ReceiptAlgorithm[]): ReceiptAlgorithm {
  const alg = header.alg;
  if (typeof alg !== 'string' || !(allowed as readonly string[]).includes(alg)) {
    fail('RECEIPT_ALGORITHM_NOT_ALLOWED', 'algorithm', `receipt algorithm ${JSON.stringify(alg)} is not one of ${allowed.join(', ')}`);
  }
  return alg as ReceiptAlgorithm;
}

function checkType(header: HeaderSnapshot): void {
  if (header.typ !== RECEIPT_TYP) fail('RECEIPT_TYPE_INVALID', 'type', `receipt typ is ${JSON.stringify(header.typ)}, not ${RECEIPT_TYP}`);
}

/** Tries the pinned keys of this algorithm (and kid, when both sides name one); returns the verified payload. */
async function verifySignature(jwt: string, header: HeaderSnapshot, alg: ReceiptAlgorithm, keys: readonly PinnedKey[]): Promise<Uint8Array> {
  const candidates = keys.filter((k) => k.alg === alg && (k.kid === undefined || header.kid === undefined || k.kid === header.kid));
  if (candidates.length === 0) fail('RECEIPT_SIGNATURE_INVALID', 'signature', `no pinned ${alg} key${typeof header.kid === 'string' ? ` with kid ${header.kid}` : ''}`);
  for (const candidate of candidates) {
    try {
      const { payload } = await compactVerify(jwt, candidate.key, { algorithms: [alg] });
      return payload;
    } catch (e) {
      if (e instanceof joseErrors.JWSSignatureVerificationFailed) continue;
      fail('RECEIPT_MALFORMED', 'signature', `the receipt is not a valid JWS: ${e instanceof Error ? e.message : String(e)}`, e);
    }
  }
  return fail('RECEIPT_SIGNATURE_INVALID', 'signature', 'the receipt signature does not verify with any pinned CA key');
}

function parseClaims(payload: Uint8Array): ReceiptClaims {
  const result = ReceiptClaimsSchema.safeParse(parseJsonObject(Buffer.from(payload), 'payload'));
  if (!result.success) fail('RECEIPT_MALFORMED', 'claims', `receipt claims: ${describeIssues(result.error)}`);
  if (result.data.exp <= result.data.iat) fail('RECEIPT_MALFORMED', 'claims', 'receipt exp is not after iat');
  return result.data;
}

function checkIssuer(claims: ReceiptClaims, issuer: string): void {
  if (claims.iss !== issuer) fail('RECEIPT_ISSUER_MISMATCH', 'issuer', `receipt issued by ${JSON.stringify(claims.iss)}, expected ${JSON.stringify(issuer)}`);
}

/** RFC 7519 §4.1.4: reject on or after exp; a receipt "issued" beyond the skew in the future is refused too. */
function checkTime(claims: ReceiptClaims, nowSeconds: number, skewSeconds: number): void {
  if (nowSeconds - skewSeconds >= claims.exp) fail('RECEIPT_EXPIRED', 'time', `receipt expired at ${new Date(claims.exp * 1000).toISOString()}`);
  if (claims.iat > nowSeconds + skewSeconds) fail('RECEIPT_NOT_YET_VALID', 'time', `receipt issued in the future (${new Date(claims.iat * 1000).toISOString()})`);
}

function checkNonce(claims: ReceiptClaims, expected: string | undefined): void {
  if (expected === undefined) return;
  const a = Buffer.from(claims.eat_nonce);
  const b = Buffer.from(expected);
  if (a.length !== b.length || !timingSafeEqual(a, b)) fail('NONCE_MISMATCH', 'nonce', 'the receipt nonce is not the nonce this client sent');
}

/** Verifies a receipt against pinned CA keys and returns its validated claims. */
export async function verifyReceipt(jwt: string, opts: VerifyReceiptOptions): Promise<ReceiptClaims> {
  const s = settings(opts);
  const { header } = parseReceipt(jwt);
  const alg = checkAlgorithm(header, s.algorithms);
  checkType(header);
  const payload = await verifySignature(jwt, header, alg, s.keys);
  const claims = parseClaims(payload);
  checkIssuer(claims, s.issuer);
  checkTime(claims, s.nowSeconds, s.skewSeconds);
  checkNonce(claims, s.expectedNonce);
  return claims;
}

/**
 * UNVERIFIED: decodes a receipt's header and claims without checking anything, for display
 * (e.g. `trustlaunch receipt show`). Never base a decision on the result.
 */
export function decodeReceiptUnverified(jwt: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const { header, payload } = splitCompact(jwt);
  return { header: { ...header }, claims: parseJsonObject(payload, 'payload') };
}
