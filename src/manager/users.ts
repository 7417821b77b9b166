// Users and their API tokens. A token is shown once, when the user is added; only its
// SHA-256 is stored (src/http/auth.ts), so the database alone lets nobody in.
import type { Kysely } from 'kysely';
import { generateToken, hashToken, tokenMatches } from '../http/auth.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { isUniqueViolation, transaction } from '../store/index.js';
import type { ManagerSchema } from './db/schema.js';
import { newId } from './ids.js';

export type Role = 'admin' | 'user';

export interface User {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  readonly createdAt: number;
}

type Db = Kysely<ManagerSchema>;

/** The user `manager init` creates; its token hash comes from the manager's config. */
export const BOOTSTRAP_ADMIN = 'admin';

function toUser(row: { id: string; name: string; role: Role; created_at: number }): User {
  return { id: row.id, name: row.name, role: row.role, createdAt: row.created_at };
}

/** Adds a user; returns the token, which exists nowhere else afterwards. CONFLICT if the name is taken. */
export async function addUser(db: Db, name: string, role: Role): Promise<{ user: User; token: string }> {
  const token = generateToken(role === 'admin' ? 'adm' : 'usr');
  const row = { id: newId('usr'), name, role, token_hash: hashToken(token), created_at: Date.now() };
  try {
    await db.insertInto('mgr_users').values(row).execute();
  } catch (e) {
    if (isUniqueViolation(e)) throw new TrustlaunchError('CONFLICT', `a user named ${name} already exists`);
    throw e;
  }
  return { user: toUser(row), token };
}

/**
 * Makes sure the bootstrap admin exists with exactly this token hash (from the manager's
 * config), so `manager init`'s token works against any database the manager is pointed at.
 */
export async function ensureBootstrapAdmin(db: Db, tokenHash: string): Promise<void> {
  await transaction(db, async (trx) => {
    const existing = await trx.selectFrom('mgr_users').select(['id', 'token_hash']).where('name', '=', BOOTSTRAP_ADMIN).executeTakeFirst();
    if (existing === undefined) {
      await trx
        .insertInto('mgr_users')
        .values({ id: newId('usr'), name: BOOTSTRAP_ADMIN, role: 'admin', token_hash: tokenHash, created_at: Date.now() })
        .execute();
    } else if (existing.token_hash !== tokenHash) {
      await trx.updateTable('mgr_users').set({ token_hash: tokenHash, role: 'admin' }).where('id', '=', existing.id).execute();
    }
  });
}

export async function listUsers(db: Db): Promise<User[]> {
  const rows = await db.selectFrom('mgr_users').select(['id', 'name', 'role', 'created_at']).orderBy('name').execute();
  return rows.map(toUser);
}

export async function findUser(db: Db, name: string): Promise<User | undefined> {
  const row = await db.selectFrom('mgr_users').select(['id', 'name', 'role', 'created_at']).where('name', '=', name).executeTakeFirst();
  return row === undefined ? undefined : toUser(row);
}

/**
 * Removes a user, its token and its VM records (the node sync then deletes those VMs from
 * their nodes as orphans). The bootstrap admin and the caller itself cannot be removed.
 */
export async function removeUser(db: Db, name: string, caller: User): Promise<void> {
  if (name === BOOTSTRAP_ADMIN) throw new TrustlaunchError('CONFLICT', 'the bootstrap admin cannot be removed (its token lives in the manager config)');
  if (name === caller.name) throw new TrustlaunchError('CONFLICT', 'a user cannot remove itself');
  const result = await db.deleteFrom('mgr_users').where('name', '=', name).executeTakeFirst();
  if (result.numDeletedRows === 0n) throw new TrustlaunchError('NOT_FOUND', `no user named ${name}`);
}

/** The user a bearer token belongs to, or undefined. */
export async function authenticate(db: Db, token: string): Promise<User | undefined> {
  const hash = hashToken(token);
  const row = await db.selectFrom('mgr_users').select(['id', 'name', 'role', 'created_at', 'token_hash']).where('token_hash', '=', hash).executeTakeFirst();
  // The lookup found the hash; compare once more in constant time before believing it.
  if (row === undefined || !tokenMatches(token, row.token_hash)) return undefined;
  return toUser(row);
}
