// transaction(): commit, rollback, joining an enclosing transaction, many concurrent
// callers in one process; and on SQLite, that a transaction holds the write lock from BEGIN.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { Insertable } from 'kysely';
import { openDatabase, transaction } from '../../src/store/index.js';
import { tempDir } from '../support/system.js';
import { forEachDatabase } from '../support/databases.js';
import { testMigrations, type TestSchema } from './fixtures/schema.js';

const item = (id: string): Insertable<TestSchema['items']> => ({ id, owner: id, created_at: 1, flag: 0, data: '{}', blob: '' });

forEachDatabase('store transactions', (open) => {
  it('commits what the function wrote and returns its value', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    const out = await transaction(db, async (trx) => {
      await trx.insertInto('items').values(item('a')).execute();
      return 42;
    });
    assert.equal(out, 42);
    assert.equal((await db.selectFrom('items').selectAll().execute()).length, 1);
  });

  it('rolls back everything when the function throws, and rethrows', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    const boom = new Error('boom');
    await assert.rejects(
      transaction(db, async (trx) => {
        await trx.insertInto('items').values(item('a')).execute();
        throw boom;
      }),
      (e: unknown) => e === boom,
    );
    assert.deepEqual(await db.selectFrom('items').selectAll().execute(), []);
  });

  it('joins an enclosing transaction, so a later failure undoes the inner writes', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    const store = (trxOrDb: typeof db, id: string): Promise<void> =>
      transaction(trxOrDb, async (trx) => {
        await trx.insertInto('items').values(item(id)).execute();
      });
    await assert.rejects(
      transaction(db, async (trx) => {
        await store(trx, 'a');
        await store(trx, 'b');
        throw new Error('after both');
      }),
      /after both/,
    );
    assert.deepEqual(await db.selectFrom('items').selectAll().execute(), []);
    await store(db, 'c');
    assert.deepEqual((await db.selectFrom('items').select('id').execute()).map((r) => r.id), ['c']);
  });

  it('keeps concurrent transactions of one process apart', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        transaction(db, async (trx) => {
          await trx.insertInto('items').values(item(`x${i}`)).execute();
          await new Promise((r) => setImmediate(r)); // let the others interleave
          await trx.insertInto('items').values(item(`y${i}`)).execute();
          if (i % 5 === 0) throw new Error(`fail ${i}`);
        }),
      ),
    );
    assert.equal(results.filter((r) => r.status === 'rejected').length, 4);
    const ids = new Set((await db.selectFrom('items').select('id').execute()).map((r) => r.id));
    for (let i = 0; i < 20; i++) {
      const kept = i % 5 !== 0;
      assert.equal(ids.has(`x${i}`), kept, `x${i}`);
      assert.equal(ids.has(`y${i}`), kept, `y${i}`);
    }
  });
});

describe('store transactions on SQLite', () => {
  it('take the write lock at BEGIN (IMMEDIATE), so another process waits instead of failing later', async () => {
    const dir = tempDir('tl-store-');
    const path = `${dir.path}/lock.db`;
    const handle = await openDatabase<TestSchema>(`sqlite:${path}`, { migrations: testMigrations, namespace: 'store_test' });
    // A second, independent connection stands in for another process; it does not wait.
    const other = new Database(path, { timeout: 0 });
    try {
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let entered!: () => void;
      const inside = new Promise<void>((r) => (entered = r));
      const trx = transaction(handle.db, async () => {
        entered(); // nothing read or written yet: only BEGIN has run
        await held;
      });
      await inside;
      assert.throws(() => other.exec('begin immediate'), (e: unknown) => (e as { code?: string }).code === 'SQLITE_BUSY');
      // Readers are not blocked (WAL).
      assert.deepEqual(other.prepare('select count(*) as n from items').get(), { n: 0 });
      release();
      await trx;
      other.exec('begin immediate');
      other.exec('rollback');
    } finally {
      other.close();
      await handle.close();
      dir.dispose();
    }
  });
});
