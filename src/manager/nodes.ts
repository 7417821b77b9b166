// The node inventory: nodes join with a one-time token and the credentials the manager
// needs to reach their dom0 (endpoint, the CA its TLS chain leads to, a bearer token);
// the health poller records what each node reports and marks it down when it stops
// answering. Nothing here is trusted by users: placement is the manager's business, and
// the CA decides whether a node's VMs are believed.
import type { Kysely } from 'kysely';
import { z } from 'zod';
import { parseCertificate } from '../crypto/x509.js';
import { TrustlaunchError, isTrustlaunchError } from '../protocol/errors.js';
import { IdSchema, PemSchema } from '../protocol/messages.js';
import { transaction } from '../store/index.js';
import type { ManagerSchema, NodesTable } from './db/schema.js';
import { consumeJoinToken } from './join-tokens.js';
import type { NodeLoad, VmBackendKind } from './scheduler.js';

export const NodeJoinRequestSchema = z.strictObject({
  /** The one-time join token (a secret: in the body, never a URL). */
  token: z.string().min(16).max(256),
  nodeId: IdSchema,
  /** dom0's HTTPS base URL, e.g. https://127.0.0.1:9443 */
  endpoint: z.string().min(8).max(512),
  /** PEM of the CA certificate that dom0's TLS chain leads to; the manager pins it. */
  dom0CaCertificate: PemSchema,
  /** The bearer token the manager presents to dom0. */
  dom0Token: z.string().min(16).max(512).regex(/^[\x21-\x7e]+$/, 'expected printable ASCII without spaces'),
});
export type NodeJoinRequest = z.infer<typeof NodeJoinRequestSchema>;

export type NodeStatus = NodesTable['status'];

/** A node as stored. Its VM backend is not: see NodeState. */
export interface NodeRecord extends Omit<NodeLoad, 'vmBackend'> {
  readonly id: string;
  readonly endpoint: string;
  readonly status: NodeStatus;
  readonly joinedAt: number;
  readonly lastSeenAt: number | null;
  readonly lastError: string | null;
  readonly failures: number;
  readonly health: string | null;
  readonly deviceKind: string | null;
}

/**
 * A node with the VM backend it reported in its latest answered poll (null before one
 * since this manager started, or since it re-joined): what placement and the API see.
 */
export interface NodeState extends NodeRecord, NodeLoad {
  readonly vmBackend: VmBackendKind | null;
}

/** What the manager needs to talk to a node's dom0 (includes a secret: never log it). */
export interface NodeCredentials {
  readonly id: string;
  readonly endpoint: string;
  readonly dom0Ca: string;
  readonly dom0Token: string;
}

/** What a successful poll of dom0's GET /v1/node told us. */
export interface NodeHealthReport {
  readonly memoryTotalMiB: number;
  readonly memoryUsedMiB: number;
  readonly vmCount: number;
  readonly maxVms: number;
  readonly health: string;
  readonly deviceKind: string;
}

type Db = Kysely<ManagerSchema>;

function toNode(r: NodesTable): NodeRecord {
  return {
    id: r.id,
    endpoint: r.endpoint,
    status: r.status,
    joinedAt: r.joined_at,
    lastSeenAt: r.last_seen_at,
    lastError: r.last_error,
    failures: r.failures,
    memoryTotalMiB: r.memory_total_mib,
    memoryUsedMiB: r.memory_used_mib,
    vmCount: r.vm_count,
    maxVms: r.max_vms,
    health: r.health,
    deviceKind: r.device_kind,
  };
}

/** https://host:port[/path] with nothing else (no credentials, query or fragment); returned without a trailing slash. */
export function normaliseEndpoint(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'endpoint: not a URL');
  }
  if (url.protocol !== 'https:') throw new TrustlaunchError('MALFORMED_REQUEST', 'endpoint: dom0 is reached over https only');
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'endpoint: no credentials, query or fragment allowed');
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/**
 * Joins (or re-joins, with a fresh token: new endpoint or credentials after a node
 * restart) a node. The token is consumed in the same transaction, so a refused join
 * leaves it usable.
 */
export async function joinNode(db: Db, request: NodeJoinRequest): Promise<NodeRecord> {
  const endpoint = normaliseEndpoint(request.endpoint);
  let ca;
  try {
    ca = parseCertificate(request.dom0CaCertificate);
  } catch (e) {
    if (isTrustlaunchError(e)) throw new TrustlaunchError('MALFORMED_CERTIFICATE', `dom0CaCertificate: ${e.message}`);
    throw e;
  }
  if (ca.basicConstraints?.ca !== true) throw new TrustlaunchError('MALFORMED_CERTIFICATE', 'dom0CaCertificate: not a CA certificate');
  const now = Date.now();
  const fields = {
    endpoint,
    dom0_ca: ca.pem,
    dom0_token: request.dom0Token,
    status: 'joining' as const,
    joined_at: now,
    last_seen_at: null,
    last_error: null,
    failures: 0,
  };
  await transaction(db, async (trx) => {
    await consumeJoinToken(trx, request.token, request.nodeId);
    await trx
      .insertInto('mgr_nodes')
      .values({ id: request.nodeId, ...fields, memory_total_mib: 0, memory_used_mib: 0, vm_count: 0, max_vms: 0, health: null, device_kind: null })
      .onConflict((oc) => oc.column('id').doUpdateSet(fields))
      .execute();
    // New credentials may mean a new node behind the same id: what it holds is unknown.
    await trx.deleteFrom('mgr_node_blobs').where('node_id', '=', request.nodeId).execute();
  });
  return requireNode(db, request.nodeId);
}

export async function listNodes(db: Db): Promise<NodeRecord[]> {
  return (await db.selectFrom('mgr_nodes').selectAll().orderBy('id').execute()).map(toNode);
}

export async function findNode(db: Db, id: string): Promise<NodeRecord | undefined> {
  const row = await db.selectFrom('mgr_nodes').selectAll().where('id', '=', id).executeTakeFirst();
  return row === undefined ? undefined : toNode(row);
}

export async function requireNode(db: Db, id: string): Promise<NodeRecord> {
  const node = await findNode(db, id);
  if (node === undefined) throw new TrustlaunchError('NOT_FOUND', `no node ${id}`);
  return node;
}

export async function nodeCredentials(db: Db, id: string): Promise<NodeCredentials | undefined> {
  const row = await db.selectFrom('mgr_nodes').select(['id', 'endpoint', 'dom0_ca', 'dom0_token']).where('id', '=', id).executeTakeFirst();
  return row === undefined ? undefined : { id: row.id, endpoint: row.endpoint, dom0Ca: row.dom0_ca, dom0Token: row.dom0_token };
}

/** Removes a node from the inventory. Its VMs are the caller's business (the VM layer fails them). */
export async function deleteNode(db: Db, id: string): Promise<void> {
  const result = await db.deleteFrom('mgr_nodes').where('id', '=', id).executeTakeFirst();
  if (result.numDeletedRows === 0n) throw new TrustlaunchError('NOT_FOUND', `no node ${id}`);
}

export async function recordPollSuccess(db: Db, id: string, report: NodeHealthReport): Promise<void> {
  await db
    .updateTable('mgr_nodes')
    .set({
      status: 'up',
      last_seen_at: Date.now(),
      last_error: null,
      failures: 0,
      memory_total_mib: report.memoryTotalMiB,
      memory_used_mib: report.memoryUsedMiB,
      vm_count: report.vmCount,
      max_vms: report.maxVms,
      health: report.health,
      device_kind: report.deviceKind,
    })
    .where('id', '=', id)
    .execute();
}

/** Counts a failed poll; the node is down from the `downAfter`-th consecutive failure. Returns its status. */
export async function recordPollFailure(db: Db, id: string, error: string, downAfter: number): Promise<NodeStatus | undefined> {
  return transaction(db, async (trx) => {
    const row = await trx.selectFrom('mgr_nodes').select(['failures', 'status']).where('id', '=', id).executeTakeFirst();
    if (row === undefined) return undefined;
    const failures = row.failures + 1;
    const status: NodeStatus = failures >= downAfter ? 'down' : row.status;
    await trx.updateTable('mgr_nodes').set({ failures, status, last_error: error.slice(0, 500) }).where('id', '=', id).execute();
    return status;
  });
}

/** Notes that a blob now sits on a node. */
export async function recordDelivery(db: Db, nodeId: string, digest: string): Promise<void> {
  await db
    .insertInto('mgr_node_blobs')
    .values({ node_id: nodeId, digest, delivered_at: Date.now() })
    .onConflict((oc) => oc.columns(['node_id', 'digest']).doNothing())
    .execute();
}

export async function wasDelivered(db: Db, nodeId: string, digest: string): Promise<boolean> {
  return (await db.selectFrom('mgr_node_blobs').select('digest').where('node_id', '=', nodeId).where('digest', '=', digest).executeTakeFirst()) !== undefined;
}
