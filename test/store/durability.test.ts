// Durability and cross-process concurrency, with real separate processes:
// - a writer commits rows in a loop and prints each id once COMMIT has returned; we kill -9
//   it mid-loop, reopen, and every printed id must be there (and the file must be intact);
// - two writers race to claim the same keys under a unique constraint: exactly one wins each.
import assert from 'node:assert/strict';
import { afterEach, it } from 'node:test';
import { sql } from 'kysely';
import { forEachDatabase } from '../support/databases.js';
import { testMigrations, type TestSchema } from './fixtures/schema.js';
import { Writer } from './fixtures/child.js';

const KILL_AFTER = 300;
const RACE_KEYS = 200;

const TIMEOUT = { timeout: 120_000 };

forEachDatabase('store durability', (open) => {
  const writers: Writer[] = [];
  const spawnWriter = (args: string[]): Writer => {
    const w = new Writer(args);
    writers.push(w);
    return w;
  };
  afterEach(() => {
    for (const w of writers.splice(0)) if (w.child.exitCode === null && w.child.signalCode === null) w.kill();
  });

  it('keeps every commit a killed writer reported', TIMEOUT, async () => {
    const writer = spawnWriter(['commit-loop', await open.url(), 'w1']);
    await writer.waitFor((line) => line === String(KILL_AFTER));
    writer.kill();
    const { signal } = await writer.exited;
    assert.equal(signal, 'SIGKILL', `the writer must die by kill -9 mid-loop; stderr:\n${writer.stderr}`);

    const printed = writer.lines.filter((l) => l !== 'ready').map(Number);
    assert.ok(printed.length > KILL_AFTER);
    const { db, dialect } = await open<TestSchema>(testMigrations, 'store_test');
    const stored = new Set((await db.selectFrom('commits').select('id').execute()).map((r) => r.id));
    const missing = printed.filter((id) => !stored.has(id));
    assert.deepEqual(missing, [], 'ids reported as committed are missing after the crash');
    // Nothing beyond what was being committed when the kill landed.
    assert.ok(stored.size <= printed.length + 1, `${stored.size} rows for ${printed.length} reported commits`);
    if (dialect === 'sqlite') {
      const { rows } = await sql<{ integrity_check: string }>`pragma integrity_check`.execute(db);
      assert.deepEqual(rows, [{ integrity_check: 'ok' }]);
    }
  });

  it('lets exactly one of two processes claim each key', TIMEOUT, async () => {
    const url = await open.url();
    // Both open (and migrate) the fresh database at the same moment: a race in itself.
    const a = spawnWriter(['race', url, 'A', String(RACE_KEYS)]);
    const b = spawnWriter(['race', url, 'B', String(RACE_KEYS)]);
    await Promise.all([a.waitFor((l) => l === 'ready'), b.waitFor((l) => l === 'ready')]);
    a.send('go');
    b.send('go');
    const [ea, eb] = await Promise.all([a.exited, b.exited]);
    assert.deepEqual(ea, { code: 0, signal: null }, a.stderr);
    assert.deepEqual(eb, { code: 0, signal: null }, b.stderr);

    const won = (w: Writer): Set<string> => new Set(w.lines.filter((l) => l.startsWith('won ')).map((l) => l.slice(4)));
    const lost = (w: Writer): Set<string> => new Set(w.lines.filter((l) => l.startsWith('lost ')).map((l) => l.slice(5)));
    const [wonA, wonB, lostA, lostB] = [won(a), won(b), lost(a), lost(b)];
    for (let i = 0; i < RACE_KEYS; i++) {
      const key = `k${i}`;
      assert.equal(Number(wonA.has(key)) + Number(wonB.has(key)), 1, `${key} must be won exactly once`);
      assert.equal(lostA.has(key), wonB.has(key), `A lost ${key} iff B won it`);
      assert.equal(lostB.has(key), wonA.has(key), `B lost ${key} iff A won it`);
    }
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    const rows = await db.selectFrom('claims').select(['key', 'owner']).execute();
    assert.equal(rows.length, RACE_KEYS);
    for (const row of rows) assert.equal(row.owner, wonA.has(row.key) ? 'A' : 'B', `owner of ${row.key}`);
    // The migrations ran once although both processes opened the new database together.
    const ran = await db.selectFrom('store_test_migration' as never).select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
    assert.equal(ran.n, Object.keys(testMigrations).length);
  });
});
