// Quote verification (DESIGN.md §4.2 step 7) as a pipeline of named steps, each with its
// own error code. The signature is checked over the RAW TPMS_ATTEST bytes before anything
// in them is trusted; only values that passed every step are returned.
import { TrustlaunchError, type ErrorCode } from '../../protocol/errors.js';
import { fromBase64url } from '../../protocol/base64url.js';
import type { TpmQuote } from '../../protocol/messages.js';
import { PCR_COUNT } from '../../protocol/pcrs.js';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from '../constants.js';
import { pcrDigest } from '../crypto/pcr-digest.js';
import { verifyTpmtSignature } from '../crypto/signature.js';
import { parseTpmsAttest, type TpmsAttest, type TpmsClockInfo, type TpmsQuoteInfo } from '../structures/attest.js';
import { parseTpmtSignature, type TpmtSignature } from '../structures/signature.js';
import { cachedVerifierKey, type VerifierKey } from './attestation-key.js';

export const QUOTE_STEPS = [
  'decode',
  'attestationKey',
  'parseSignature',
  'verifySignature',
  'checkTpmGenerated',
  'parseAttest',
  'checkQualifyingData',
  'checkPcrSelection',
  'checkPcrDigest',
] as const;
export type QuoteStep = (typeof QUOTE_STEPS)[number];

export interface QuoteExpectations {
  /** The AK's TPMT_PUBLIC, as the CA registered it. */
  readonly akPublic: Uint8Array;
  /** What extraData must equal (SHA-256 of the canonical claims, or the challenge). */
  readonly qualifyingData: Uint8Array;
}

/** A quote that passed every step; nothing here is unverified. */
export interface VerifiedQuote {
  readonly qualifiedSigner: Buffer;
  readonly extraData: Buffer;
  readonly clockInfo: TpmsClockInfo;
  readonly firmwareVersion: bigint;
  /** SHA-256 bank values, exactly the quoted selection. */
  readonly pcrs: ReadonlyMap<number, Buffer>;
  readonly pcrDigest: Buffer;
}

/** The wire quote decoded once into bytes (a snapshot: later steps never re-read the input). */
interface DecodedQuote {
  readonly attest: Buffer;
  readonly signature: Buffer;
  readonly pcrs: ReadonlyMap<number, Buffer>;
}

function fail(step: QuoteStep, code: ErrorCode, message: string, cause?: unknown): never {
  throw new TrustlaunchError(code, `quote ${step}: ${message}`, cause === undefined ? { detail: { step } } : { detail: { step }, cause });
}

/** Runs `fn`; a TrustlaunchError from it gets the step in its detail, anything else is a bug. */
function step<T>(name: QuoteStep, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TrustlaunchError && e.detail?.['step'] === undefined) fail(name, e.code, e.message, e);
    throw e;
  }
}

const HEX32 = /^[0-9a-f]{64}$/;
const PCR_KEY = /^(?:[0-9]|1[0-9]|2[0-3])$/;

function decode(quote: TpmQuote): DecodedQuote {
  const q = quote as unknown;
  if (typeof q !== 'object' || q === null) fail('decode', 'TPM_PARSE_ERROR', 'not an object');
  const { attest, signature, pcrs } = q as Record<string, unknown>;
  if (typeof attest !== 'string' || typeof signature !== 'string') fail('decode', 'TPM_PARSE_ERROR', 'attest and signature must be base64url strings');
  const bank = typeof pcrs === 'object' && pcrs !== null ? (pcrs as Record<string, unknown>)['sha256'] : undefined;
  if (typeof bank !== 'object' || bank === null || Object.keys(pcrs as object).length !== 1) fail('decode', 'TPM_PARSE_ERROR', 'pcrs must be { sha256: { index: hex } }');
  const values = new Map<number, Buffer>();
  for (const [k, v] of Object.entries(bank)) {
    if (!PCR_KEY.test(k) || typeof v !== 'string' || !HEX32.test(v)) fail('decode', 'TPM_PARSE_ERROR', `PCR entry ${JSON.stringify(k).slice(0, 8)} is not index 0..${PCR_COUNT - 1} → 64 hex`);
    values.set(Number(k), Buffer.from(v, 'hex'));
  }
  return { attest: fromBase64url(attest, 'TPM_PARSE_ERROR'), signature: fromBase64url(signature, 'TPM_PARSE_ERROR'), pcrs: values };
}

function checkSignature(ak: VerifierKey, sig: TpmtSignature, attest: Buffer): void {
  if (sig.sigAlg !== ak.scheme || !('hash' in sig) || sig.hash !== ak.hashAlg) {
    fail('verifySignature', 'QUOTE_SIGNATURE_INVALID', "the signature scheme is not the AK's scheme");
  }
  if (!verifyTpmtSignature(ak.key, sig, attest)) fail('verifySignature', 'QUOTE_SIGNATURE_INVALID', 'the signature does not verify with the AK');
}

/** magic == TPM_GENERATED_VALUE and type == TPM_ST_ATTEST_QUOTE, read from the raw bytes before parsing. */
function checkTpmGenerated(attest: Buffer): void {
  if (attest.length < 6) fail('checkTpmGenerated', 'QUOTE_NOT_TPM_GENERATED', 'too short to be a TPMS_ATTEST');
  const magic = attest.readUInt32BE(0);
  if (magic !== TPM_GENERATED_VALUE) fail('checkTpmGenerated', 'QUOTE_NOT_TPM_GENERATED', `magic 0x${magic.toString(16)} is not TPM_GENERATED_VALUE (a TPM2_Sign forgery?)`);
  const type = attest.readUInt16BE(4);
  if (type !== TPM_ST.ATTEST_QUOTE) fail('checkTpmGenerated', 'QUOTE_NOT_TPM_GENERATED', `type 0x${type.toString(16)} is not TPM_ST_ATTEST_QUOTE`);
}

/** A Buffer over the same memory (parsed fields are already private copies, so no second copy). */
function view(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function checkQualifyingData(attest: TpmsAttest, expected: Uint8Array): void {
  if (!view(attest.extraData).equals(expected)) fail('checkQualifyingData', 'QUALIFYING_DATA_MISMATCH', 'extraData differs from the expected qualifying data');
}

/** The quoted (bank, index) set must equal the supplied set: every quoted PCR supplied, every supplied PCR quoted. */
function checkPcrSelection(info: TpmsQuoteInfo, supplied: ReadonlyMap<number, Buffer>): void {
  const quoted = new Set<number>();
  for (const s of info.pcrSelect) {
    for (const i of s.pcrs) {
      if (s.hash !== TPM_ALG.SHA256) fail('checkPcrSelection', 'PCR_SELECTION_MISMATCH', `PCR ${i} of bank 0x${s.hash.toString(16)} is quoted but only SHA-256 values are supplied`);
      if (quoted.has(i)) fail('checkPcrSelection', 'PCR_SELECTION_MISMATCH', `PCR ${i} is selected twice`);
      quoted.add(i);
      if (!supplied.has(i)) fail('checkPcrSelection', 'PCR_SELECTION_MISMATCH', `PCR ${i} is quoted but its value is not supplied`);
    }
  }
  for (const i of supplied.keys()) {
    if (!quoted.has(i)) fail('checkPcrSelection', 'PCR_SELECTION_MISMATCH', `PCR ${i} is supplied but not quoted`);
  }
}

function checkPcrDigest(ak: VerifierKey, info: TpmsQuoteInfo, supplied: ReadonlyMap<number, Buffer>): Buffer {
  const digest = pcrDigest(ak.hashAlg, info.pcrSelect, (_bank, i) => supplied.get(i));
  if (digest === undefined || !digest.equals(view(info.pcrDigest))) fail('checkPcrDigest', 'PCR_DIGEST_MISMATCH', 'pcrDigest differs from the digest of the supplied PCR values');
  return digest;
}

/** Verifies a TPM2_Quote against the AK and the expected qualifying data; throws the failing step's code. */
export function verifyQuote(quote: TpmQuote, expected: QuoteExpectations): VerifiedQuote {
  const q = step('decode', () => decode(quote));
  const ak = step('attestationKey', () => cachedVerifierKey(expected.akPublic));
  const sig = step('parseSignature', () => parseTpmtSignature(q.signature));
  step('verifySignature', () => checkSignature(ak, sig, q.attest));
  step('checkTpmGenerated', () => checkTpmGenerated(q.attest));
  const attest = step('parseAttest', () => parseTpmsAttest(q.attest));
  if (attest.attested.kind !== 'quote') return fail('parseAttest', 'QUOTE_NOT_TPM_GENERATED', 'not a quote');
  const info = attest.attested;
  step('checkQualifyingData', () => checkQualifyingData(attest, expected.qualifyingData));
  step('checkPcrSelection', () => checkPcrSelection(info, q.pcrs));
  const digest = step('checkPcrDigest', () => checkPcrDigest(ak, info, q.pcrs));
  return {
    qualifiedSigner: view(attest.qualifiedSigner),
    extraData: view(attest.extraData),
    clockInfo: attest.clockInfo,
    firmwareVersion: attest.firmwareVersion,
    pcrs: q.pcrs,
    pcrDigest: digest,
  };
}
