// The directory of `trustlaunch up` (docs/cli.md "up"): one directory per role, as if each
// ran on its own machine, and `cluster.json`, the non-secret summary a second `up --dir`
// resumes from (same ports, so a pinned CA URL stays right).
//
//   DIR/ca/               the CA directory (`ca init`)
//   DIR/manager/          the manager directory (`manager init`)
//   DIR/nodes/node-N/     each node's directory (`node init`)
//   DIR/user.token        the user's API token (0600)
//   DIR/logs/*.log        each role's log (JSON lines)
//   DIR/cluster.json      endpoints, fingerprint, ports, image digest
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../crypto/files.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { describeIssues } from '../protocol/messages.js';

export interface ClusterPaths {
  readonly dir: string;
  readonly ca: string;
  readonly manager: string;
  readonly nodes: string;
  node(id: string): string;
  readonly userToken: string;
  readonly logs: string;
  log(role: string): string;
  readonly summary: string;
}

export function clusterPaths(dir: string): ClusterPaths {
  return {
    dir,
    ca: join(dir, 'ca'),
    manager: join(dir, 'manager'),
    nodes: join(dir, 'nodes'),
    node: (id) => join(dir, 'nodes', id),
    userToken: join(dir, 'user.token'),
    logs: join(dir, 'logs'),
    log: (role) => join(dir, 'logs', `${role}.log`),
    summary: join(dir, 'cluster.json'),
  };
}

const Port = z.number().int().min(1).max(65535);

export const ClusterSummarySchema = z.strictObject({
  v: z.literal(1),
  ca: z.strictObject({ url: z.string(), port: Port, fingerprint: z.string() }),
  manager: z.strictObject({ url: z.string(), port: Port }),
  nodes: z.array(z.strictObject({ id: z.string(), url: z.string(), port: Port })),
  user: z.string(),
  image: z.strictObject({ name: z.string(), digest: z.string() }),
  /** The database URL with any password removed ('' for the SQLite files in DIR). */
  database: z.string(),
  attestation: z.enum(['on', 'off']),
  createdAt: z.string(),
});
export type ClusterSummary = z.infer<typeof ClusterSummarySchema>;

export async function readSummary(paths: ClusterPaths): Promise<ClusterSummary | undefined> {
  let text: string;
  try {
    text = await readFile(paths.summary, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new TrustlaunchError('MALFORMED_REQUEST', `${paths.summary} is not JSON`);
  }
  const parsed = ClusterSummarySchema.safeParse(json);
  if (!parsed.success) throw new TrustlaunchError('MALFORMED_REQUEST', `${paths.summary}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

export async function writeSummary(paths: ClusterPaths, summary: ClusterSummary): Promise<void> {
  await writeFileAtomic(paths.summary, `${JSON.stringify(ClusterSummarySchema.parse(summary), null, 2)}\n`, 0o644);
}
