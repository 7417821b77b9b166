// Migrations on both dialects: in name order, once each, per namespace, atomically, and
// safely when several handles open one database at the same moment.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Kysely } from 'kysely';
import { COLUMN, type Migration, type Migrations } from '../../src/store/index.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { forEachDatabase } from '../support/databases.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations see any schema
type AnyDb = Kysely<any>;

/** A migration that creates table `name` and notes in `ran` that it ran. */
function creates(name: string, ran: string[]): Migration {
  return {
    async up(db: AnyDb) {
      ran.push(name);
      await db.schema.createTable(name).addColumn('id', COLUMN.id, (c) => c.primaryKey()).execute();
    },
  };
}

async function tableNames(db: AnyDb): Promise<string[]> {
  return (await db.introspection.getTables({ withInternalKyselyTables: true })).map((t) => t.name).sort();
}

async function executed(db: AnyDb, namespace: string): Promise<string[]> {
  const rows = await db.selectFrom(`${namespace}_migration`).select('name').orderBy('name').execute();
  return rows.map((r: { name: string }) => r.name);
}

const isMigrationFailed = (e: unknown): boolean => isTrustlaunchError(e, 'MIGRATION_FAILED');

forEachDatabase('store migrations', (open) => {
  it('runs migrations in name order, each once', async () => {
    const ran: string[] = [];
    // Deliberately listed out of order: the names decide.
    const migrations: Migrations = { '0003_c': creates('c', ran), '0001_a': creates('a', ran), '0002_b': creates('b', ran) };
    const first = await open(migrations, 'ns');
    assert.deepEqual(ran, ['a', 'b', 'c']);
    await first.close();
    const second = await open(migrations, 'ns');
    assert.deepEqual(ran, ['a', 'b', 'c'], 'reopening runs nothing again');
    assert.deepEqual(await executed(second.db, 'ns'), ['0001_a', '0002_b', '0003_c']);
    await second.close();
    const third = await open({ ...migrations, '0004_d': creates('d', ran) }, 'ns');
    assert.deepEqual(ran, ['a', 'b', 'c', 'd'], 'a new migration runs alone');
    assert.deepEqual(await executed(third.db, 'ns'), ['0001_a', '0002_b', '0003_c', '0004_d']);
  });

  it('refuses a new migration that sorts before one already run, changing nothing', async () => {
    const ran: string[] = [];
    const h = await open({ '0002_b': creates('b', ran) }, 'ns');
    await assert.rejects(open({ '0001_a': creates('a', ran), '0002_b': creates('b', ran) }, 'ns'), isMigrationFailed);
    await assert.rejects(open({}, 'ns'), isMigrationFailed, 'an executed migration that disappeared is refused too');
    assert.deepEqual(ran, ['b']);
    assert.ok(!(await tableNames(h.db)).includes('a'));
  });

  it('rolls back a failing batch entirely and names the failing migration', async () => {
    const ran: string[] = [];
    const h = await open({ '0001_a': creates('a', ran) }, 'ns');
    const broken: Migration = {
      async up(db: AnyDb) {
        await creates('c', ran).up(db);
        throw new Error('broken migration');
      },
    };
    const err = await open({ '0001_a': creates('a', ran), '0002_b': creates('b', ran), '0003_c': broken }, 'ns').then(
      () => assert.fail('the broken migration must fail the open'),
      (e: unknown) => e,
    );
    assert.ok(isTrustlaunchError(err, 'MIGRATION_FAILED'));
    assert.deepEqual(err.detail, { namespace: 'ns', migration: '0003_c' });
    assert.match(err.message, /broken migration/);
    const tables = await tableNames(h.db);
    assert.ok(!tables.includes('b') && !tables.includes('c'), `no table of the failed batch may remain: ${tables.join(',')}`);
    assert.deepEqual(await executed(h.db, 'ns'), ['0001_a']);
    // Fixed, the same batch then runs.
    await open({ '0001_a': creates('a', ran), '0002_b': creates('b', ran), '0003_c': creates('c', ran) }, 'ns');
    assert.deepEqual(await executed(h.db, 'ns'), ['0001_a', '0002_b', '0003_c']);
  });

  it('keeps namespaces apart on one database', async () => {
    const ran: string[] = [];
    const ca = await open({ '0001_init': creates('ca_things', ran) }, 'ca');
    await open({ '0001_init': creates('manager_things', ran) }, 'manager');
    assert.deepEqual(ran, ['ca_things', 'manager_things']);
    const tables = await tableNames(ca.db);
    for (const t of ['ca_migration', 'ca_migration_lock', 'manager_migration', 'manager_migration_lock', 'ca_things', 'manager_things']) {
      assert.ok(tables.includes(t), `${t} in ${tables.join(',')}`);
    }
    assert.deepEqual(await executed(ca.db, 'ca'), ['0001_init']);
    assert.deepEqual(await executed(ca.db, 'manager'), ['0001_init']);
  });

  it('runs each migration once when several handles open one new database together', async () => {
    const ran: string[] = [];
    const migrations: Migrations = { '0001_a': creates('a', ran), '0002_b': creates('b', ran) };
    const handles = await Promise.all([1, 2, 3, 4].map(() => open(migrations, 'ns')));
    assert.deepEqual(ran, ['a', 'b']);
    assert.deepEqual(await executed(handles[0]!.db, 'ns'), ['0001_a', '0002_b']);
  });

  it('opens read-only only a database that is fully migrated, and refuses writes through it', async () => {
    const ran: string[] = [];
    const migrations: Migrations = { '0001_a': creates('a', ran) };
    await open(migrations, 'ns');
    const ro = await open<{ a: { id: string } }>(migrations, 'ns', { readonly: true });
    assert.deepEqual(await ro.db.selectFrom('a').selectAll().execute(), []);
    await assert.rejects(ro.db.insertInto('a').values({ id: 'x' }).execute(), /read-?only/i);
    await assert.rejects(open({ ...migrations, '0002_b': creates('b', ran) }, 'ns', { readonly: true }), (e: unknown) => {
      assert.ok(isTrustlaunchError(e, 'MIGRATION_FAILED'));
      assert.deepEqual(e.detail, { namespace: 'ns', pending: ['0002_b'] });
      return true;
    });
    assert.deepEqual(ran, ['a']);
  });

  it('refuses malformed namespaces and migration names as caller errors', async () => {
    await assert.rejects(open({}, 'CA'), TypeError);
    await assert.rejects(open({}, 'a-b'), TypeError);
    await assert.rejects(open({ '1_a': creates('a', []) }, 'ns'), TypeError);
    await assert.rejects(open({ '0001-a': creates('a', []) }, 'ns'), TypeError);
  });
});
