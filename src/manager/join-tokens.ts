// One-time join tokens for nodes: made by an admin, stored hashed, consumed by the first
// join that presents them before they expire.
import type { Kysely, Transaction } from 'kysely';
import { generateToken, hashToken } from '../http/auth.js';
import { TrustlaunchError } from '../protocol/errors.js';
import type { ManagerSchema } from './db/schema.js';
import { newId } from './ids.js';

export const DEFAULT_JOIN_TOKEN_TTL_MS = 60 * 60_000;
export const MAX_JOIN_TOKEN_TTL_MS = 7 * 24 * 60 * 60_000;

export async function createJoinToken(db: Kysely<ManagerSchema>, ttlMs = DEFAULT_JOIN_TOKEN_TTL_MS): Promise<{ id: string; token: string; expiresAt: number }> {
  if (!(Number.isSafeInteger(ttlMs) && ttlMs > 0 && ttlMs <= MAX_JOIN_TOKEN_TTL_MS)) {
    throw new TrustlaunchError('MALFORMED_REQUEST', `a join token lives between 1 ms and ${MAX_JOIN_TOKEN_TTL_MS} ms`);
  }
  const token = generateToken('join');
  const now = Date.now();
  const row = { id: newId('jt'), token_hash: hashToken(token), created_at: now, expires_at: now + ttlMs, used_at: null, used_by: null };
  await db.insertInto('mgr_join_tokens').values(row).execute();
  return { id: row.id, token, expiresAt: row.expires_at };
}

/** Marks the token used by `nodeId`; TOKEN_INVALID when unknown, used or expired. Call inside the join's transaction. */
export async function consumeJoinToken(trx: Transaction<ManagerSchema>, token: string, nodeId: string): Promise<void> {
  const now = Date.now();
  const result = await trx
    .updateTable('mgr_join_tokens')
    .set({ used_at: now, used_by: nodeId })
    .where('token_hash', '=', hashToken(token))
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  if (result.numUpdatedRows !== 1n) throw new TrustlaunchError('TOKEN_INVALID', 'the join token is unknown, already used or expired');
}
