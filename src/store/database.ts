// openDatabase: one call that turns a URL into a migrated Kysely handle with a notifier,
// whichever dialect the URL names.
import { realpathSync } from 'node:fs';
import { Kysely, sql } from 'kysely';
import { TrustlaunchError } from '../protocol/errors.js';
import type { Dialect } from './dialect.js';
import { assertMigrated, checkArguments, migrateToLatest, type Migrations } from './migrate.js';
import { InProcessNotifier, type Notifier } from './notifier.js';
import { PostgresNotifier } from './pg-notifier.js';
import { clientConfig, openPostgres } from './postgres.js';
import { openSqlite } from './sqlite.js';
import { parseDatabaseUrl, redactUrl } from './url.js';

export interface OpenOptions {
  /** This caller's migrations, by name (`0001_create_nodes`, …); run in name order at open. */
  readonly migrations: Migrations;
  /** Whose migrations these are ('ca', 'manager', …): each namespace keeps its own history. */
  readonly namespace: string;
  /** Open without writing: no migration (they must all have run), no file creation. */
  readonly readonly?: boolean;
  /**
   * Where errors that have no caller go: a pooled or LISTEN connection lost, a notification
   * listener that threw. Default: a process warning.
   */
  readonly onError?: (error: Error) => void;
}

export interface DatabaseHandle<DB> {
  readonly db: Kysely<DB>;
  readonly dialect: Dialect;
  readonly notifier: Notifier;
  /** Resolves when the database answers (for /readyz); UNAVAILABLE otherwise. */
  ping(): Promise<void>;
  /** Stops the notifier and closes every connection. Idempotent. */
  close(): Promise<void>;
}

interface ClosableNotifier extends Notifier {
  close(): Promise<void>;
}

function warn(error: Error): void {
  process.emitWarning(error.message, { code: 'TRUSTLAUNCH_STORE' });
}

/**
 * Opens the database `url` names (sqlite:/path, a plain path, sqlite::memory:,
 * postgres://…), then migrates `namespace` to the latest of `migrations`.
 * Fails with UNAVAILABLE when the database cannot be reached or opened, MIGRATION_FAILED
 * when the schema cannot be brought up to date; the URL's password never appears in either.
 */
export async function openDatabase<DB>(url: string, opts: OpenOptions): Promise<DatabaseHandle<DB>> {
  checkArguments(opts.migrations, opts.namespace);
  const target = parseDatabaseUrl(url);
  const readonly = opts.readonly ?? false;
  const onError = opts.onError ?? warn;

  const { db, notifier, release } =
    target.dialect === 'sqlite'
      ? connectSqlite<DB>(target.path, readonly, onError)
      : await connectPostgres<DB>(target.connectionString, opts.namespace, readonly, onError);

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => (closed ??= notifier.close().finally(release));

  try {
    if (readonly) await assertMigrated(db, opts.migrations, opts.namespace);
    else await migrateToLatest(db, opts.migrations, opts.namespace);
  } catch (e) {
    await close();
    throw e;
  }

  return {
    db,
    dialect: target.dialect,
    notifier,
    async ping() {
      // Checked here too: on SQLite the connection may live on for other handles.
      if (closed !== undefined) throw new TrustlaunchError('UNAVAILABLE', `database handle for ${redactUrl(url)} is closed`);
      try {
        await sql`select 1`.execute(db);
      } catch (e) {
        throw new TrustlaunchError('UNAVAILABLE', `database ${redactUrl(url)} does not answer: ${(e as Error).message}`, { cause: e });
      }
    },
    close,
  };
}

interface Connected<DB> {
  readonly db: Kysely<DB>;
  readonly notifier: ClosableNotifier;
  /** Closes (or, for a shared SQLite connection, lets go of) the connection. */
  readonly release: () => Promise<void>;
}

function connectSqlite<DB>(path: string, readonly: boolean, onError: (error: Error) => void): Connected<DB> {
  const opened = openSqlite(path, readonly);
  const hub = path === ':memory:' ? undefined : realpathSync(path);
  return { db: opened.db as Kysely<DB>, notifier: new InProcessNotifier(hub, onError), release: opened.release };
}

async function connectPostgres<DB>(
  connectionString: string,
  namespace: string,
  readonly: boolean,
  onError: (error: Error) => void,
): Promise<Connected<DB>> {
  const applicationName = `trustlaunch-${namespace}`;
  const { dialect } = await openPostgres(connectionString, { applicationName, readonly, onError });
  const db = new Kysely<DB>({ dialect });
  const listen = clientConfig(connectionString, { applicationName: `${applicationName}-listen`, readonly: false });
  const notify = async (channel: string, payload: string): Promise<void> => {
    await sql`select pg_notify(${channel}, ${payload})`.execute(db);
  };
  return { db, notifier: new PostgresNotifier(listen, notify, onError), release: () => db.destroy() };
}
