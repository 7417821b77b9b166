// Wire schemas for every message of DESIGN.md §4. Parsing is strict: unknown fields
// are rejected, every string and array has an upper bound, and binary travels as
// base64url without padding. Types are inferred from the schemas, so a message that
// parses is exactly a value of its type.
import { z } from 'zod';
import { isBase64url } from './base64url.js';
import { TrustlaunchError, type ErrorCode } from './errors.js';

// --- primitives ----------------------------------------------------------------

export const DigestSchema = z
  .string()
  .regex(/^sha256:[0-9a-f]{64}$/, 'expected sha256:<64 lowercase hex>') as unknown as z.ZodType<`sha256:${string}`>;

export const NonceSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/, 'expected 32 bytes as base64url without padding');

/** base64url without padding, canonical, decoding to at most `maxBytes` bytes. */
export function base64urlSchema(maxBytes: number, exactBytes?: number) {
  const maxChars = Math.ceil((maxBytes * 4) / 3);
  return z
    .string()
    .max(maxChars)
    .refine(isBase64url, 'expected base64url without padding')
    .refine(
      (s) => exactBytes === undefined || Buffer.from(s, 'base64url').length === exactBytes,
      exactBytes === undefined ? 'wrong length' : `expected exactly ${exactBytes} bytes`,
    );
}

/** Identifiers of nodes and VMs: DNS-label-like, so they fit hostnames, paths and key ids. */
export const IdSchema = z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, 'expected a lowercase DNS label (a-z, 0-9, -; at most 63)');

/** A DNS hostname (RFC 1123), used as the SSH certificate principal. */
export const HostnameSchema = z
  .string()
  .max(253)
  .regex(/^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/, 'expected a lowercase DNS hostname');

/** An OpenSSH public key line `type base64 [comment]`; Ed25519 or ECDSA P-256 only. */
export const SshPublicKeySchema = z
  .string()
  .max(1024)
  .regex(/^(ssh-ed25519|ecdsa-sha2-nistp256) [A-Za-z0-9+/]+={0,2}(?: [\x20-\x7e]{0,200})?$/, 'expected an OpenSSH ssh-ed25519 or ecdsa-sha2-nistp256 public key');

/** An OpenSSH fingerprint `SHA256:<base64 without padding>`. */
export const SshFingerprintSchema = z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/, 'expected SHA256:<43 base64 characters>');

export const PemSchema = z
  .string()
  .max(16_384)
  .regex(/^-----BEGIN [A-Z0-9 ]+-----\r?\n[\s\S]+-----END [A-Z0-9 ]+-----\s*$/, 'expected PEM');

const Hex32Schema = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits');
const PcrIndexKeySchema = z.string().regex(/^(?:[0-9]|1[0-9]|2[0-3])$/, 'expected a PCR index 0..23');

/** Unix time in seconds. */
export const UnixTimeSchema = z.number().int().min(0).max(2 ** 40);

// --- TPM evidence ------------------------------------------------------------------

/** PCR values by bank and index, as the quote's PCR selection names them. */
export const PcrValuesSchema = z.strictObject({
  sha256: z.record(PcrIndexKeySchema, Hex32Schema),
});
export type PcrValues = z.infer<typeof PcrValuesSchema>;

/** A TPM2_Quote result: the raw TPMS_ATTEST bytes, the raw TPMT_SIGNATURE and the PCR values quoted. */
export const TpmQuoteSchema = z.strictObject({
  attest: base64urlSchema(1024),
  signature: base64urlSchema(1024),
  pcrs: PcrValuesSchema,
});
export type TpmQuote = z.infer<typeof TpmQuoteSchema>;

/** One TCG crypto-agile event (TCG_PCR_EVENT2) in JSON form. */
export const EventSchema = z.strictObject({
  pcrIndex: z.number().int().min(0).max(23),
  eventType: z.number().int().min(0).max(0xffff_ffff),
  digests: z.array(z.strictObject({ alg: z.literal('sha256'), digest: Hex32Schema })).min(1).max(4),
  event: base64urlSchema(16_384),
});
export type EventJson = z.infer<typeof EventSchema>;

export const EventLogSchema = z.array(EventSchema).max(1024);
export type EventLogJson = z.infer<typeof EventLogSchema>;

// --- registration (DESIGN.md §4.1) ------------------------------------------------

export const RegistrationRequestSchema = z.strictObject({
  /** The one-time enrollment token (a secret: sent in the body, never in a URL). */
  token: z.string().min(16).max(256),
  nodeId: IdSchema,
  ek: z.strictObject({
    /** TPMT_PUBLIC of the endorsement key. */
    public: base64urlSchema(1024),
    /** DER of the EK certificate from the manufacturer. */
    certificate: base64urlSchema(4096),
  }),
  ak: z.strictObject({
    /** TPMT_PUBLIC of the attestation key. */
    public: base64urlSchema(1024),
    /** TPM2B_NAME contents: nameAlg ‖ H(TPMT_PUBLIC). */
    name: base64urlSchema(66),
  }),
});
export type RegistrationRequest = z.infer<typeof RegistrationRequestSchema>;

/** The CA's answer to a registration request: a credential bound to the AK name, and fresh qualifying data. */
export const CredentialChallengeSchema = z.strictObject({
  registrationId: z.string().min(16).max(64),
  /** TPM2B_ID_OBJECT contents (integrity HMAC ‖ encrypted credential). */
  credentialBlob: base64urlSchema(1024),
  /** TPM2B_ENCRYPTED_SECRET contents (RSA-OAEP ciphertext or ECC ephemeral point). */
  encryptedSecret: base64urlSchema(1024),
  /** What the platform quote's extraData must equal. */
  qualifyingData: base64urlSchema(32, 32),
  expiresAt: UnixTimeSchema,
});
export type CredentialChallenge = z.infer<typeof CredentialChallengeSchema>;

export const CredentialAnswerSchema = z.strictObject({
  /** The secret recovered by TPM2_ActivateCredential. */
  secret: base64urlSchema(64),
  /** A quote over the platform PCRs with the challenge's qualifying data. */
  quote: TpmQuoteSchema,
  eventLog: EventLogSchema,
});
export type CredentialAnswer = z.infer<typeof CredentialAnswerSchema>;

export const RegistrationResultSchema = z.strictObject({
  nodeId: IdSchema,
  status: z.literal('active'),
  /** The CA's certificate chain (PEM, CA root last) for the node to keep in its device. */
  caChain: z.array(PemSchema).min(1).max(4),
});
export type RegistrationResult = z.infer<typeof RegistrationResultSchema>;

// --- VM launch (DESIGN.md §4.2) ---------------------------------------------------

/** What the mini-domain asserts about one launch; its canonical JSON's SHA-256 is the quote's extraData. */
export const LaunchClaimsSchema = z.strictObject({
  nodeId: IdSchema,
  vmId: IdSchema,
  /** The user's nonce, as dom0 delivered it (untrusted: binding it catches any change). */
  nonce: NonceSchema,
  /** The VM's hostname: the principal of its SSH host certificate. */
  hostname: HostnameSchema,
  /** SHA-256 of the kernel image the hypervisor copied and booted. */
  kernel: DigestSchema,
  /** SHA-256 of the initramfs, when the image has one. */
  initrd: DigestSchema.optional(),
  /** SHA-256 of the kernel command line (UTF-8 bytes), when the image has one. */
  cmdline: DigestSchema.optional(),
  /** The SSH host key the VM reported over its private VM channel, `type base64` (no comment). */
  sshHostKey: SshPublicKeySchema,
  /** Fingerprint of the user's authorized login key installed in the VM, if any. */
  authorizedKeyFp: SshFingerprintSchema.optional(),
  /** When the mini-domain made the claims (unix seconds). */
  time: UnixTimeSchema,
});
export type LaunchClaims = z.infer<typeof LaunchClaimsSchema>;

export const EvidenceSchema = z.strictObject({
  claims: LaunchClaimsSchema,
  quote: TpmQuoteSchema,
  eventLog: EventLogSchema,
});
export type Evidence = z.infer<typeof EvidenceSchema>;

/** user → manager: create a VM (DESIGN.md §4.2 step 1). */
export const VmCreateRequestSchema = z.strictObject({
  /** An image name known to the manager, or its digest. */
  image: z.string().min(1).max(128),
  nonce: NonceSchema,
  name: IdSchema.optional(),
  /** The user's SSH public key to authorize in the VM. */
  sshPublicKey: SshPublicKeySchema.optional(),
});
export type VmCreateRequest = z.infer<typeof VmCreateRequestSchema>;

// --- receipt (DESIGN.md §4.3) -----------------------------------------------------

export const EAR_STATUSES = ['affirming', 'warning', 'contraindicated'] as const;
export type EarStatus = (typeof EAR_STATUSES)[number];

export const RECEIPT_TYP = 'eat+jwt';
export const RECEIPT_PROFILE = 'tag:trustlaunch.dev,2026:receipt/v1';

/** Why a launch was contraindicated: the failing pipeline step and its error code. */
export const ReceiptReasonSchema = z.strictObject({
  step: z.string().max(64),
  code: z.string().max(64),
  message: z.string().max(512),
});

/** JWT claims of a receipt (RFC 9711 EAT names; EAR-style status). */
export const ReceiptClaimsSchema = z.strictObject({
  iss: z.string().max(256),
  iat: UnixTimeSchema,
  exp: UnixTimeSchema,
  jti: z.string().max(64),
  eat_profile: z.literal(RECEIPT_PROFILE),
  eat_nonce: NonceSchema,
  'ear.status': z.enum(EAR_STATUSES),
  /** The VM id. */
  sub: IdSchema,
  node: IdSchema,
  hostname: HostnameSchema.optional(),
  kernel: DigestSchema.optional(),
  initrd: DigestSchema.optional(),
  cmdline: DigestSchema.optional(),
  ssh_host_key: SshPublicKeySchema.optional(),
  ssh_host_key_fp: SshFingerprintSchema.optional(),
  authorized_key_fp: SshFingerprintSchema.optional(),
  /** Name of the allowlist entry that matched. */
  allowlist: z.string().max(128).optional(),
  /** Present when status is contraindicated. */
  reason: ReceiptReasonSchema.optional(),
});
export type ReceiptClaims = z.infer<typeof ReceiptClaimsSchema>;

// --- parsing ---------------------------------------------------------------------

/** Formats zod issues as `path: message; …` for an error message a person can act on. */
export function describeIssues(error: { readonly issues: ReadonlyArray<{ readonly path: readonly PropertyKey[]; readonly message: string }> }): string {
  return error.issues
    .slice(0, 8)
    .map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '$'}: ${i.message}`)
    .join('; ');
}

/** Parses untrusted input with a schema or throws a TrustlaunchError naming every bad path. */
export function parseMessage<S extends z.ZodType>(schema: S, input: unknown, code: ErrorCode = 'MALFORMED_REQUEST'): z.infer<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new TrustlaunchError(code, describeIssues(result.error));
  return result.data;
}
