// forEachDatabase: register one set of tests twice, against a fresh SQLite file and a fresh
// PostgreSQL database, so every store-backed service is tested on both dialects.
//
//   forEachDatabase('ca store', (open) => {
//     it('records a decision', async () => {
//       const { db } = await open(caMigrations, 'ca');     // fresh database for this test
//       …
//     });
//   });
//
// Each test starts from an empty database, on its first open(); every open() in the same
// test reaches that same database (two handles = two "processes"); after the test the
// handles are closed and the database emptied (SQLite: a new file per test; PostgreSQL: a
// database `tl_<random>` per block whose public schema is recreated between tests, dropped
// with its sessions terminated at the end). open() in a before() hook gets a database of
// its own shared by the whole block, removed in after(). Tests in a block run one at a time
// (node:test's default), which this relies on.
// PostgreSQL comes from TRUSTLAUNCH_TEST_PG (scripts/setup-system.sh); without it the
// PostgreSQL tests fail, they never skip.
import { after, afterEach, beforeEach, describe } from 'node:test';
import type pg from 'pg';
import { openDatabase, type DatabaseHandle, type Dialect, type Migrations, type OpenOptions } from '../../src/store/index.js';
import { connectPostgres, createDatabase } from './postgres.js';
import { requirePostgresUrl, tempDir } from './system.js';

export type TestOpenOptions = Omit<OpenOptions, 'migrations' | 'namespace'>;

export interface OpenTestDatabase {
  /** Opens (migrating) a handle on this test's database. Closed automatically. */
  <DB>(migrations: Migrations, namespace: string, options?: TestOpenOptions): Promise<DatabaseHandle<DB>>;
  readonly dialect: Dialect;
  /** The URL of this test's database (created if need be), e.g. to hand to a child process. */
  url(): Promise<string>;
}

export const DIALECTS: readonly Dialect[] = ['sqlite', 'postgres'];

/** `dialects`: only these (a behaviour one dialect alone has, e.g. PostgreSQL ending sessions). */
export function forEachDatabase(name: string, fn: (open: OpenTestDatabase) => void, dialects: readonly Dialect[] = DIALECTS): void {
  for (const dialect of dialects) {
    describe(`${name} [${dialect}]`, () => {
      const scope = new DatabaseScope(dialect);
      beforeEach(() => scope.enterTest());
      fn(scope.opener());
      // Registered after the block's own hooks, so they run after them (node:test runs a
      // block's hooks in the order registered): what the block closes in its afterEach/after
      // (a manager, a child process) is closed before its database is reset or dropped.
      afterEach(() => scope.leaveTest());
      after(() => scope.dispose());
    });
  }
}

interface FreshDatabase {
  readonly url: string;
  readonly handles: Array<DatabaseHandle<unknown>>;
  /** Removes what the test left: the SQLite file, or everything in the PostgreSQL database. */
  discard(): Promise<void>;
}

/**
 * A PostgreSQL database made for one describe block. CREATE DATABASE costs a few hundred
 * milliseconds on a loaded machine, so tests of a block share one and each starts from an
 * empty `public` schema instead (tables, triggers and functions all live there).
 */
interface PostgresDatabase {
  readonly url: string;
  /** Ends every other session on the database and recreates an empty public schema. */
  reset(): Promise<void>;
  drop(): Promise<void>;
}

class DatabaseScope {
  readonly #dialect: Dialect;
  #inTest = false;
  #suite: Promise<FreshDatabase> | undefined;
  #test: Promise<FreshDatabase> | undefined;
  #admin: Promise<pg.Client> | undefined;
  #shared: Promise<PostgresDatabase> | undefined;

  constructor(dialect: Dialect) {
    this.#dialect = dialect;
  }

  opener(): OpenTestDatabase {
    const open = async <DB>(migrations: Migrations, namespace: string, options?: TestOpenOptions): Promise<DatabaseHandle<DB>> => {
      const fresh = await this.#current();
      const handle = await openDatabase<DB>(fresh.url, { ...options, migrations, namespace });
      fresh.handles.push(handle as DatabaseHandle<unknown>);
      return handle;
    };
    return Object.assign(open, {
      dialect: this.#dialect,
      url: async () => (await this.#current()).url,
    });
  }

  enterTest(): void {
    this.#inTest = true;
    this.#test = undefined;
  }

  async leaveTest(): Promise<void> {
    this.#inTest = false;
    const fresh = this.#test;
    this.#test = undefined;
    await release(fresh);
  }

  async dispose(): Promise<void> {
    const [suite, shared, admin] = [this.#suite, this.#shared, this.#admin];
    this.#suite = this.#shared = this.#admin = undefined;
    try {
      await release(suite);
      await (await shared?.catch(() => undefined))?.drop();
    } finally {
      await (await admin?.catch(() => undefined))?.end();
    }
  }

  #current(): Promise<FreshDatabase> {
    if (this.#inTest) return (this.#test ??= this.#forTest());
    return (this.#suite ??= this.#forSuite());
  }

  async #forTest(): Promise<FreshDatabase> {
    if (this.#dialect === 'sqlite') return freshSqlite();
    const shared = await (this.#shared ??= this.#createPostgres());
    return { url: shared.url, handles: [], discard: () => shared.reset() };
  }

  async #forSuite(): Promise<FreshDatabase> {
    if (this.#dialect === 'sqlite') return freshSqlite();
    // Not the per-test database: resetting that after each test would wipe the suite's data.
    const own = await this.#createPostgres();
    return { url: own.url, handles: [], discard: () => own.drop() };
  }

  async #createPostgres(): Promise<PostgresDatabase> {
    const base = requirePostgresUrl();
    const admin = await (this.#admin ??= connect(base, 'trustlaunch-test-admin'));
    const { name, url } = await createDatabase(admin, base);
    const janitor = await connect(url, 'trustlaunch-test-janitor');
    return {
      url,
      reset: async () => {
        // Sessions a test left behind (a killed child's, a handle not closed) hold locks.
        // Only client sessions: an autovacuum worker on this database is a superuser process
        // the test role may not signal (42501), and it holds no lock a test cares about.
        await janitor.query(
          "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'",
        );
        await janitor.query('drop schema public cascade; create schema public');
      },
      // WITH (FORCE) terminates sessions still connected.
      drop: async () => {
        await janitor.end().catch(() => undefined);
        await admin.query(`drop database if exists ${name} with (force)`);
      },
    };
  }
}

function freshSqlite(): FreshDatabase {
  const dir = tempDir('tl-store-');
  return {
    url: `sqlite:${dir.path}/test.db`,
    handles: [],
    discard: () => {
      dir.dispose();
      return Promise.resolve();
    },
  };
}

/** connectPostgres, naming the variable to set when the server cannot be reached. */
async function connect(url: string, applicationName: string): Promise<pg.Client> {
  try {
    return await connectPostgres(url, applicationName);
  } catch (e) {
    throw new Error(`${(e as Error).message} (TRUSTLAUNCH_TEST_PG)`, { cause: e });
  }
}

async function release(fresh: Promise<FreshDatabase> | undefined): Promise<void> {
  const db = await fresh?.catch(() => undefined);
  if (db === undefined) return;
  await Promise.allSettled(db.handles.map((h) => h.close()));
  await db.discard();
}
