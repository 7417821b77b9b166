// Notifications between separately opened handles on one database (on PostgreSQL through
// the server, as between two CA processes; on SQLite within one process), the waitFor
// long-poll, and recovery of a lost PostgreSQL LISTEN session.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { MAX_PAYLOAD_BYTES, waitFor, type Notifier } from '../../src/store/index.js';
import { forEachDatabase } from '../support/databases.js';
import { testMigrations, type TestSchema } from './fixtures/schema.js';

/** Collects payloads and lets a test wait (boundedly, by count) for the next ones. */
class Inbox {
  readonly got: string[] = [];
  #wake: (() => void) | undefined;
  readonly listener = (payload: string): void => {
    this.got.push(payload);
    this.#wake?.();
  };

  /** Waits until `count` payloads arrived, or about `maxMs` passed. */
  async until(count: number, maxMs = 10_000): Promise<string[]> {
    for (let i = 0; i < maxMs / 50 && this.got.length < count; i++) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 50);
      });
    }
    return this.got;
  }
}

/** Publishes `payload` on `channel` through `from` and waits until `inbox` has it. */
async function barrier(from: Notifier, channel: string, inbox: Inbox, payload: string): Promise<void> {
  await from.publish(channel, payload);
  await inbox.until(inbox.got.length + 1);
  assert.ok(inbox.got.includes(payload), `barrier ${payload} never arrived`);
}

forEachDatabase('store notifier', (open) => {
  it('delivers a publish from one handle to subscribers of another, and to its own', async () => {
    const a = await open(testMigrations, 'store_test');
    const b = await open(testMigrations, 'store_test');
    const onB = new Inbox();
    const onA = new Inbox();
    const elsewhere = new Inbox();
    await b.notifier.subscribe('receipts', onB.listener);
    await a.notifier.subscribe('receipts', onA.listener);
    await b.notifier.subscribe('other_channel', elsewhere.listener);
    await a.notifier.publish('receipts', 'nonce-1');
    await a.notifier.publish('receipts', 'nonce-2 ✓');
    assert.deepEqual(await onB.until(2), ['nonce-1', 'nonce-2 ✓']);
    assert.deepEqual(await onA.until(2), ['nonce-1', 'nonce-2 ✓']);
    await barrier(a.notifier, 'other_channel', elsewhere, 'marker');
    assert.deepEqual(elsewhere.got, ['marker'], 'the other channel saw only its own publish');
  });

  it('stops delivering after unsubscribe, to that listener only', async () => {
    const a = await open(testMigrations, 'store_test');
    const b = await open(testMigrations, 'store_test');
    const gone = new Inbox();
    const stays = new Inbox();
    const unsubscribe = await b.notifier.subscribe('events', gone.listener);
    await b.notifier.subscribe('events', stays.listener);
    await barrier(a.notifier, 'events', gone, 'one');
    unsubscribe();
    unsubscribe(); // twice is harmless
    await barrier(a.notifier, 'events', stays, 'two');
    await barrier(a.notifier, 'events', stays, 'three');
    assert.deepEqual(gone.got, ['one']);
    assert.deepEqual(stays.got, ['one', 'two', 'three']);
  });

  it('reports a throwing listener and still delivers to the others', async () => {
    const errors: Error[] = [];
    const h = await open(testMigrations, 'store_test', { onError: (e) => errors.push(e) });
    const inbox = new Inbox();
    await h.notifier.subscribe('events', () => {
      throw new Error('listener bug');
    });
    await h.notifier.subscribe('events', inbox.listener);
    await barrier(h.notifier, 'events', inbox, 'x');
    assert.deepEqual(errors.map((e) => e.message), ['listener bug']);
  });

  it('refuses channel names and payloads one dialect could not carry', async () => {
    const { notifier } = await open(testMigrations, 'store_test');
    for (const channel of ['', 'Receipts', 'a-b', '1abc', 'x'.repeat(64), 'a;b']) {
      await assert.rejects(notifier.publish(channel, 'p'), TypeError, channel);
      await assert.rejects(notifier.subscribe(channel, () => undefined), TypeError, channel);
    }
    await assert.rejects(notifier.publish('ok', 'x'.repeat(MAX_PAYLOAD_BYTES + 1)), TypeError);
    await assert.rejects(notifier.publish('ok', 'é'.repeat(4000)), TypeError, 'the bound is in UTF-8 bytes');
    await assert.rejects(notifier.publish('ok', 'a\0b'), TypeError);
    const inbox = new Inbox();
    await notifier.subscribe('ok', inbox.listener);
    await barrier(notifier, 'ok', inbox, 'x'.repeat(MAX_PAYLOAD_BYTES));
  });

  it('waitFor wakes on a notification from another handle', async () => {
    const waiter = await open<TestSchema>(testMigrations, 'store_test');
    const writer = await open<TestSchema>(testMigrations, 'store_test');
    const find = async (): Promise<string | undefined> =>
      (await waiter.db.selectFrom('decisions').select('verdict').where('id', '=', 'd1').executeTakeFirst())?.verdict;
    // A re-check interval longer than the deadline: only the notification can find the row.
    const waiting = waitFor(waiter.notifier, 'decisions', find, { timeoutMs: 30_000, recheckMs: 60_000, payload: 'd1' });
    await new Promise((r) => setTimeout(r, 100));
    await writer.db.insertInto('decisions').values({ id: 'd1', verdict: 'affirming', decided_at: 1 }).execute();
    await writer.notifier.publish('decisions', 'd0'); // someone else's key: ignored
    await writer.notifier.publish('decisions', 'd1');
    assert.equal(await waiting, 'affirming');
  });

  it('waitFor finds an unannounced change by re-checking, and gives up at the deadline', async () => {
    const waiter = await open<TestSchema>(testMigrations, 'store_test');
    const writer = await open<TestSchema>(testMigrations, 'store_test');
    const find = async (id: string): Promise<string | undefined> =>
      (await waiter.db.selectFrom('decisions').select('verdict').where('id', '=', id).executeTakeFirst())?.verdict;
    const waiting = waitFor(waiter.notifier, 'decisions', () => find('d1'), { timeoutMs: 30_000, recheckMs: 50 });
    await new Promise((r) => setTimeout(r, 100));
    await writer.db.insertInto('decisions').values({ id: 'd1', verdict: 'warning', decided_at: 1 }).execute(); // no publish
    assert.equal(await waiting, 'warning');
    assert.equal(await waitFor(waiter.notifier, 'decisions', () => find('never'), { timeoutMs: 200, recheckMs: 50 }), undefined);
    const aborted = new AbortController();
    const pending = waitFor(waiter.notifier, 'decisions', () => find('never'), { timeoutMs: 30_000, recheckMs: 60_000, signal: aborted.signal });
    aborted.abort();
    assert.equal(await pending, undefined);
    await assert.rejects(waitFor(waiter.notifier, 'decisions', () => find('x'), { timeoutMs: 11 * 60_000 }), TypeError);
  });

  if (open.dialect === 'postgres') {
    it('re-listens after its LISTEN session is killed, and reports the loss', async () => {
      const errors: Error[] = [];
      const a = await open(testMigrations, 'store_test');
      const b = await open(testMigrations, 'store_test', { onError: (e) => errors.push(e) });
      const inbox = new Inbox();
      await b.notifier.subscribe('events', inbox.listener);
      await barrier(a.notifier, 'events', inbox, 'before');
      const { rows } = await sql<{ killed: boolean }>`
        select pg_terminate_backend(pid) as killed from pg_stat_activity
        where datname = current_database() and application_name = 'trustlaunch-store_test-listen' and query ilike 'listen%'`.execute(a.db);
      assert.ok(rows.length >= 1 && rows.every((r) => r.killed), `expected to kill the LISTEN sessions: ${JSON.stringify(rows)}`);
      // First the loss must be noticed (and reported)…
      for (let i = 0; i < 200 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(errors.length >= 1, 'the lost LISTEN session is reported');
      // …then, once re-listened (backoff from 100 ms), publishes arrive again. Notifications
      // sent before that are lost, so publish until one arrives (bounded).
      let delivered = false;
      for (let i = 0; i < 100 && !delivered; i++) {
        await a.notifier.publish('events', `after-${i}`);
        await inbox.until(inbox.got.length + 1, 200);
        delivered = inbox.got.some((p) => p.startsWith('after-'));
      }
      assert.ok(delivered, 'no notification arrived after the LISTEN session was killed');
    });
  }
});
