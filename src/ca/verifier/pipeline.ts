// Judging evidence (DESIGN.md §4.2 step 7) as a visible pipeline of named steps, each
// with its own error code:
//
//   schema → node → quoteSignature → tpmGenerated → qualifyingData → pcrs → eventLog
//          → platform → kernel → nonce → time
//
// Everything but `nonce` is judged here, from the evidence and a policy snapshot, with no
// I/O, so it runs the same on the main thread and in worker threads. `nonce` is a unique
// constraint checked by the commit that stores the receipt (verifier/committer.ts): a
// nonce that already has a receipt makes the decision NONCE_REUSED (or keeps an earlier
// step's refusal), and the receipt signed here is discarded unseen.
import { createHash } from 'node:crypto';
import { isTrustlaunchError, type ErrorCode } from '../../protocol/errors.js';
import { EvidenceSchema, LaunchClaimsSchema, describeIssues, type Evidence, type LaunchClaims } from '../../protocol/messages.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { PLATFORM_PCRS } from '../../protocol/pcrs.js';
import { parseSshPublicKeyBlob, SshReader } from '../../crypto/ssh-keys.js';
import { verifyQuote, type QuoteStep, type VerifiedQuote } from '../../tpm/quote/verify.js';
import { matchAllowlist, type AllowlistEntry } from '../policy/allowlist.js';
import { matchPlatform, type PlatformMatch } from '../policy/platform.js';
import type { NodeFacts, PolicySnapshot } from '../policy/snapshot.js';
import type { HostKey, Refusal } from '../issuer/issuer.js';
import { readEvidence } from './evidence-reader.js';
import { claimsQualifyingData } from './qualifying-data.js';
import { checkQuotedValues, replayLog, type MeasurementCache, type ReplayedLog } from './measurements.js';

export const EVIDENCE_STEPS = ['schema', 'node', 'quoteSignature', 'tpmGenerated', 'qualifyingData', 'pcrs', 'eventLog', 'platform', 'kernel', 'nonce', 'time'] as const;
export type EvidenceStep = (typeof EVIDENCE_STEPS)[number];

/** Steps after `nonce`: a replayed nonce outranks their refusals. */
export const STEPS_AFTER_NONCE: ReadonlySet<string> = new Set<EvidenceStep>(['time']);

export interface JudgeOptions {
  readonly policy: PolicySnapshot;
  /** Milliseconds since the epoch. */
  readonly now: number;
  readonly skewSeconds: number;
  /**
   * When true, a lookup that misses (unknown node, kernel not allowlisted, no platform
   * reference) is a refusal. When false, the verdict is `stale` instead: the caller
   * reloads policy and judges again with fresh=true.
   */
  readonly fresh: boolean;
  /** Replays and platform matches remembered across calls (one per judge thread). */
  readonly measurements?: MeasurementCache;
}

export type Verdict =
  /** Nothing to bind a receipt to: the claims themselves did not parse. */
  | { readonly kind: 'malformed'; readonly refusal: Refusal }
  | { readonly kind: 'refused'; readonly claims: LaunchClaims; readonly refusal: Refusal; readonly hostKey: HostKey | undefined }
  | { readonly kind: 'affirmed'; readonly claims: LaunchClaims; readonly hostKey: HostKey; readonly entry: AllowlistEntry; readonly platform: string }
  | { readonly kind: 'stale' };

/** A failing step: carries its claims (when parsed) so the refusal can be receipted. */
class StepFailure extends Error {
  constructor(
    readonly refusal: Refusal,
    readonly claims: LaunchClaims | undefined,
  ) {
    super(refusal.message);
  }
}

class StalePolicy extends Error {}

function fail(step: EvidenceStep, code: ErrorCode, message: string, claims?: LaunchClaims): never {
  throw new StepFailure({ step, code, message }, claims);
}

// --- schema ---------------------------------------------------------------------------

interface Parsed {
  readonly evidence: Evidence;
  readonly hostKey: HostKey;
}

function parseEvidence(body: string): Parsed {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return fail('schema', 'MALFORMED_REQUEST', 'the body is not JSON');
  }
  const evidence = readEvidence(json) ?? schemaEvidence(json);
  try {
    return { evidence, hostKey: parseHostKey(evidence.claims.sshHostKey) };
  } catch (e) {
    return fail('schema', 'MALFORMED_KEY', `claims.sshHostKey: ${(e as Error).message}`, evidence.claims);
  }
}

/** EvidenceSchema's verdict (the fast reader declined): the evidence, or the refusal with its issues. */
function schemaEvidence(json: unknown): Evidence {
  const parsed = EvidenceSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  // The claims alone may still parse: then the refusal can be receipted for their nonce.
  const claims = LaunchClaimsSchema.safeParse(typeof json === 'object' && json !== null ? (json as { claims?: unknown }).claims : undefined);
  return fail('schema', 'MALFORMED_REQUEST', describeIssues(parsed.error), claims.success ? claims.data : undefined);
}

/**
 * The VM's host key, strictly: canonical base64, the blob's type equal to the line's, no
 * trailing bytes; an Ed25519 key is 32 bytes, an ECDSA key a valid uncompressed P-256
 * point (crypto's parser, which builds a key object, checks the point).
 */
function parseHostKey(line: string): HostKey {
  const [type, base64] = line.split(' ') as [string, string];
  const blob = Buffer.from(base64, 'base64');
  if (blob.toString('base64') !== base64) throw new TrustlaunchError('MALFORMED_KEY', 'base64 is not canonical');
  if (type === 'ssh-ed25519') {
    const r = new SshReader(blob);
    const inner = r.string().toString('latin1');
    const key = r.string();
    r.end();
    if (inner !== type || key.length !== 32) throw new TrustlaunchError('MALFORMED_KEY', 'not an ssh-ed25519 key blob');
  } else if (parseSshPublicKeyBlob(blob).type !== type) {
    throw new TrustlaunchError('MALFORMED_KEY', `the line says ${type} but the key blob is not`);
  }
  return { type, blob };
}

// --- node and quote -------------------------------------------------------------------

function checkNode(policy: PolicySnapshot, claims: LaunchClaims, fresh: boolean): NodeFacts {
  const node = policy.nodes.get(claims.nodeId);
  if (node === undefined) {
    if (!fresh) throw new StalePolicy();
    return fail('node', 'NODE_UNKNOWN', `node ${claims.nodeId} is not registered`, claims);
  }
  if (node.status === 'revoked') fail('node', 'NODE_REVOKED', `node ${claims.nodeId} has been revoked`, claims);
  if (node.status !== 'active') fail('node', 'NODE_NOT_ACTIVE', `node ${claims.nodeId} is ${String(node.status)}`, claims);
  return node;
}

/** Which of our steps each step of verifyQuote belongs to. */
const QUOTE_STEP: Readonly<Record<QuoteStep, EvidenceStep>> = {
  decode: 'quoteSignature',
  attestationKey: 'quoteSignature',
  parseSignature: 'quoteSignature',
  verifySignature: 'quoteSignature',
  checkTpmGenerated: 'tpmGenerated',
  parseAttest: 'tpmGenerated',
  checkQualifyingData: 'qualifyingData',
  checkPcrSelection: 'pcrs',
  checkPcrDigest: 'pcrs',
};

/** Quote signature, TPM-generated, qualifying data = SHA-256(canonical claims), PCRs. */
function checkQuote(evidence: Evidence, node: NodeFacts): VerifiedQuote {
  const { claims } = evidence;
  const qualifyingData = claimsQualifyingData(claims);
  let quote: VerifiedQuote;
  try {
    quote = verifyQuote(evidence.quote, { akPublic: node.akPublic, qualifyingData });
  } catch (e) {
    if (!isTrustlaunchError(e)) throw e;
    const step = QUOTE_STEP[e.detail?.['step'] as QuoteStep] ?? 'quoteSignature';
    return fail(step, e.code, e.message, claims);
  }
  const quoted = [...quote.pcrs.keys()].sort((a, b) => a - b);
  if (quoted.length !== PLATFORM_PCRS.length || quoted.some((p, i) => p !== PLATFORM_PCRS[i])) {
    fail('pcrs', 'PCR_SELECTION_MISMATCH', `the quote covers PCRs [${quoted.join(', ')}], not the platform PCRs [${PLATFORM_PCRS.join(', ')}]`, claims);
  }
  return quote;
}

// --- measurements and policy ----------------------------------------------------------

function checkEventLog(evidence: Evidence, quote: VerifiedQuote, cache: MeasurementCache | undefined): ReplayedLog {
  try {
    const log = cache === undefined ? replayLog(evidence.eventLog) : cache.replay(evidence.eventLog);
    checkQuotedValues(log, quote.pcrs);
    return log;
  } catch (e) {
    if (!isTrustlaunchError(e)) throw e;
    return fail('eventLog', e.code, e.message, evidence.claims);
  }
}

function checkPlatform(policy: PolicySnapshot, log: ReplayedLog, quote: VerifiedQuote, claims: LaunchClaims, fresh: boolean, cache: MeasurementCache | undefined): string {
  const match = (): PlatformMatch => matchPlatform(policy.platforms, log.events, quote.pcrs);
  const result = cache === undefined ? match() : cache.platform(log, policy.platforms, match);
  if (result.ok) return result.reference.name;
  if (!fresh) throw new StalePolicy();
  return fail('platform', 'PLATFORM_NOT_TRUSTED', result.message, claims);
}

function checkKernel(policy: PolicySnapshot, claims: LaunchClaims, now: number, fresh: boolean): AllowlistEntry {
  const match = matchAllowlist(policy.allowlist.get(claims.kernel) ?? [], claims, now);
  if (match.ok) return match.entry;
  if (!fresh && match.code === 'KERNEL_NOT_ALLOWED') throw new StalePolicy();
  return fail('kernel', match.code, match.message, claims);
}

function checkTime(claims: LaunchClaims, now: number, skewSeconds: number): void {
  const offset = claims.time - Math.floor(now / 1000);
  if (Math.abs(offset) > skewSeconds) {
    fail('time', 'EVIDENCE_STALE', `the evidence time is ${Math.abs(offset)} s ${offset < 0 ? 'in the past' : 'in the future'} (allowed skew ${skewSeconds} s)`, claims);
  }
}

// --- the pipeline ---------------------------------------------------------------------

/** Judges one evidence body (the raw request text). Bad input is a verdict; only a bug throws. */
export function judgeEvidence(body: string, opts: JudgeOptions): Verdict {
  let parsed: Parsed | undefined;
  try {
    parsed = parseEvidence(body);
    const { evidence, hostKey } = parsed;
    const { claims } = evidence;
    const node = checkNode(opts.policy, claims, opts.fresh);
    const quote = checkQuote(evidence, node);
    const log = checkEventLog(evidence, quote, opts.measurements);
    const platform = checkPlatform(opts.policy, log, quote, claims, opts.fresh, opts.measurements);
    const entry = checkKernel(opts.policy, claims, opts.now, opts.fresh);
    // (nonce: judged by the commit that stores the receipt)
    checkTime(claims, opts.now, opts.skewSeconds);
    return { kind: 'affirmed', claims, hostKey, entry, platform };
  } catch (e) {
    if (e instanceof StalePolicy) return { kind: 'stale' };
    if (e instanceof StepFailure) {
      return e.claims === undefined ? { kind: 'malformed', refusal: e.refusal } : { kind: 'refused', claims: e.claims, refusal: e.refusal, hostKey: parsed?.hostKey };
    }
    throw e; // a bug, not bad input
  }
}

/** `sha256:<hex>` of the evidence exactly as received. */
export function evidenceHash(body: string): string {
  return `sha256:${createHash('sha256').update(body, 'utf8').digest('hex')}`;
}
