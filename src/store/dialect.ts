// Which dialect a Kysely instance speaks, for the few places SQL differs (trigger syntax).
import { PostgresAdapter, SqliteAdapter, type Kysely } from 'kysely';

export type Dialect = 'sqlite' | 'postgres';

/** The dialect behind `db` (a Kysely instance or a transaction from one opened by openDatabase). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any schema: only the adapter is read
export function dialectOf(db: Kysely<any>): Dialect {
  const adapter = db.getExecutor().adapter;
  if (adapter instanceof PostgresAdapter) return 'postgres';
  if (adapter instanceof SqliteAdapter) return 'sqlite';
  throw new TypeError(`unsupported Kysely adapter ${adapter.constructor.name}`);
}
