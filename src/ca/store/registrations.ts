// Pending registrations: a credential challenge waiting for its answer. Each is answered
// at most once (the state changes to `answered` before the answer is judged).
import type { Kysely, Selectable } from 'kysely';
import { decodeBytes, encodeBytes } from '../../store/index.js';
import type { CaSchema, RegistrationTable } from './schema.js';

type Db = Kysely<CaSchema>;

export interface PendingRegistration {
  readonly id: string;
  readonly nodeId: string;
  readonly tokenId: string;
  readonly ekPublic: Buffer;
  readonly ekCertificate: Buffer;
  readonly akPublic: Buffer;
  readonly akName: Buffer;
  /** `sha256:<hex>` of the credential secret. */
  readonly secretHash: string;
  readonly qualifyingData: Buffer;
  readonly createdAt: number;
  readonly expiresAt: number;
}

function toPending(r: Selectable<RegistrationTable>): PendingRegistration {
  return {
    id: r.id,
    nodeId: r.node_id,
    tokenId: r.token_id,
    ekPublic: decodeBytes(r.ek_public),
    ekCertificate: decodeBytes(r.ek_certificate),
    akPublic: decodeBytes(r.ak_public),
    akName: decodeBytes(r.ak_name),
    secretHash: r.secret_hash,
    qualifyingData: decodeBytes(r.qualifying_data),
    createdAt: r.created_at,
    expiresAt: r.expires_at,
  };
}

export async function insertRegistration(db: Db, p: PendingRegistration): Promise<void> {
  await db
    .insertInto('ca_registrations')
    .values({
      id: p.id,
      node_id: p.nodeId,
      token_id: p.tokenId,
      ek_public: encodeBytes(p.ekPublic),
      ek_certificate: encodeBytes(p.ekCertificate),
      ak_public: encodeBytes(p.akPublic),
      ak_name: encodeBytes(p.akName),
      secret_hash: p.secretHash,
      qualifying_data: encodeBytes(p.qualifyingData),
      state: 'pending',
      created_at: p.createdAt,
      expires_at: p.expiresAt,
    })
    .execute();
}

/** Takes a pending, unexpired registration for its one answer; undefined if there is none. */
export async function takeRegistration(db: Db, id: string, now: number): Promise<PendingRegistration | undefined> {
  const r = await db.updateTable('ca_registrations').set({ state: 'answered' }).where('id', '=', id).where('state', '=', 'pending').where('expires_at', '>', now).executeTakeFirst();
  if (Number(r.numUpdatedRows) !== 1) return undefined;
  const row = await db.selectFrom('ca_registrations').selectAll().where('id', '=', id).executeTakeFirst();
  return row === undefined ? undefined : toPending(row);
}
