// SQLite through better-sqlite3: a 0600 file, WAL with synchronous=FULL, a busy timeout,
// foreign keys and recursive triggers on, a Kysely dialect whose transactions start with
// BEGIN IMMEDIATE, integers as numbers, and one shared connection per file per process.
import { closeSync, constants, existsSync, mkdirSync, openSync, realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import {
  CompiledQuery,
  Kysely,
  SqliteAdapter,
  SqliteDialect,
  SqliteDriver,
  type DatabaseConnection,
  type DialectAdapter,
  type Driver,
  type SqliteDialectConfig,
} from 'kysely';
import { TrustlaunchError } from '../protocol/errors.js';
import { SafeIntegerPlugin } from './safe-integers.js';

/** How long a writer waits for another process's write lock before SQLITE_BUSY. */
export const SQLITE_BUSY_TIMEOUT_MS = 5_000;

/**
 * Kysely's driver begins with a deferred BEGIN: a transaction that reads first and writes
 * later must upgrade its lock, and if another process wrote meanwhile SQLite answers
 * SQLITE_BUSY at once, without waiting out busy_timeout. BEGIN IMMEDIATE takes the write
 * lock up front, so a second writer waits (up to busy_timeout) instead of failing.
 * (Inside one process Kysely already serialises everything on its one connection.)
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

/**
 * SQLite does run DDL inside transactions; Kysely's adapter says otherwise only to be
 * conservative. Saying so makes the Migrator run each batch in one transaction (all of a
 * migration or none of it) — under BEGIN IMMEDIATE, which also keeps two processes from
 * migrating one file at once.
 */
class TransactionalSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

class TrustlaunchSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  readonly #readonly: boolean;

  constructor(config: SqliteDialectConfig, readonly: boolean) {
    super(config);
    this.#config = config;
    this.#readonly = readonly;
  }

  override createDriver(): Driver {
    // A read-only connection cannot take the write lock BEGIN IMMEDIATE asks for.
    return this.#readonly ? new SqliteDriver(this.#config) : new ImmediateSqliteDriver(this.#config);
  }

  override createAdapter(): DialectAdapter {
    return new TransactionalSqliteAdapter();
  }
}

/** Creates the file (and a missing parent directory) owner-only, before SQLite opens it. */
function createPrivateFile(path: string): void {
  const dir = dirname(path);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    // O_EXCL: never touch the mode of a file someone else already made.
    closeSync(openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

interface SharedConnection {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- one connection serves handles of any schema
  readonly db: Kysely<any>;
  handles: number;
}

/**
 * One connection per file (and mode) per process. better-sqlite3 is synchronous: a second
 * connection in the same process that waited for the first one's write lock would block
 * the event loop — and so the first connection's commit — until busy_timeout ran out.
 * Sharing one connection turns that into Kysely's ordinary queueing.
 */
const shared = new Map<string, SharedConnection>();

export interface OpenedSqlite {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- see SharedConnection
  readonly db: Kysely<any>;
  /** Closes the connection once the last handle on it is released. */
  readonly release: () => Promise<void>;
}

/**
 * Opens (creating when absent, unless read-only) the SQLite database at `path`, or joins
 * this process's open connection to it. SQLite gives the -wal and -shm files the main file's
 * permissions, so all three are 0600.
 */
export function openSqlite(path: string, readonly: boolean): OpenedSqlite {
  if (path === ':memory:') {
    const db = new Kysely({ dialect: connect(path, readonly, true), plugins: [new SafeIntegerPlugin()] });
    return { db, release: () => db.destroy() };
  }
  try {
    if (!readonly) createPrivateFile(path);
  } catch (e) {
    throw new TrustlaunchError('UNAVAILABLE', `cannot create SQLite database ${path}: ${(e as Error).message}`, { cause: e });
  }
  let key: string;
  try {
    key = `${readonly ? 'ro' : 'rw'}:${realpathSync(path)}`;
  } catch (e) {
    throw new TrustlaunchError('UNAVAILABLE', `cannot open SQLite database ${path}: ${(e as Error).message}`, { cause: e });
  }
  let entry = shared.get(key);
  if (entry === undefined) {
    const db = new Kysely({ dialect: connect(path, readonly, false), plugins: [new SafeIntegerPlugin()] });
    shared.set(key, (entry = { db, handles: 0 }));
  }
  entry.handles++;
  const joined = entry;
  let released = false;
  return {
    db: joined.db,
    release: async () => {
      if (released) return;
      released = true;
      if (--joined.handles > 0) return;
      shared.delete(key);
      await joined.db.destroy();
    },
  };
}

function connect(path: string, readonly: boolean, memory: boolean): SqliteDialect {
  let raw: Database.Database;
  try {
    raw = new Database(path, { readonly, fileMustExist: !memory, timeout: SQLITE_BUSY_TIMEOUT_MS });
  } catch (e) {
    throw new TrustlaunchError('UNAVAILABLE', `cannot open SQLite database ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    configure(raw, readonly, memory);
  } catch (e) {
    raw.close();
    // "file is not a database" and friends surface here, on the first statement.
    throw new TrustlaunchError('UNAVAILABLE', `cannot use SQLite database ${path}: ${(e as Error).message}`, { cause: e });
  }
  return new TrustlaunchSqliteDialect({ database: raw }, readonly);
}

function configure(raw: Database.Database, readonly: boolean, memory: boolean): void {
  if (!readonly && !memory) {
    // WAL: readers never block the writer. It persists in the file, so set it once per open.
    const mode = raw.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, not wal`);
  }
  // FULL: in WAL mode the WAL is fsynced at every commit, so a transaction that COMMIT
  // returned for survives power loss (NORMAL would only survive a process crash).
  raw.pragma('synchronous = FULL');
  raw.pragma('foreign_keys = ON');
  // Without this, INSERT OR REPLACE deletes conflicting rows without firing DELETE
  // triggers, which would slip past the append-only triggers.
  raw.pragma('recursive_triggers = ON');
  raw.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
  raw.defaultSafeIntegers(true);
}
