// The manager's directory and its configuration file.
//
//   DIR/manager.json        this config (0600)
//   DIR/admin.token         the bootstrap admin's token (0600), written by `manager init`
//   DIR/tls/ca.pem          the CA certificate clients pin for the manager's HTTPS
//   DIR/tls/ca-key.pem      its private key (0600), to re-issue the server certificate
//   DIR/tls/server.pem      server certificate chain, leaf first
//   DIR/tls/server-key.pem  its private key (0600)
//   DIR/images/sha256/<hex> image blobs; DIR/images/tmp/ uploads in progress
//   DIR/manager.db          the SQLite database (unless the config or --db names another)
//   DIR/endpoint            the URL the running manager listens on (written by serve)
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { TrustlaunchError } from '../protocol/errors.js';
import { describeIssues } from '../protocol/messages.js';
import { readSecretFile } from '../crypto/files.js';
import { readJsonFile } from '../fs/json-file.js';
import { SCHEDULER_NAMES } from './scheduler.js';

export interface ManagerPaths {
  readonly dir: string;
  readonly config: string;
  readonly adminToken: string;
  readonly tlsCa: string;
  readonly tlsCaKey: string;
  readonly tlsCert: string;
  readonly tlsKey: string;
  readonly images: string;
  readonly database: string;
  readonly endpoint: string;
}

export function managerPaths(dir: string): ManagerPaths {
  return {
    dir,
    config: join(dir, 'manager.json'),
    adminToken: join(dir, 'admin.token'),
    tlsCa: join(dir, 'tls', 'ca.pem'),
    tlsCaKey: join(dir, 'tls', 'ca-key.pem'),
    tlsCert: join(dir, 'tls', 'server.pem'),
    tlsKey: join(dir, 'tls', 'server-key.pem'),
    images: join(dir, 'images'),
    database: join(dir, 'manager.db'),
    endpoint: join(dir, 'endpoint'),
  };
}

const GiB = 1024 ** 3;

export const ManagerConfigSchema = z.strictObject({
  version: z.literal(1),
  listen: z.strictObject({ host: z.string().min(1).max(255), port: z.number().int().min(0).max(65535) }),
  /** Database URL (docs/storage.md); absent: DATABASE_URL, else DIR/manager.db. */
  database: z.string().min(1).max(2048).optional(),
  /** hashToken() of the bootstrap admin's token. */
  adminTokenHash: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  scheduler: z.enum(SCHEDULER_NAMES).default('least-loaded'),
  /** Memory each VM is given (and counted against its node's capacity). */
  vmMemoryMiB: z.number().int().min(1).max(1 << 20).default(256),
  /** How often every node's health is polled. */
  nodePollIntervalMs: z.number().int().min(50).max(600_000).default(2_000),
  /** Consecutive failed polls after which a node is down. */
  nodeDownAfterFailures: z.number().int().min(1).max(100).default(2),
  /** Timeout of each request to a dom0 (uploads excepted). */
  nodeRequestTimeoutMs: z.number().int().min(100).max(120_000).default(5_000),
  /** How often a VM on its way somewhere is looked at on its node (doubling up to 1 s). */
  vmPollIntervalMs: z.number().int().min(10).max(60_000).default(50),
  /** A VM not running this long after it was scheduled has failed (TIMEOUT). */
  launchTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(600_000),
  /** A VM not stopped this long after the stop was asked for has failed (TIMEOUT). */
  stopTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(120_000),
  maxBlobBytes: z.number().int().min(1).max(1024 * GiB).default(16 * GiB),
  joinTokenTtlMs: z.number().int().min(1_000).max(7 * 24 * 3_600_000).default(3_600_000),
});
export type ManagerConfig = z.infer<typeof ManagerConfigSchema>;
export type ManagerConfigInput = z.input<typeof ManagerConfigSchema>;

export async function readManagerConfig(dir: string): Promise<ManagerConfig> {
  const path = managerPaths(dir).config;
  const json = await readJsonFile(path, `${path} does not exist; run \`trustlaunch manager init --dir ${dir}\` first`, {
    // It holds the admin token's hash: read as a secret (0600, no symlink, bounded).
    read: async (p) => (await readSecretFile(p, { maxBytes: 64 * 1024 })).toString('utf8'),
  });
  const result = ManagerConfigSchema.safeParse(json);
  if (!result.success) throw new TrustlaunchError('MALFORMED_REQUEST', `${path}: ${describeIssues(result.error)}`);
  return result.data;
}

/** The database the manager opens: the --db flag, else the config's, else DATABASE_URL, else DIR/manager.db. */
export function databaseUrl(dir: string, config: ManagerConfig, flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined && flag !== '') return flag;
  if (config.database !== undefined) return config.database;
  const fromEnv = env['DATABASE_URL'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return `sqlite:${managerPaths(dir).database}`;
}

/** Reads a text file that is not secret (certificates, the endpoint). */
export async function readTextFile(path: string, maxBytes = 64 * 1024): Promise<string> {
  const buf = await readFile(path);
  if (buf.length > maxBytes) throw new TrustlaunchError('MALFORMED_REQUEST', `${path} is larger than ${maxBytes} bytes`);
  return buf.toString('utf8');
}
