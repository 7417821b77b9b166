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
// Each test gets its own database, created on its first open(); every open() in the same
// test reaches that same database (two handles = two "processes"); after the test the
// handles are closed and the database removed. open() in a before() hook gets a database
// shared by the whole block instead, removed in after(). Tests in a block run one at a
// time (node:test's default), which this relies on.
// PostgreSQL comes from TRUSTLAUNCH_TEST_PG (scripts/setup-system.sh); without it the
// PostgreSQL tests fail, they never skip.
import { randomBytes } from 'node:crypto';
import { after, afterEach, beforeEach, describe } from 'node:test';
import pg from 'pg';
import { openDatabase, redactUrl, type DatabaseHandle, type Dialect, type Migrations, type OpenOptions } from '../../src/store/index.js';
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

export function forEachDatabase(name: string, fn: (open: OpenTestDatabase) => void): void {
  for (const dialect of DIALECTS) {
    void describe(`${name} [${dialect}]`, () => {
      const scope = new DatabaseScope(dialect);
      beforeEach(() => scope.enterTest());
      afterEach(() => scope.leaveTest());
      after(() => scope.dispose());
      fn(scope.opener());
    });
  }
}

interface FreshDatabase {
  readonly url: string;
  readonly handles: Array<DatabaseHandle<unknown>>;
  drop(): Promise<void>;
}

class DatabaseScope {
  readonly #dialect: Dialect;
  #inTest = false;
  #suite: Promise<FreshDatabase> | undefined;
  #test: Promise<FreshDatabase> | undefined;
  #admin: Promise<pg.Client> | undefined;

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
    const suite = this.#suite;
    this.#suite = undefined;
    try {
      await release(suite);
    } finally {
      const admin = this.#admin;
      this.#admin = undefined;
      await (await admin?.catch(() => undefined))?.end();
    }
  }

  #current(): Promise<FreshDatabase> {
    if (this.#inTest) return (this.#test ??= this.#create());
    return (this.#suite ??= this.#create());
  }

  #create(): Promise<FreshDatabase> {
    return this.#dialect === 'sqlite' ? Promise.resolve(freshSqlite()) : this.#freshPostgres();
  }

  async #freshPostgres(): Promise<FreshDatabase> {
    const base = requirePostgresUrl();
    const admin = await (this.#admin ??= connectAdmin(base));
    const name = `tl_${randomBytes(8).toString('hex')}`;
    await admin.query(`create database ${name}`);
    const url = new URL(base);
    url.pathname = `/${name}`;
    return {
      url: url.toString(),
      handles: [],
      // WITH (FORCE) terminates sessions still connected (a killed child's, a leaked pool).
      drop: async () => {
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
    drop: () => {
      dir.dispose();
      return Promise.resolve();
    },
  };
}

async function connectAdmin(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: 'trustlaunch-test-admin' });
  client.on('error', () => undefined); // a dropped admin session fails the next query instead
  try {
    await client.connect();
  } catch (e) {
    throw new Error(`cannot reach the test PostgreSQL at ${redactUrl(url)} (TRUSTLAUNCH_TEST_PG): ${(e as Error).message}`, { cause: e });
  }
  return client;
}

async function release(fresh: Promise<FreshDatabase> | undefined): Promise<void> {
  const db = await fresh?.catch(() => undefined);
  if (db === undefined) return;
  await Promise.allSettled(db.handles.map((h) => h.close()));
  await db.drop();
}
