// openDatabase: the settings each dialect gets (durability, timeouts, file modes), the
// errors when a database cannot be reached or used (never showing the password), and
// handle life cycle.
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import { openDatabase, transaction } from '../../src/store/index.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { requirePostgresUrl, tempDir } from '../support/system.js';
import { forEachDatabase } from '../support/databases.js';
import { testMigrations, type TestSchema } from './fixtures/schema.js';

const opts = { migrations: testMigrations, namespace: 'store_test' } as const;

/** Asserts an UNAVAILABLE error whose message (and detail) do not show `password`. */
function unavailableWithout(password: string) {
  return (e: unknown): boolean => {
    assert.ok(isTrustlaunchError(e, 'UNAVAILABLE'), `expected UNAVAILABLE, got ${String(e)}`);
    const shown = JSON.stringify(e.toJSON());
    assert.ok(!shown.includes(`:${password}@`), `the message shows the password: ${e.message}`);
    assert.ok(shown.includes(':***@'), `the URL is shown redacted: ${e.message}`);
    return true;
  };
}

forEachDatabase('store handle', (open) => {
  it('pings while open, refuses after close, and closes idempotently', async () => {
    const h = await open(testMigrations, 'store_test');
    await h.ping();
    await h.close();
    await h.close();
    await assert.rejects(h.ping(), (e: unknown) => isTrustlaunchError(e, 'UNAVAILABLE'));
    await assert.rejects(h.notifier.publish('x', 'y'), /closed/);
  });

  if (open.dialect === 'postgres') {
    it('sets up every PostgreSQL session: synchronous commit, timeouts, application name', async () => {
      const { db } = await open(testMigrations, 'store_test');
      const { rows } = await sql<Record<string, string>>`select current_setting('synchronous_commit') as sync,
        current_setting('statement_timeout') as st, current_setting('idle_in_transaction_session_timeout') as idle,
        current_setting('application_name') as app, current_setting('default_transaction_read_only') as ro`.execute(db);
      assert.deepEqual(rows, [{ sync: 'on', st: '30s', idle: '1min', app: 'trustlaunch-store_test', ro: 'off' }]);
    });
  }

  if (open.dialect === 'sqlite') {
    it('shares one connection among the handles of one file, so they queue instead of blocking', async () => {
      const a = await open<TestSchema>(testMigrations, 'store_test');
      const b = await open<TestSchema>(testMigrations, 'store_test');
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const first = transaction(a.db, async (trx) => {
        await trx.insertInto('items').values({ id: 'a', owner: 'a', created_at: 1 }).execute();
        await held;
      });
      // With two connections this insert would wait synchronously for a's write lock,
      // blocking the event loop (so a could never commit) until SQLITE_BUSY.
      const second = b.db.insertInto('items').values({ id: 'b', owner: 'b', created_at: 2 }).execute();
      setImmediate(release);
      await Promise.all([first, second]);
      assert.equal((await b.db.selectFrom('items').selectAll().execute()).length, 2);
      // Closing one handle leaves the other working, and the closed one says so.
      await a.close();
      await assert.rejects(a.ping(), (e: unknown) => isTrustlaunchError(e, 'UNAVAILABLE'));
      await b.ping();
      assert.equal((await b.db.selectFrom('items').selectAll().execute()).length, 2);
    });
  }
});

describe('store on SQLite', () => {
  it('creates the database owner-only (0600), WAL and SHM too, with the durable settings', async () => {
    const dir = tempDir('tl-store-');
    try {
      const path = `${dir.path}/sub/dir/ca.db`; // parents created, 0700
      const h = await openDatabase<TestSchema>(`sqlite:${path}`, opts);
      await h.db.insertInto('items').values({ id: 'a', owner: 'a', created_at: 1 }).execute();
      for (const f of [path, `${path}-wal`, `${path}-shm`]) {
        assert.equal(statSync(f).mode & 0o777, 0o600, f);
      }
      assert.equal(statSync(`${dir.path}/sub`).mode & 0o777, 0o700);
      const pragma = async (name: string): Promise<unknown> =>
        Object.values((await sql.raw<Record<string, unknown>>(`pragma ${name}`).execute(h.db)).rows[0] ?? {})[0];
      assert.equal(await pragma('journal_mode'), 'wal');
      assert.equal(await pragma('synchronous'), 2, 'synchronous=FULL');
      assert.equal(await pragma('foreign_keys'), 1);
      assert.equal(await pragma('recursive_triggers'), 1);
      assert.equal(await pragma('busy_timeout'), 5000);
      await h.close();
    } finally {
      dir.dispose();
    }
  });

  it('leaves the mode of an existing file alone, and opens a plain path the same way', async () => {
    const dir = tempDir('tl-store-');
    try {
      const path = `${dir.path}/existing.db`;
      writeFileSync(path, '', { mode: 0o640 });
      const h = await openDatabase(path, opts);
      await h.ping();
      await h.close();
      assert.equal(statSync(path).mode & 0o777, 0o640);
    } finally {
      dir.dispose();
    }
  });

  it('works in memory, privately per handle', async () => {
    const a = await openDatabase<TestSchema>('sqlite::memory:', opts);
    const b = await openDatabase<TestSchema>('sqlite::memory:', opts);
    await a.db.insertInto('items').values({ id: 'a', owner: 'a', created_at: 1 }).execute();
    assert.equal((await b.db.selectFrom('items').selectAll().execute()).length, 0);
    await a.close();
    await b.close();
  });

  it('fails with UNAVAILABLE for a file that is not a database, or a place it cannot be', async () => {
    const dir = tempDir('tl-store-');
    try {
      writeFileSync(`${dir.path}/junk.db`, 'this is not an SQLite database, just some text that is long enough'.repeat(20));
      await assert.rejects(openDatabase(`sqlite:${dir.path}/junk.db`, opts), (e: unknown) => isTrustlaunchError(e, 'UNAVAILABLE'));
      writeFileSync(`${dir.path}/file`, '');
      await assert.rejects(openDatabase(`sqlite:${dir.path}/file/below.db`, opts), (e: unknown) => isTrustlaunchError(e, 'UNAVAILABLE'));
      await assert.rejects(openDatabase(`sqlite:${dir.path}/absent.db`, { ...opts, readonly: true }), (e: unknown) =>
        isTrustlaunchError(e, 'UNAVAILABLE'),
      );
    } finally {
      dir.dispose();
    }
  });

  it('refuses unsupported URLs before touching anything', async () => {
    await assert.rejects(openDatabase('mysql://u:p@127.0.0.1/db', opts), (e: unknown) => isTrustlaunchError(e, 'UNSUPPORTED'));
  });
});

describe('store on PostgreSQL, unreachable', () => {
  const base = (): URL => new URL(requirePostgresUrl());

  it('fails with UNAVAILABLE when nothing listens, without the password', async () => {
    const url = base();
    url.password = 'Sup3rSecretPw';
    url.port = '1'; // loopback, nothing listening
    await assert.rejects(openDatabase(url.toString(), opts), unavailableWithout('Sup3rSecretPw'));
  });

  it('fails with UNAVAILABLE on a wrong password, without the password', async () => {
    const url = base();
    url.password = 'Wr0ngSecretPw';
    await assert.rejects(openDatabase(url.toString(), opts), unavailableWithout('Wr0ngSecretPw'));
  });

  it('fails with UNAVAILABLE for a database that does not exist', async () => {
    const url = base();
    url.pathname = '/tl_does_not_exist';
    await assert.rejects(openDatabase(url.toString(), opts), unavailableWithout(decodeURIComponent(url.password)));
  });
});
