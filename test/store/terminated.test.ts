// A PostgreSQL server that ends the store's sessions (pg_terminate_backend; what every
// session sees when the server restarts or an administrator drops the database with
// FORCE): a connection held between two statements fails its transaction with an error,
// nothing escapes as an uncaught exception, the error is reported through onError, and the
// handle goes on working on fresh connections.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql, type Kysely } from 'kysely';
import { forEachDatabase } from '../support/databases.js';
import { testMigrations, type TestSchema } from './fixtures/schema.js';

/** Waits (boundedly) until no session of the database has `pid`. */
async function waitGone(db: Kysely<TestSchema>, pid: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where pid = ${pid}`.execute(db);
    if (rows[0]?.n === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`session ${pid} still there`);
}

const codeOf = (e: Error): unknown => (e as { code?: unknown }).code;

forEachDatabase(
  'store sessions terminated by the server',
  (open) => {
    it('fails the transaction holding a terminated connection, reports it, and keeps working', async () => {
      const errors: Error[] = [];
      const h = await open<TestSchema>(testMigrations, 'store_test', { onError: (e) => errors.push(e) });
      const admin = await open<TestSchema>(testMigrations, 'store_test');
      const held = h.db.transaction().execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
        const pid = rows[0]?.pid;
        assert.ok(pid !== undefined);
        // Between two statements: the connection is checked out of the pool, no query on it.
        await sql`select pg_terminate_backend(${pid})`.execute(admin.db);
        await waitGone(admin.db, pid);
        await new Promise((r) => setTimeout(r, 50)); // lets the FATAL message and the close arrive
        await sql`select 1`.execute(trx);
      });
      await assert.rejects(held, /terminat|not queryable|Connection terminated/i);
      assert.deepEqual(errors.map(codeOf), ['57P01'], 'reported once, with the server’s code');
      for (let i = 0; i < 3; i++) {
        const { rows } = await sql<{ one: number }>`select 1 as one`.execute(h.db);
        assert.equal(rows[0]?.one, 1);
      }
    });

    it('reports an idle pooled connection ended by the server once, and replaces it', async () => {
      const errors: Error[] = [];
      const h = await open<TestSchema>(testMigrations, 'store_test', { onError: (e) => errors.push(e) });
      const admin = await open<TestSchema>(testMigrations, 'store_test');
      const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(h.db);
      const pid = rows[0]?.pid;
      assert.ok(pid !== undefined);
      await sql`select pg_terminate_backend(${pid})`.execute(admin.db);
      await waitGone(admin.db, pid);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(errors.map(codeOf), ['57P01']);
      const again = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(h.db);
      assert.notEqual(again.rows[0]?.pid, pid, 'a new session');
    });
  },
  ['postgres'],
);
