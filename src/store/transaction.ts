// transaction(db, fn): Kysely's db.transaction(), plus joining an enclosing transaction, so
// store functions that each need "a transaction" compose. Dialect care lives in the driver:
// on SQLite every transaction begins IMMEDIATE (sqlite.ts), and Kysely's one SQLite
// connection serialises all callers in the process. Inside fn use only `trx`: on SQLite a
// query through the outer `db` would wait for the connection fn holds — forever.
import type { Kysely, Transaction } from 'kysely';

export async function transaction<DB, T>(db: Kysely<DB>, fn: (trx: Transaction<DB>) => Promise<T>): Promise<T> {
  if (db.isTransaction) return fn(db as Transaction<DB>);
  return db.transaction().execute(fn);
}
