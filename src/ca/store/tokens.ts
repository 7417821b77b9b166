// One-time enrollment tokens. Only their hash is stored; a token is used up when a
// registration challenge is issued with it, whatever becomes of that registration.
import type { Kysely } from 'kysely';
import type { CaSchema } from './schema.js';

type Db = Kysely<CaSchema>;

export interface TokenRecord {
  readonly id: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly usedAt?: number;
  readonly usedBy?: string;
}

export async function insertToken(db: Db, t: { id: string; tokenHash: string; createdAt: number; expiresAt: number }): Promise<void> {
  await db.insertInto('ca_tokens').values({ id: t.id, token_hash: t.tokenHash, created_at: t.createdAt, expires_at: t.expiresAt, used_at: null, used_by: null }).execute();
}

/** The token with this hash if it is still usable at `now`. */
export async function findUsableToken(db: Db, tokenHash: string, now: number): Promise<{ id: string } | undefined> {
  return db.selectFrom('ca_tokens').select('id').where('token_hash', '=', tokenHash).where('used_at', 'is', null).where('expires_at', '>', now).executeTakeFirst();
}

/** Marks the token used; false when another request used it first (or it expired meanwhile). */
export async function consumeToken(db: Db, id: string, nodeId: string, now: number): Promise<boolean> {
  const r = await db.updateTable('ca_tokens').set({ used_at: now, used_by: nodeId }).where('id', '=', id).where('used_at', 'is', null).where('expires_at', '>', now).executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

export async function listTokens(db: Db): Promise<TokenRecord[]> {
  const rows = await db.selectFrom('ca_tokens').select(['id', 'created_at', 'expires_at', 'used_at', 'used_by']).orderBy('created_at').orderBy('id').execute();
  return rows.map((r) => ({
    id: r.id,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    ...(r.used_at === null ? {} : { usedAt: r.used_at }),
    ...(r.used_by === null ? {} : { usedBy: r.used_by }),
  }));
}
