// PostgreSQL through a pg.Pool: bounded size and timeouts, a statement timeout, an
// application_name that shows in pg_stat_activity, synchronous commit, and int8 columns
// returned as JavaScript numbers (our times are bigint milliseconds).
import pg from 'pg';
import { PostgresDialect } from 'kysely';
import { TrustlaunchError } from '../protocol/errors.js';
import { toSafeInteger } from './safe-integers.js';
import { redactUrl } from './url.js';

export const PG_POOL_MAX = 10;
export const PG_CONNECT_TIMEOUT_MS = 5_000;
export const PG_IDLE_TIMEOUT_MS = 10_000;
/** Any one statement (including a wait for a lock) longer than this is cancelled. */
export const PG_STATEMENT_TIMEOUT_MS = 30_000;
/** A transaction left open and idle this long is ended by the server (its locks released). */
export const PG_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;
/** EXECUTE FUNCTION in CREATE TRIGGER (append-only tables) needs PostgreSQL 11. */
const MIN_SERVER_VERSION = 110000;

const INT8_OID = 20;

function getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
  // int8 (our times) as a number, not pg's string; unsafe values fail the query (pg turns a
  // parser exception into the query's error).
  if (oid === INT8_OID && format !== 'binary') return toSafeInteger;
  return pg.types.getTypeParser(oid, format) as (value: string) => unknown;
}

const types: pg.CustomTypesConfig = { getTypeParser };

export interface PostgresOptions {
  readonly applicationName: string;
  readonly readonly: boolean;
}

/** Connection settings shared by the pool and the notifier's listening client. */
export function clientConfig(connectionString: string, opts: PostgresOptions): pg.ClientConfig {
  // Startup parameters: applied by the server to every session, no extra round trip.
  // synchronous_commit=on so COMMIT returns only once the WAL is flushed, whatever the
  // server default. (A URL's own ?options=… replaces these.)
  const settings = ['-c synchronous_commit=on'];
  if (opts.readonly) settings.push('-c default_transaction_read_only=on');
  return {
    connectionString,
    application_name: opts.applicationName,
    statement_timeout: PG_STATEMENT_TIMEOUT_MS,
    idle_in_transaction_session_timeout: PG_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    keepAlive: true,
    options: settings.join(' '),
    types,
  };
}

export interface OpenedPostgres {
  readonly dialect: PostgresDialect;
  readonly pool: pg.Pool;
}

/** Creates the pool and proves the server is reachable, usable and new enough. */
export async function openPostgres(
  connectionString: string,
  opts: PostgresOptions & { readonly onError: (error: Error) => void },
): Promise<OpenedPostgres> {
  const pool = new pg.Pool({
    ...clientConfig(connectionString, opts),
    max: PG_POOL_MAX,
    idleTimeoutMillis: PG_IDLE_TIMEOUT_MS,
  });
  // A pg.Client whose session the server ends (pg_terminate_backend, a restart, a dropped
  // database) emits 'error'; one without a listener ends the process. The pool listens only
  // while the client is idle, so a client checked out between two statements (a transaction,
  // Kysely's acquire-then-query) needs a listener of its own: the error is reported once,
  // here, and whoever holds the client sees its next query fail; the pool then discards it.
  // Once per client: the socket closing after the server's FATAL message is a second error.
  pool.on('connect', (client) => {
    let reported = false;
    client.on('error', (e) => {
      if (reported) return;
      reported = true;
      opts.onError(e);
    });
  });
  // The pool re-emits an idle client's error, already reported by the listener above.
  pool.on('error', () => undefined);
  try {
    const { rows } = await pool.query<{ v: string }>("select current_setting('server_version_num') as v");
    const version = Number(rows[0]?.v);
    if (!(version >= MIN_SERVER_VERSION)) {
      throw new TrustlaunchError('UNSUPPORTED', `PostgreSQL ${String(rows[0]?.v)} is too old; trustlaunch needs 11 or newer`);
    }
  } catch (e) {
    await pool.end();
    if (e instanceof TrustlaunchError) throw e;
    throw new TrustlaunchError('UNAVAILABLE', `cannot reach PostgreSQL at ${redactUrl(connectionString)}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return { dialect: new PostgresDialect({ pool }), pool };
}
