// The SQLite commit thread's own connection (store/sqlite-commit.ts, commitGroupSqlite):
// the same settings as the store's connection, and the same group-commit outcomes as
// commitGroup through Kysely (store.test.ts) — first judgement of a nonce kept, replays
// NONCE_REUSED with their receipts dropped, revocations re-checked, a failing group storing
// nothing — read back through the store.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { join } from 'node:path';
import { sql } from 'kysely';
import { openDatabase, type DatabaseHandle } from '../../src/store/index.js';
import { caMigrations, CA_NAMESPACE } from '../../src/ca/store/migrations.js';
import type { CaSchema } from '../../src/ca/store/schema.js';
import { COMMIT_SETTINGS, SqliteCommitConnection } from '../../src/ca/store/sqlite-commit.js';
import { decisionsForNonce } from '../../src/ca/store/decisions.js';
import { countReceipts, findReceipt } from '../../src/ca/store/receipts.js';
import { revokeNode } from '../../src/ca/store/nodes.js';
import { addAllowlistEntry, revokeAllowlistEntry } from '../../src/ca/store/policy.js';
import { commitGroup, commitGroupSqlite } from '../../src/ca/verifier/commit-group.js';
import { decodeReceiptUnverified } from '../../src/crypto/index.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { tempDir } from '../support/system.js';
import type { Judgement } from '../../src/ca/verifier/judge.js';
import { addNode, affirmed, claims, issuer, refusedAt } from '../support/judgements.js';

const tmp = tempDir('tl-ca-commit-');
const path = join(tmp.path, 'ca.db');
let store: DatabaseHandle<CaSchema>;
let connection: SqliteCommitConnection;

before(async () => {
  store = await openDatabase<CaSchema>(`sqlite:${path}`, { migrations: caMigrations, namespace: CA_NAMESPACE });
  connection = SqliteCommitConnection.open(path);
  await addNode(store.db, 'node-1');
  await addNode(store.db, 'node-9');
  await addAllowlistEntry(store.db, { name: 'kernel', kernel: sha256Digest('k'), createdAt: Date.now() });
  await addAllowlistEntry(store.db, { name: 'old-kernel', kernel: sha256Digest('k'), createdAt: Date.now() });
});

after(async () => {
  connection.close();
  await store.close();
  tmp.dispose();
});

it('runs with exactly the settings of the store connection (WAL, synchronous=FULL, foreign keys, recursive triggers, busy timeout)', async () => {
  const own = connection.settings();
  assert.equal(own.synchronous, 2, 'synchronous=FULL');
  assert.equal(own.journal_mode, 'wal');
  for (const name of COMMIT_SETTINGS) {
    const row = (await sql.raw<Record<string, unknown>>(`pragma ${name}`).execute(store.db)).rows[0] ?? {};
    assert.equal(String(Object.values(row)[0]), String(own[name]), name);
  }
});

it('refuses a database file that does not exist (UNAVAILABLE), creating nothing', () => {
  assert.throws(() => SqliteCommitConnection.open(join(tmp.path, 'missing.db')), (e) => isTrustlaunchError(e) && e.code === 'UNAVAILABLE');
});

it('a group keeps the first judgement of a nonce; later ones are NONCE_REUSED, their receipts dropped — as commitGroup does', async () => {
  const c = claims();
  const first = affirmed(c);
  const r = await commitGroupSqlite(connection, issuer, [first, affirmed({ ...c, vmId: 'vm-2' }), refusedAt(c, 'time', 'EVIDENCE_STALE'), refusedAt(c, 'kernel', 'KERNEL_NOT_ALLOWED')]);
  assert.deepEqual(r.stored, [c.nonce]);
  assert.deepEqual(r.decisions.map((d) => [d.outcome, d.refusal?.code]), [['affirming', undefined], ['refused', 'NONCE_REUSED'], ['refused', 'NONCE_REUSED'], ['refused', 'KERNEL_NOT_ALLOWED']]);
  assert.equal(r.decisions[0]?.stored, first.issued, 'the stored receipt is the judgement’s own');
  assert.equal((await findReceipt(store.db, c.nonce))?.receipt, first.issued?.receipt);
  // a later group, on either connection
  const again = await commitGroupSqlite(connection, issuer, [affirmed(c)]);
  assert.deepEqual([again.stored, again.decisions[0]?.refusal?.code], [[], 'NONCE_REUSED']);
  const viaKysely = await commitGroup(store.db, issuer, [affirmed(c)]);
  assert.deepEqual([viaKysely.stored, viaKysely.decisions[0]?.refusal?.code], [[], 'NONCE_REUSED']);
  const rows = await decisionsForNonce(store.db, c.nonce);
  assert.equal(rows.length, 6);
  assert.deepEqual(rows[0] && { outcome: rows[0].outcome, receipt: rows[0].receipt_jti, hash: rows[0].evidence_hash, node: rows[0].node_id, vm: rows[0].vm_id }, { outcome: 'affirming', receipt: first.issued?.jti, hash: first.evidenceHash, node: 'node-1', vm: 'vm-1' });
});

it('a nonce stored through Kysely is NONCE_REUSED here too', async () => {
  const c = claims();
  await commitGroup(store.db, issuer, [affirmed(c)]);
  const r = await commitGroupSqlite(connection, issuer, [affirmed(c)]);
  assert.deepEqual([r.stored, r.decisions[0]?.outcome, r.decisions[0]?.refusal?.code], [[], 'refused', 'NONCE_REUSED']);
});

it('re-checks revocations inside the transaction: node and allowlist entry revoked after judging', async () => {
  const onNode = claims({ nodeId: 'node-9' });
  const onEntry = claims();
  const judged = [affirmed(onNode), affirmed(onEntry, 'old-kernel'), affirmed(claims())];
  await revokeNode(store.db, 'node-9', Date.now(), 'lost');
  await revokeAllowlistEntry(store.db, 'old-kernel', Date.now());
  const r = await commitGroupSqlite(connection, issuer, judged);
  assert.deepEqual(r.decisions.map((d) => [d.outcome, d.refusal?.code]), [['contraindicated', 'NODE_REVOKED'], ['contraindicated', 'KERNEL_REVOKED'], ['affirming', undefined]]);
  for (const c of [onNode, onEntry]) {
    const stored = await findReceipt(store.db, c.nonce);
    assert.equal(decodeReceiptUnverified(stored?.receipt ?? '').claims['ear.status'], 'contraindicated');
    assert.equal(stored?.hostCertificate, undefined);
  }
});

it('a failing group stores nothing of itself and leaves the connection usable', async () => {
  const before = await countReceipts(store.db);
  const good = affirmed(claims());
  const bad = affirmed(claims());
  const broken: Judgement = { ...bad, issued: { ...(bad.issued as NonNullable<Judgement['issued']>), status: 'bogus' as 'affirming' } };
  await assert.rejects(commitGroupSqlite(connection, issuer, [good, broken]), /CHECK constraint failed/);
  assert.equal(await countReceipts(store.db), before);
  assert.equal((await decisionsForNonce(store.db, good.claims?.nonce ?? '')).length, 0);
  const next = affirmed(claims());
  assert.equal((await commitGroupSqlite(connection, issuer, [next])).decisions[0]?.outcome, 'affirming');
  assert.equal((await findReceipt(store.db, next.claims?.nonce ?? ''))?.status, 'affirming');
});

it('a later refusal for a nonce that has a receipt leaves that receipt exactly as it was', async () => {
  const c = claims();
  await commitGroupSqlite(connection, issuer, [affirmed(c)]);
  const stored = await findReceipt(store.db, c.nonce);
  await commitGroupSqlite(connection, issuer, [refusedAt(c, 'node', 'NODE_UNKNOWN')]);
  assert.deepEqual(await findReceipt(store.db, c.nonce), stored);
});
