// Domain records as the admin API shows them (ISO times, no secrets).
import { parseCertificate } from '../../crypto/x509.js';
import { toBase64url } from '../../protocol/base64url.js';
import type { AllowlistEntry } from '../policy/allowlist.js';
import type { PlatformReference } from '../policy/platform.js';
import type { DecisionRow } from '../store/decisions.js';
import type { NodeRecord } from '../store/nodes.js';
import type { TokenRecord } from '../store/tokens.js';
import type { z } from 'zod';
import type { AllowlistViewSchema, DecisionViewSchema, NodeViewSchema, PlatformViewSchema, TokenViewSchema } from './schemas.js';

export const iso = (ms: number): string => new Date(ms).toISOString();

export function tokenView(t: TokenRecord): z.infer<typeof TokenViewSchema> {
  return { id: t.id, createdAt: iso(t.createdAt), expiresAt: iso(t.expiresAt), ...(t.usedAt === undefined ? {} : { usedAt: iso(t.usedAt) }), ...(t.usedBy === undefined ? {} : { usedBy: t.usedBy }) };
}

export function allowlistView(e: AllowlistEntry): z.infer<typeof AllowlistViewSchema> {
  return {
    name: e.name,
    kernel: e.kernel,
    ...(e.initrd === undefined ? {} : { initrd: e.initrd }),
    ...(e.cmdline === undefined ? {} : { cmdline: e.cmdline }),
    createdAt: iso(e.createdAt),
    ...(e.expiresAt === undefined ? {} : { expiresAt: iso(e.expiresAt) }),
    ...(e.revokedAt === undefined ? {} : { revokedAt: iso(e.revokedAt) }),
  };
}

export function platformView(p: PlatformReference): z.infer<typeof PlatformViewSchema> {
  return {
    name: p.name,
    hypervisor: p.hypervisor,
    minidomain: p.minidomain,
    ...(p.firmware === undefined ? {} : { firmware: p.firmware }),
    ...(p.bootConfig === undefined ? {} : { bootConfig: p.bootConfig }),
    ...(p.pcrs === undefined ? {} : { pcrs: p.pcrs }),
    createdAt: iso(p.createdAt),
  };
}

export function nodeView(n: NodeRecord): z.infer<typeof NodeViewSchema> {
  const cert = parseCertificate(n.ekCertificate);
  return {
    id: n.id,
    status: n.status,
    platform: n.platform,
    registeredAt: iso(n.registeredAt),
    ...(n.revokedAt === undefined ? {} : { revokedAt: iso(n.revokedAt) }),
    ...(n.revokeReason === undefined ? {} : { revokeReason: n.revokeReason }),
    ekCertificate: { subject: cert.subject, issuer: cert.issuer, fingerprint: cert.sha256Fingerprint },
    akName: toBase64url(n.akName),
  };
}

export function decisionView(d: DecisionRow): z.infer<typeof DecisionViewSchema> {
  const opt = <K extends string>(k: K, v: string | null): Partial<Record<K, string>> => (v === null ? {} : ({ [k]: v } as Record<K, string>));
  return {
    id: d.id,
    at: iso(d.at),
    kind: d.kind,
    outcome: d.outcome,
    ...opt('node', d.node_id),
    ...opt('vm', d.vm_id),
    ...opt('nonce', d.nonce),
    ...opt('step', d.step),
    ...opt('code', d.code),
    ...opt('message', d.message),
    ...opt('evidenceHash', d.evidence_hash),
    ...opt('receiptJti', d.receipt_jti),
  };
}

/** Pagination cursors are opaque: base64url of the last decision id. */
export function encodeCursor(lastId: string): string {
  return Buffer.from(lastId).toString('base64url');
}

export function decodeCursor(cursor: string): string | undefined {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  return /^\d{15}-[0-9a-f]{16}$/.test(id) ? id : undefined;
}
