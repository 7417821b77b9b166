// The column conventions round-trip identically on both dialects: times as numbers (never
// strings, never rounded), booleans, JSON and binary as text.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import {
  decodeBool,
  decodeBytes,
  decodeJson,
  encodeBool,
  encodeBytes,
  encodeJson,
  toInt,
  toMillis,
} from '../../src/store/index.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { forEachDatabase } from '../support/databases.js';
import { testMigrations, type TestSchema } from './fixtures/schema.js';

const TIMES = [0, 1, -1, 1_732_579_200_000, Date.now(), Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER];

forEachDatabase('store columns', (open) => {
  it('returns time columns as the same numbers', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    await db.insertInto('items').values(TIMES.map((t, i) => ({ id: `i${i}`, owner: `o${i}`, created_at: t }))).execute();
    const rows = await db.selectFrom('items').select(['id', 'created_at']).orderBy('id').execute();
    assert.equal(rows.length, TIMES.length);
    for (const row of rows) {
      assert.equal(typeof row.created_at, 'number', `${row.id}: ${typeof row.created_at}`);
      assert.equal(row.created_at, TIMES[Number(row.id.slice(1))]);
    }
    // Comparisons happen in the database, on integers.
    const later = await db.selectFrom('items').select('id').where('created_at', '>', 1_732_579_200_000).execute();
    assert.equal(later.length, 2);
  });

  it('returns counts and integer expressions as numbers', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    await db.insertInto('items').values([{ id: 'a', owner: 'a', created_at: 5 }, { id: 'b', owner: 'b', created_at: 7 }]).execute();
    const { n } = await db.selectFrom('items').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
    assert.equal(n, 2);
    const { rows } = await sql<{ t: unknown }>`select cast(${Number.MAX_SAFE_INTEGER} as bigint) as t`.execute(db);
    assert.deepEqual(rows, [{ t: Number.MAX_SAFE_INTEGER }]);
  });

  it('fails a query whose integer would not survive as a number, instead of rounding it', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    await assert.rejects(sql`select cast(9007199254740993 as bigint) as t`.execute(db), /outside the JavaScript safe integer range/);
    await assert.rejects(sql`select cast(-9223372036854775808 as bigint) as t`.execute(db), /outside the JavaScript safe integer range/);
    // The connection stays usable.
    assert.deepEqual((await sql<{ one: unknown }>`select 1 as one`.execute(db)).rows, [{ one: 1 }]);
  });

  it('round-trips booleans, canonical JSON and bytes', async () => {
    const { db } = await open<TestSchema>(testMigrations, 'store_test');
    const bytes = Buffer.from([0, 1, 2, 250, 251, 252, 253, 254, 255]);
    await db
      .insertInto('items')
      .values({ id: 'a', owner: 'a', created_at: 1, flag: encodeBool(true), data: encodeJson({ b: [1, 'é'], a: null }), blob: encodeBytes(bytes) })
      .execute();
    await db.insertInto('items').values({ id: 'b', owner: 'b', created_at: 1, flag: encodeBool(false) }).execute();
    const rows = await db.selectFrom('items').selectAll().orderBy('id').execute();
    assert.equal(rows[0]!.data, '{"a":null,"b":[1,"é"]}', 'stored canonically');
    assert.deepEqual(decodeJson(rows[0]!.data), { a: null, b: [1, 'é'] });
    assert.deepEqual(decodeBytes(rows[0]!.blob), bytes);
    assert.deepEqual(rows.map((r) => decodeBool(r.flag)), [true, false]);
    assert.equal(rows[1]!.data, '{}');
    // A boolean column is queryable as an integer on both dialects.
    assert.deepEqual((await db.selectFrom('items').select('id').where('flag', '=', 1).execute()).map((r) => r.id), ['a']);
  });
});

describe('store column codecs', () => {
  it('toInt accepts safe integers in any driver shape and refuses the rest', () => {
    assert.equal(toInt(5), 5);
    assert.equal(toInt(5n), 5);
    assert.equal(toInt('-12'), -12);
    for (const bad of [1.5, NaN, 2 ** 53, 2n ** 53n, '1e3', '12a', '', null, undefined, true]) {
      assert.throws(() => toInt(bad), (e: unknown) => isTrustlaunchError(e, 'INTERNAL'), String(bad));
    }
  });

  it('decodes only what the encoders produce', () => {
    assert.equal(toMillis(new Date(1_700_000_000_123)), 1_700_000_000_123);
    assert.throws(() => toMillis(new Date(NaN)), TypeError);
    assert.throws(() => decodeBool(2), (e: unknown) => isTrustlaunchError(e, 'INTERNAL'));
    assert.throws(() => decodeJson('{'), (e: unknown) => isTrustlaunchError(e, 'INTERNAL'));
    assert.throws(() => decodeBytes('AB=='), (e: unknown) => isTrustlaunchError(e, 'INTERNAL'));
    assert.throws(() => encodeJson({ x: undefined }), (e: unknown) => isTrustlaunchError(e, 'MALFORMED_JSON'));
  });
});
