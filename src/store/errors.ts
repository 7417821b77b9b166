// Recognising the two constraint failures callers act on, whichever driver raised them.
// Kysely passes driver errors through unchanged, so these look at the driver's own codes.
import Database from 'better-sqlite3';
import pg from 'pg';

/** SQLSTATE the append-only trigger function raises (a class of its own, so nothing else matches). */
export const APPEND_ONLY_SQLSTATE = 'TLA01';
/** Message prefix of the SQLite append-only triggers' RAISE(ABORT, …). */
export const APPEND_ONLY_MESSAGE_PREFIX = 'append-only table ';

const PG_UNIQUE_VIOLATION = '23505';
const SQLITE_UNIQUE_CODES: ReadonlySet<string> = new Set(['SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_CONSTRAINT_PRIMARYKEY']);

/** The driver error itself, or one it was wrapped in through `cause` (a few levels deep). */
type SqliteError = InstanceType<typeof Database.SqliteError>;

function driverError(error: unknown): SqliteError | pg.DatabaseError | undefined {
  let e = error;
  for (let depth = 0; depth < 4 && e instanceof Error; depth++) {
    if (e instanceof Database.SqliteError || e instanceof pg.DatabaseError) return e;
    e = e.cause;
  }
  return undefined;
}

/** A UNIQUE or PRIMARY KEY constraint refused the row (SQLite `SQLITE_CONSTRAINT_UNIQUE`/`_PRIMARYKEY`, PostgreSQL 23505). */
export function isUniqueViolation(error: unknown): boolean {
  const e = driverError(error);
  if (e instanceof Database.SqliteError) return SQLITE_UNIQUE_CODES.has(e.code);
  return e?.code === PG_UNIQUE_VIOLATION;
}

/** An UPDATE, DELETE (or PostgreSQL TRUNCATE) hit a table made append-only by `appendOnly()`. */
export function isAppendOnlyViolation(error: unknown): boolean {
  const e = driverError(error);
  if (e instanceof Database.SqliteError) {
    return e.code === 'SQLITE_CONSTRAINT_TRIGGER' && e.message.startsWith(APPEND_ONLY_MESSAGE_PREFIX);
  }
  return e?.code === APPEND_ONLY_SQLSTATE;
}
