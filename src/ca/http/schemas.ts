// Request and response bodies of the CA's HTTP API (docs/ca.md "Endpoints"). Times in
// the admin API are ISO 8601 UTC strings; the protocol messages keep their own formats.
import { z } from 'zod';
import { DigestSchema, IdSchema, NonceSchema } from '../../protocol/messages.js';
import { PolicyNameSchema } from '../policy/allowlist.js';
import { PLATFORM_PCRS } from '../../protocol/pcrs.js';
import { CaIdentitySchema } from '../identity.js';
import { MAX_WAIT_SECONDS } from '../receipts/waiters.js';

const IsoTime = z.iso.datetime({ offset: true });

export const EvidenceResponseSchema = z.strictObject({
  receipt: z.string(),
  status: z.literal('affirming'),
  hostCertificate: z.string(),
});

export const ReceiptResponseSchema = z.strictObject({
  receipt: z.string(),
  hostCertificate: z.string().optional(),
});

export const NonceParamsSchema = z.strictObject({ nonce: NonceSchema });
export const ReceiptQuerySchema = z.strictObject({
  wait: z.coerce.number().int().min(0).max(MAX_WAIT_SECONDS).optional(),
});
export const RegistrationParamsSchema = z.strictObject({ id: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/) });

export const KeysResponseSchema = CaIdentitySchema;

// --- admin ------------------------------------------------------------------------

export const TokenCreateSchema = z.strictObject({
  /** Lifetime in seconds (default from ca.json, at most a year). */
  ttlSeconds: z.number().int().min(60).max(366 * 24 * 3600).optional(),
});
export const TokenCreatedSchema = z.strictObject({ id: z.string(), token: z.string(), expiresAt: IsoTime });
export const TokenViewSchema = z.strictObject({ id: z.string(), createdAt: IsoTime, expiresAt: IsoTime, usedAt: IsoTime.optional(), usedBy: z.string().optional() });

export const AllowlistAddSchema = z.strictObject({
  name: PolicyNameSchema,
  kernel: DigestSchema,
  initrd: DigestSchema.optional(),
  cmdline: DigestSchema.optional(),
  expiresAt: IsoTime.optional(),
});
export const AllowlistViewSchema = z.strictObject({
  name: z.string(),
  kernel: z.string(),
  initrd: z.string().optional(),
  cmdline: z.string().optional(),
  createdAt: IsoTime,
  expiresAt: IsoTime.optional(),
  revokedAt: IsoTime.optional(),
});
export const NameParamsSchema = z.strictObject({ name: PolicyNameSchema });

export const PlatformAddSchema = z.strictObject({
  name: PolicyNameSchema,
  hypervisor: DigestSchema,
  minidomain: DigestSchema,
  firmware: DigestSchema.optional(),
  bootConfig: DigestSchema.optional(),
  pcrs: z.partialRecord(z.enum(PLATFORM_PCRS.map(String) as [string, ...string[]]), z.string().regex(/^[0-9a-f]{64}$/)).optional(),
});
export const PlatformViewSchema = PlatformAddSchema.extend({ createdAt: IsoTime });

export const NodeViewSchema = z.strictObject({
  id: z.string(),
  status: z.enum(['active', 'revoked']),
  platform: z.string(),
  registeredAt: IsoTime,
  revokedAt: IsoTime.optional(),
  revokeReason: z.string().optional(),
  ekCertificate: z.strictObject({ subject: z.string(), issuer: z.string(), fingerprint: z.string() }),
  akName: z.string(),
});
export const NodeParamsSchema = z.strictObject({ id: IdSchema });
export const NodeRevokeSchema = z.strictObject({ reason: z.string().max(256).optional() });

export const DecisionViewSchema = z.strictObject({
  id: z.string(),
  at: IsoTime,
  kind: z.enum(['evidence', 'registration']),
  outcome: z.enum(['affirming', 'contraindicated', 'refused', 'challenged', 'registered']),
  node: z.string().optional(),
  vm: z.string().optional(),
  nonce: z.string().optional(),
  step: z.string().optional(),
  code: z.string().optional(),
  message: z.string().optional(),
  evidenceHash: z.string().optional(),
  receiptJti: z.string().optional(),
});
export const DecisionQuerySchema = z.strictObject({
  node: IdSchema.optional(),
  since: IsoTime.optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  cursor: z.string().regex(/^[A-Za-z0-9_-]{1,200}$/).optional(),
});
export const DecisionPageSchema = z.strictObject({ decisions: z.array(DecisionViewSchema), nextCursor: z.string().optional() });
