// The CA's public identity (docs/ca.md "Identity"): what `GET /v1/keys` returns and what
// every user pins. The fingerprint is `sha256:<hex>` of the RFC 8785 canonical JSON of
// exactly this document, so a user who pinned the fingerprint can check any copy of the
// document (from the CA, from `DIR/identity.json`, from a colleague) offline.
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { canonicalBytes } from '../protocol/canonical-json.js';
import { sha256Digest, type Digest } from '../protocol/digest.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { PemSchema, describeIssues } from '../protocol/messages.js';
import { parseJwks, type Jwks } from '../crypto/receipts.js';
import { parseSshPublicKey } from '../crypto/ssh-keys.js';
import { parseCertificate, type Certificate } from '../crypto/x509.js';

const JwkSchema = z.union([
  z.strictObject({ kty: z.literal('EC'), crv: z.literal('P-256'), x: z.string().max(64), y: z.string().max(64), kid: z.string().min(1).max(128), alg: z.literal('ES256'), use: z.literal('sig') }),
  z.strictObject({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string().max(64), kid: z.string().min(1).max(128), alg: z.literal('EdDSA'), use: z.literal('sig') }),
]);

export const CaIdentitySchema = z.strictObject({
  /** The `iss` of every receipt this CA signs. */
  issuer: z.string().min(1).max(256),
  /** The receipt signing keys (RFC 7517 JWK Set). */
  receiptKeys: z.strictObject({ keys: z.array(JwkSchema).min(1).max(16) }),
  /** The SSH host-CA key, for `@cert-authority` lines. */
  sshCaKey: z.string().max(256).regex(/^ssh-ed25519 [A-Za-z0-9+/]+={0,2}$/, 'expected an ssh-ed25519 public key without comment'),
  /** The CA root certificate: the CA's TLS identity chains to it, nodes keep it in their device. */
  tlsRoot: PemSchema,
});
export type CaIdentity = z.infer<typeof CaIdentitySchema>;

/** A CA fingerprint: `sha256:` and 64 hex digits. */
export type CaFingerprint = Digest;

/** `sha256:<hex>` of the canonical JSON of the identity document. */
export function identityFingerprint(doc: CaIdentity): CaFingerprint {
  return sha256Digest(canonicalBytes(doc));
}

/** The identity, ready to verify receipts and host certificates with. */
export interface PinnedCa {
  readonly issuer: string;
  readonly fingerprint: CaFingerprint;
  /** The receipt keys, checked to parse: what verifyReceipt takes as `keys`. */
  readonly receiptKeys: Jwks;
  readonly sshCaKey: KeyObject;
  readonly sshCaKeyLine: string;
  readonly tlsRoot: Certificate;
  readonly document: CaIdentity;
}

/**
 * Parses an untrusted identity document (MALFORMED_REQUEST / MALFORMED_KEY /
 * MALFORMED_CERTIFICATE), and when `expectedFingerprint` is given, refuses a document with
 * another fingerprint (CA_IDENTITY_MISMATCH). Every key and the certificate are parsed, so
 * a document that pins is a document that works.
 */
export function parseIdentity(input: unknown, expectedFingerprint?: string): PinnedCa {
  const parsed = CaIdentitySchema.safeParse(input);
  if (!parsed.success) throw new TrustlaunchError('MALFORMED_REQUEST', `CA identity: ${describeIssues(parsed.error)}`);
  const document = parsed.data;
  const fingerprint = identityFingerprint(document);
  if (expectedFingerprint !== undefined && fingerprint !== expectedFingerprint) {
    throw new TrustlaunchError('CA_IDENTITY_MISMATCH', `the CA identity has fingerprint ${fingerprint}, not the pinned ${expectedFingerprint}`);
  }
  const ssh = parseSshPublicKey(document.sshCaKey);
  if (ssh.type !== 'ssh-ed25519') throw new TrustlaunchError('MALFORMED_KEY', 'the SSH CA key must be ssh-ed25519');
  const tlsRoot = parseCertificate(document.tlsRoot);
  if (tlsRoot.basicConstraints?.ca !== true) throw new TrustlaunchError('MALFORMED_CERTIFICATE', 'the CA root certificate is not a CA certificate');
  parseJwks(document.receiptKeys);
  return {
    issuer: document.issuer,
    fingerprint,
    receiptKeys: document.receiptKeys,
    sshCaKey: ssh.key,
    sshCaKeyLine: document.sshCaKey,
    tlsRoot,
    document,
  };
}
