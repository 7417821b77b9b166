// Constraint failures the services act on, recognised the same way on both dialects:
// unique violations, and tables the database itself keeps append-only.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql, type Insertable, type Kysely } from 'kysely';
import {
  COLUMN,
  appendOnly,
  dropAppendOnly,
  isAppendOnlyViolation,
  isUniqueViolation,
  transaction,
  type Migrations,
} from '../../src/store/index.js';
import { forEachDatabase } from '../support/databases.js';
import { testMigrations, type TestSchema } from './fixtures/schema.js';

const item = (id: string, owner: string): Insertable<TestSchema['items']> => ({ id, owner, created_at: 1, flag: 0, data: '{}', blob: '' });
const decision = { id: 'd1', verdict: 'affirming', decided_at: 1_700_000_000_000 };

/** Asserts `promise` fails with an append-only violation (and not as a unique one). */
async function refusedAsAppendOnly(promise: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(isAppendOnlyViolation(e), `${what}: expected an append-only violation, got ${String(e)}`);
    assert.ok(!isUniqueViolation(e), what);
    return true;
  });
}

forEachDatabase('store constraints', (open) => {
  it('recognises primary key and unique violations, and nothing else as one', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    await db.insertInto('items').values(item('i1', 'alice')).execute();
    for (const [row, what] of [
      [item('i1', 'bob'), 'duplicate primary key'],
      [item('i2', 'alice'), 'duplicate unique column'],
    ] as const) {
      await assert.rejects(db.insertInto('items').values(row).execute(), (e: unknown) => {
        assert.ok(isUniqueViolation(e), `${what}: ${String(e)}`);
        assert.ok(!isAppendOnlyViolation(e), what);
        return true;
      });
    }
    // A NOT NULL failure is a constraint failure, but not a unique one.
    await assert.rejects(
      db.insertInto('items').values({ ...item('i3', 'carol'), owner: null as unknown as string }).execute(),
      (e: unknown) => !isUniqueViolation(e) && !isAppendOnlyViolation(e),
    );
    // Look-alikes that are not driver errors do not count.
    assert.ok(!isUniqueViolation(Object.assign(new Error('x'), { code: '23505' })));
    assert.ok(!isUniqueViolation(Object.assign(new Error('x'), { code: 'SQLITE_CONSTRAINT_UNIQUE' })));
    assert.ok(!isUniqueViolation(undefined) && !isAppendOnlyViolation('TLA01'));
    assert.equal((await db.selectFrom('items').selectAll().execute()).length, 1);
  });

  it('finds the driver error through a wrapping cause', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    await db.insertInto('items').values(item('i1', 'alice')).execute();
    const e = await db.insertInto('items').values(item('i1', 'alice')).execute().catch((x: unknown) => x);
    assert.ok(isUniqueViolation(new Error('while storing', { cause: e })));
  });

  it('rolls back the whole transaction a unique violation aborts', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    await db.insertInto('items').values(item('i1', 'alice')).execute();
    await assert.rejects(
      transaction(db, async (trx) => {
        await trx.insertInto('items').values(item('i2', 'bob')).execute();
        await trx.insertInto('items').values(item('i1', 'carol')).execute();
      }),
      (e: unknown) => isUniqueViolation(e),
    );
    assert.deepEqual((await db.selectFrom('items').select('id').execute()).map((r) => r.id), ['i1']);
  });

  it('refuses UPDATE and DELETE on an append-only table, by any route, and keeps the row', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    await db.insertInto('decisions').values(decision).execute();
    await db.insertInto('decisions').values({ ...decision, id: 'd2' }).execute(); // appending still works

    await refusedAsAppendOnly(db.updateTable('decisions').set({ verdict: 'contraindicated' }).where('id', '=', 'd1').execute(), 'update');
    await refusedAsAppendOnly(db.updateTable('decisions').set({ verdict: 'contraindicated' }).execute(), 'update all');
    await refusedAsAppendOnly(db.deleteFrom('decisions').where('id', '=', 'd1').execute(), 'delete');
    await refusedAsAppendOnly(db.deleteFrom('decisions').execute(), 'delete all');
    await refusedAsAppendOnly(
      db.insertInto('decisions').values({ ...decision, verdict: 'contraindicated' }).onConflict((oc) => oc.column('id').doUpdateSet({ verdict: 'contraindicated' })).execute(),
      'upsert',
    );
    await refusedAsAppendOnly(
      transaction(db, async (trx) => {
        await trx.insertInto('decisions').values({ ...decision, id: 'd3' }).execute();
        await trx.updateTable('decisions').set({ decided_at: 0 }).where('id', '=', 'd3').execute();
      }),
      'update inside a transaction',
    );
    await refusedAsAppendOnly(sql`update decisions set verdict = 'contraindicated'`.execute(db), 'raw SQL update');
    if (open.dialect === 'sqlite') {
      // REPLACE deletes the conflicting row; only recursive_triggers makes that fire the trigger.
      await refusedAsAppendOnly(db.replaceInto('decisions').values({ ...decision, verdict: 'contraindicated' }).execute(), 'replace into');
      await refusedAsAppendOnly(db.insertInto('decisions').orReplace().values({ ...decision, verdict: 'x' }).execute(), 'insert or replace');
    } else {
      // TRUNCATE skips row triggers; the statement trigger catches it.
      await refusedAsAppendOnly(sql`truncate decisions`.execute(db), 'truncate');
    }

    const rows = await db.selectFrom('decisions').selectAll().orderBy('id').execute();
    assert.deepEqual(rows, [decision, { ...decision, id: 'd2' }]);
  });

  it('lifts the guard only through a migration calling dropAppendOnly', async () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations see any schema
    type AnyDb = Kysely<any>;
    const base: Migrations = {
      '0001_log': {
        async up(db: AnyDb) {
          await db.schema.createTable('log').addColumn('id', COLUMN.id, (c) => c.primaryKey()).addColumn('n', COLUMN.int).execute();
          await appendOnly(db, 'log');
        },
      },
    };
    const first = await open<{ log: { id: string; n: number } }>(base, 'guard');
    await first.db.insertInto('log').values({ id: 'a', n: 1 }).execute();
    await refusedAsAppendOnly(first.db.updateTable('log').set({ n: 2 }).execute(), 'update before');
    const { db } = await open<{ log: { id: string; n: number } }>(
      { ...base, '0002_unguard': { up: (d: AnyDb) => dropAppendOnly(d, 'log') } },
      'guard',
    );
    await db.updateTable('log').set({ n: 2 }).execute();
    await db.deleteFrom('log').where('id', '=', 'a').execute();
    assert.deepEqual(await db.selectFrom('log').selectAll().execute(), []);
  });

  it('refuses table names that are not plain identifiers', async () => {
    const { db } = await open(testMigrations, 'store_test');
    await assert.rejects(appendOnly(db, 'decisions; drop table items'), TypeError);
    await assert.rejects(appendOnly(db, 'Decisions'), TypeError);
  });
});
