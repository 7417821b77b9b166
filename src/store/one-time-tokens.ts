// One-time tokens, the same table wherever a service hands out a secret that may be
// presented once before it expires (the CA's enrollment tokens, the manager's join
// tokens): only the token's hash is stored, and the first use records when and by whom.
import type { Kysely } from 'kysely';
import { COLUMN } from './columns.js';

export interface OneTimeTokenTable {
  id: string;
  token_hash: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  used_by: string | null;
}

/** Call from a migration: creates `table` with the columns of OneTimeTokenTable. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations see any schema
export async function createOneTimeTokenTable(db: Kysely<any>, table: string): Promise<void> {
  await db.schema
    .createTable(table)
    .addColumn('id', COLUMN.id, (c) => c.primaryKey())
    .addColumn('token_hash', COLUMN.text, (c) => c.notNull().unique())
    .addColumn('created_at', COLUMN.time, (c) => c.notNull())
    .addColumn('expires_at', COLUMN.time, (c) => c.notNull())
    .addColumn('used_at', COLUMN.time)
    .addColumn('used_by', COLUMN.text)
    .execute();
}
