// Registered nodes. A node row exists only once registration completed (status active);
// revocation is the one change it undergoes.
import type { Kysely, Selectable } from 'kysely';
import { TrustlaunchError } from '../../protocol/errors.js';
import { decodeBytes, encodeBytes, isUniqueViolation } from '../../store/index.js';
import type { CaSchema, NodeStatus, NodeTable } from './schema.js';

type Db = Kysely<CaSchema>;

export interface NodeRecord {
  readonly id: string;
  readonly status: NodeStatus;
  readonly platform: string;
  readonly registeredAt: number;
  readonly revokedAt?: number;
  readonly revokeReason?: string;
  readonly ekPublic: Buffer;
  readonly ekCertificate: Buffer;
  readonly akPublic: Buffer;
  readonly akName: Buffer;
}

function toNode(r: Selectable<NodeTable>): NodeRecord {
  return {
    id: r.id,
    status: r.status,
    platform: r.platform,
    registeredAt: r.registered_at,
    ...(r.revoked_at === null ? {} : { revokedAt: r.revoked_at }),
    ...(r.revoke_reason === null ? {} : { revokeReason: r.revoke_reason }),
    ekPublic: decodeBytes(r.ek_public),
    ekCertificate: decodeBytes(r.ek_certificate),
    akPublic: decodeBytes(r.ak_public),
    akName: decodeBytes(r.ak_name),
  };
}

export async function insertNode(db: Db, n: Omit<NodeRecord, 'status' | 'revokedAt' | 'revokeReason'>): Promise<void> {
  try {
    await db
      .insertInto('ca_nodes')
      .values({
        id: n.id,
        status: 'active',
        ek_public: encodeBytes(n.ekPublic),
        ek_certificate: encodeBytes(n.ekCertificate),
        ak_public: encodeBytes(n.akPublic),
        ak_name: encodeBytes(n.akName),
        platform: n.platform,
        registered_at: n.registeredAt,
        revoked_at: null,
        revoke_reason: null,
      })
      .execute();
  } catch (e) {
    if (isUniqueViolation(e)) throw new TrustlaunchError('NODE_ALREADY_REGISTERED', `node ${n.id} is already registered`);
    throw e;
  }
}

export async function findNode(db: Db, id: string): Promise<NodeRecord | undefined> {
  const row = await db.selectFrom('ca_nodes').selectAll().where('id', '=', id).executeTakeFirst();
  return row === undefined ? undefined : toNode(row);
}

export async function getNode(db: Db, id: string): Promise<NodeRecord> {
  const node = await findNode(db, id);
  if (node === undefined) throw new TrustlaunchError('NOT_FOUND', `no node ${id}`);
  return node;
}

export async function listNodes(db: Db): Promise<NodeRecord[]> {
  return (await db.selectFrom('ca_nodes').selectAll().orderBy('id').execute()).map(toNode);
}

/** Revokes a node; idempotent (the first revocation's time and reason stay). */
export async function revokeNode(db: Db, id: string, at: number, reason: string | undefined): Promise<NodeRecord> {
  await db.updateTable('ca_nodes').set({ status: 'revoked', revoked_at: at, revoke_reason: reason ?? null }).where('id', '=', id).where('status', '=', 'active').execute();
  return getNode(db, id);
}
