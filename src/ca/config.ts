// `ca.json`: the CA's configuration, written by `ca init` and read by `ca serve` and the
// admin commands. Nothing in it is secret (the admin token is stored only as its hash).
import { z } from 'zod';
import { readJsonFile } from '../fs/json-file.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { describeIssues } from '../protocol/messages.js';

export const CA_CONFIG_FORMAT = 'trustlaunch-ca/1';

/** File names inside a CA directory (docs/ca.md "Directory"). */
export const CA_FILES = {
  config: 'ca.json',
  identity: 'identity.json',
  adminToken: 'admin.token',
  receiptKey: 'receipt-key.pem',
  sshCaKey: 'ssh-ca-key.pem',
  sshCaPublicKey: 'ssh-ca.pub',
  rootCertificate: 'root-ca.pem',
  rootKey: 'root-ca-key.pem',
  tlsCertificate: 'tls-chain.pem',
  tlsKey: 'tls-key.pem',
  endorsementRoots: 'endorsement-roots',
  database: 'ca.db',
} as const;

export const DEFAULTS = {
  listen: '127.0.0.1:8443',
  receiptLifetimeSeconds: 7 * 24 * 3600,
  evidenceSkewSeconds: 300,
  registrationTtlSeconds: 300,
  enrollmentTokenTtlSeconds: 24 * 3600,
} as const;

/** `HOST:PORT` with an IPv4 address, a bracketed IPv6 address or a name. */
export const ListenSchema = z
  .string()
  .max(300)
  .regex(/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected HOST:PORT');

const RelativeFileSchema = z.string().min(1).max(255).regex(/^[A-Za-z0-9._-]+$/, 'a file name inside the CA directory');

export const CaConfigSchema = z.strictObject({
  format: z.literal(CA_CONFIG_FORMAT),
  issuer: z.string().min(1).max(256),
  receiptAlgorithm: z.enum(['ES256', 'EdDSA']),
  /** The receipt key's `kid` in the JWKS. */
  receiptKeyId: z.string().min(1).max(128),
  listen: ListenSchema,
  /** Extra DNS names / addresses of the TLS certificate (besides localhost, 127.0.0.1, ::1). */
  names: z.array(z.string().min(1).max(253)).max(32),
  receiptLifetimeSeconds: z.number().int().min(60).max(366 * 24 * 3600),
  evidenceSkewSeconds: z.number().int().min(1).max(3600),
  registrationTtlSeconds: z.number().int().min(10).max(24 * 3600),
  enrollmentTokenTtlSeconds: z.number().int().min(60).max(366 * 24 * 3600),
  /** `sha256:<hex>` of the admin token (http/auth.ts hashToken). */
  adminTokenHash: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  paths: z.strictObject({
    receiptKey: RelativeFileSchema,
    sshCaKey: RelativeFileSchema,
    sshCaPublicKey: RelativeFileSchema,
    rootCertificate: RelativeFileSchema,
    rootKey: RelativeFileSchema,
    tlsCertificate: RelativeFileSchema,
    tlsKey: RelativeFileSchema,
    endorsementRoots: RelativeFileSchema,
    database: RelativeFileSchema,
    adminToken: RelativeFileSchema,
    identity: RelativeFileSchema,
  }),
  createdAt: z.string().max(64),
});
export type CaConfig = z.infer<typeof CaConfigSchema>;

/** Splits `HOST:PORT` (IPv6 in brackets). */
export function parseListen(listen: string): { host: string; port: number } {
  const parsed = ListenSchema.safeParse(listen);
  if (!parsed.success) throw new TrustlaunchError('MALFORMED_REQUEST', `--listen ${JSON.stringify(listen.slice(0, 80))}: expected HOST:PORT`);
  const colon = listen.lastIndexOf(':');
  const rawHost = listen.slice(0, colon);
  const port = Number(listen.slice(colon + 1));
  if (port > 65535) throw new TrustlaunchError('MALFORMED_REQUEST', `port ${port} is out of range`);
  return { host: rawHost.startsWith('[') ? rawHost.slice(1, -1) : rawHost, port };
}

/** The https URL clients use for a listen address (0.0.0.0 and :: are reached on loopback). */
export function urlForListen(listen: string): string {
  const { host, port } = parseListen(listen);
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `https://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}

export async function readCaConfig(path: string): Promise<CaConfig> {
  const json = await readJsonFile(path, `${path} does not exist: run \`trustlaunch ca init --dir DIR\` first`);
  const parsed = CaConfigSchema.safeParse(json);
  if (!parsed.success) throw new TrustlaunchError('MALFORMED_REQUEST', `${path}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}
