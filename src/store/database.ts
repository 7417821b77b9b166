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

  let db: Kysely<DB>;
  let notifier: ClosableNotifier;
  let release: () => Promise<void>;
  if (target.dialect === 'sqlite') {
    const opened = openSqlite(target.path, readonly);
    db = opened.db as Kysely<DB>;
    release = opened.release;
    const memory = target.path === ':memory:';
    notifier = new InProcessNotifier(memory ? undefined : realpathSync(target.path), onError);
  } else {
    const applicationName = `trustlaunch-${opts.namespace}`.slice(0, 63);
    const { dialect } = await openPostgres(target.connectionString, { applicationName, readonly, onError });
    const pgDb = new Kysely<DB>({ dialect });
    db = pgDb;
    release = () => pgDb.destroy();
    const listenConfig = clientConfig(target.connectionString, { applicationName: `${applicationName}-listen`.slice(0, 63), readonly: false });
    notifier = new PostgresNotifier(
      listenConfig,
      async (channel, payload) => {
        await sql`select pg_notify(${channel}, ${payload})`.execute(db);
      },
      onError,
    );
  }

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
      try {
        await sql`select 1`.execute(db);
      } catch (e) {
        throw new TrustlaunchError('UNAVAILABLE', `database ${redactUrl(url)} does not answer: ${(e as Error).message}`, { cause: e });
      }
    },
    close,
  };
}
