// X.509 path validation (RFC 5280 §6, the parts this project relies on). Building walks
// from the leaf to a pinned root, matching issuer and subject by canonical name; every
// link passes the same named checks. Names, CA flags and validity of a candidate issuer
// are never trusted before its signature over the child has verified.
import { verify as verifySignature } from 'node:crypto';
import { TrustlaunchError } from '../../protocol/errors.js';
import { SIGNATURE_ALGORITHMS, isSupportedSignatureOid, type Certificate } from './certificate.js';

export type ChainFailureReason =
  | 'expired'
  | 'not-yet-valid'
  | 'unknown-issuer'
  | 'bad-signature'
  | 'unsupported-algorithm'
  | 'weak-key'
  | 'not-a-ca'
  | 'key-usage'
  | 'path-length'
  | 'unsupported-critical-extension'
  | 'loop'
  | 'too-long';

export interface VerifyChainOptions {
  readonly intermediates?: readonly Certificate[];
  readonly roots: readonly Certificate[];
  readonly now?: Date;
  /** Longest chain accepted, leaf and root included (default 6). */
  readonly maxLength?: number;
}

/** Extensions whose semantics we process or which cannot widen trust; any other critical one fails the chain. */
const UNDERSTOOD_EXTENSIONS = new Set([
  '2.5.29.15', // keyUsage
  '2.5.29.17', // subjectAltName (critical in EK certificates with an empty subject)
  '2.5.29.19', // basicConstraints
  '2.5.29.37', // extKeyUsage (its meaning is checked by the caller, e.g. the EK profile)
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.32', // certificatePolicies (no policy is required, so any is acceptable)
  '2.5.29.9', // subjectDirectoryAttributes (TPM specification in EK certificates)
]);

const MIN_RSA_BITS = 2048;
const DEFAULT_MAX_LENGTH = 6;
const MAX_INTERMEDIATES = 16;
const MAX_CANDIDATES_TRIED = 64;

class ChainFailure {
  constructor(
    readonly reason: ChainFailureReason,
    readonly certificate: Certificate,
    readonly message: string,
  ) {}
}

// --- the named checks ---------------------------------------------------------------

function checkValidity(cert: Certificate, now: Date): ChainFailure | undefined {
  if (now.getTime() < cert.notBefore.getTime()) return new ChainFailure('not-yet-valid', cert, `not valid before ${cert.notBefore.toISOString()}`);
  if (now.getTime() > cert.notAfter.getTime()) return new ChainFailure('expired', cert, `expired at ${cert.notAfter.toISOString()}`);
  return undefined;
}

function checkCriticalExtensions(cert: Certificate): ChainFailure | undefined {
  const unknown = cert.extensions.find((e) => e.critical && !UNDERSTOOD_EXTENSIONS.has(e.oid));
  return unknown === undefined ? undefined : new ChainFailure('unsupported-critical-extension', cert, `unhandled critical extension ${unknown.oid}`);
}

/** The signature of `child` verifies with `issuer`'s public key under an allowed algorithm. */
function checkSignature(child: Certificate, issuer: Certificate): ChainFailure | undefined {
  const { tbs, algorithmOid, signature } = child.signed;
  if (!isSupportedSignatureOid(algorithmOid)) return new ChainFailure('unsupported-algorithm', child, `signature algorithm ${algorithmOid} is not allowed`);
  const algorithm = SIGNATURE_ALGORITHMS[algorithmOid];
  const key = issuer.publicKey;
  if (key.asymmetricKeyType !== algorithm.key) {
    return new ChainFailure('bad-signature', child, `${algorithm.name} signature but the issuer key is ${key.asymmetricKeyType ?? 'unknown'}`);
  }
  if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) {
    return new ChainFailure('weak-key', issuer, `RSA key shorter than ${MIN_RSA_BITS} bits`);
  }
  let ok = false;
  try {
    ok = verifySignature(algorithm.hash, tbs, key, signature);
  } catch {
    ok = false; // a malformed signature value is a bad signature, not a crash
  }
  return ok ? undefined : new ChainFailure('bad-signature', child, `signature does not verify with the key of ${issuer.subject}`);
}

/** RFC 5280 §6.1.4 (k), (l), (n): the issuer is a CA, may sign certificates, and its path length allows the intermediates below it. */
function checkIssuerAuthority(issuer: Certificate, intermediatesBelow: number): ChainFailure | undefined {
  if (issuer.basicConstraints?.ca !== true) return new ChainFailure('not-a-ca', issuer, 'basicConstraints cA is not set');
  if (issuer.keyUsage !== undefined && !issuer.keyUsage.includes('keyCertSign')) return new ChainFailure('key-usage', issuer, 'keyUsage lacks keyCertSign');
  const limit = issuer.basicConstraints.pathLength;
  if (limit !== undefined && intermediatesBelow > limit) {
    return new ChainFailure('path-length', issuer, `pathLenConstraint ${limit} but ${intermediatesBelow} intermediate(s) follow`);
  }
  return undefined;
}

function isSelfIssued(cert: Certificate): boolean {
  return cert.canonicalSubject === cert.canonicalIssuer;
}

// --- path building --------------------------------------------------------------------

interface Search {
  readonly roots: readonly Certificate[];
  readonly pool: readonly Certificate[];
  readonly now: Date;
  readonly maxLength: number;
  /** Candidate issuers still to be tried: bounds the search on hostile pools. */
  budget: number;
  /** The most informative failure seen so far (the deepest one). */
  failure: { depth: number; failure: ChainFailure } | undefined;
}

function note(search: Search, depth: number, failure: ChainFailure): undefined {
  if (search.failure === undefined || depth >= search.failure.depth) search.failure = { depth, failure };
  return undefined;
}

/** Extends `path` (leaf first) to a root; returns the completed path or undefined (failure noted). */
function extend(search: Search, path: readonly Certificate[], intermediatesBelow: number): Certificate[] | undefined {
  const depth = path.length;
  const child = path[depth - 1] as Certificate;
  const candidates = [...search.roots.map((c) => ({ cert: c, root: true })), ...search.pool.map((c) => ({ cert: c, root: false }))].filter(
    ({ cert }) => cert.canonicalSubject === child.canonicalIssuer,
  );
  if (candidates.length === 0) return note(search, depth, new ChainFailure('unknown-issuer', child, `no trusted or intermediate certificate named ${child.issuer}`));
  for (const { cert: issuer, root } of candidates) {
    if (path.some((c) => c.der.equals(issuer.der))) {
      note(search, depth, new ChainFailure('loop', issuer, 'the chain returns to a certificate already in it'));
      continue;
    }
    if (search.budget-- <= 0) {
      note(search, depth, new ChainFailure('too-long', child, 'too many candidate issuers'));
      return undefined;
    }
    if (depth + 1 > search.maxLength) {
      note(search, depth, new ChainFailure('too-long', child, `the chain is longer than ${search.maxLength} certificates`));
      continue;
    }
    const failure =
      checkSignature(child, issuer) ??
      checkValidity(issuer, search.now) ??
      checkIssuerAuthority(issuer, intermediatesBelow) ??
      checkCriticalExtensions(issuer);
    if (failure !== undefined) {
      note(search, depth + (failure.certificate === issuer ? 1 : 0), failure);
      continue;
    }
    const next = [...path, issuer];
    if (root) return next;
    const found = extend(search, next, intermediatesBelow + (isSelfIssued(issuer) ? 0 : 1));
    if (found !== undefined) return found;
  }
  return undefined;
}

function fail(failure: ChainFailure): never {
  throw new TrustlaunchError('CERT_CHAIN_INVALID', `${failure.certificate.subject || '<empty subject>'}: ${failure.message}`, {
    detail: { reason: failure.reason, subject: failure.certificate.subject, serialNumber: failure.certificate.serialNumber },
  });
}

/**
 * Verifies that `leaf` chains to one of `roots` through `intermediates`, at `now`.
 * Returns the path leaf..root; throws CERT_CHAIN_INVALID with `detail.reason` otherwise.
 * Checks the leaf's validity and critical extensions, not its key usage: what a leaf may
 * be used for is its caller's policy (e.g. the EK profile's extended key usage).
 * Roots are trust anchors: their own signature is not checked, their validity and CA flag are.
 */
export function verifyChain(leaf: Certificate, opts: VerifyChainOptions): Promise<Certificate[]> {
  return Promise.resolve().then(() => verifyChainSync(leaf, opts));
}

export function verifyChainSync(leaf: Certificate, opts: VerifyChainOptions): Certificate[] {
  const now = opts.now ?? new Date();
  if (opts.roots.length === 0) throw new TypeError('verifyChain needs at least one root');
  const leafFailure = checkValidity(leaf, now) ?? checkCriticalExtensions(leaf);
  if (leafFailure !== undefined) fail(leafFailure);
  if (opts.roots.some((r) => r.der.equals(leaf.der))) return [leaf];
  const search: Search = {
    roots: opts.roots,
    pool: (opts.intermediates ?? []).slice(0, MAX_INTERMEDIATES),
    now,
    maxLength: opts.maxLength ?? DEFAULT_MAX_LENGTH,
    budget: MAX_CANDIDATES_TRIED,
    failure: undefined,
  };
  const path = extend(search, [leaf], 0);
  if (path !== undefined) return path;
  fail((search.failure as { failure: ChainFailure }).failure);
}
