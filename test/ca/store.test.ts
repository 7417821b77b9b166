// The CA's storage on SQLite and PostgreSQL: receipts and decisions are append-only at the
// database level, a nonce gets one receipt across handles ("processes"), group commits
// keep the first judgement of a nonce and record every decision, decisions page in order.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { isAppendOnlyViolation } from '../../src/store/index.js';
import { caMigrations, CA_NAMESPACE } from '../../src/ca/store/migrations.js';
import type { CaSchema } from '../../src/ca/store/schema.js';
import { decisionId, decisionsForNonce, insertDecisions, listDecisions } from '../../src/ca/store/decisions.js';
import { countReceipts, findReceipt } from '../../src/ca/store/receipts.js';
import { consumeToken, insertToken } from '../../src/ca/store/tokens.js';
import { revokeNode } from '../../src/ca/store/nodes.js';
import { commitGroup } from '../../src/ca/verifier/commit-group.js';
import { DecisionCommitter } from '../../src/ca/verifier/committer.js';
import { decodeReceiptUnverified } from '../../src/crypto/index.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { forEachDatabase } from '../support/databases.js';
import type { Judgement } from '../../src/ca/verifier/judge.js';
import { addNode, affirmed, claims, issuer, refusedAt } from '../support/judgements.js';

forEachDatabase('ca store', (open) => {
  it('receipts and decisions refuse UPDATE and DELETE, whoever asks', async () => {
    const { db } = await open<CaSchema>(caMigrations, CA_NAMESPACE);
    const c = claims();
    await commitGroup(db, issuer, [affirmed(c)]);
    await assert.rejects(db.updateTable('ca_receipts').set({ status: 'contraindicated' }).where('nonce', '=', c.nonce).execute(), (e) => isAppendOnlyViolation(e));
    await assert.rejects(db.deleteFrom('ca_receipts').where('nonce', '=', c.nonce).execute(), (e) => isAppendOnlyViolation(e));
    await assert.rejects(db.updateTable('ca_decisions').set({ code: 'FORGED' }).execute(), (e) => isAppendOnlyViolation(e));
    await assert.rejects(db.deleteFrom('ca_decisions').execute(), (e) => isAppendOnlyViolation(e));
    await assert.rejects(sql`delete from ca_receipts`.execute(db), (e) => isAppendOnlyViolation(e));
    assert.equal((await findReceipt(db, c.nonce))?.status, 'affirming');
    assert.equal((await decisionsForNonce(db, c.nonce)).length, 1);
  });

  it('a group keeps the first judgement of a nonce; later ones are NONCE_REUSED, their receipts dropped', async () => {
    const { db } = await open<CaSchema>(caMigrations, CA_NAMESPACE);
    await addNode(db, 'node-1');
    const c = claims();
    const first = affirmed(c);
    const second = affirmed({ ...c, vmId: 'vm-2' });
    const late = refusedAt(c, 'time', 'EVIDENCE_STALE');
    const early = refusedAt(c, 'kernel', 'KERNEL_NOT_ALLOWED');
    const r = await commitGroup(db, issuer, [first, second, late, early]);
    assert.deepEqual(r.stored, [c.nonce]);
    assert.deepEqual(r.decisions.map((d) => [d.outcome, d.refusal?.code]), [['affirming', undefined], ['refused', 'NONCE_REUSED'], ['refused', 'NONCE_REUSED'], ['refused', 'KERNEL_NOT_ALLOWED']]);
    assert.equal((await findReceipt(db, c.nonce))?.receipt, first.issued?.receipt);
    // and in a later group
    const again = await commitGroup(db, issuer, [affirmed(c)]);
    assert.deepEqual([again.stored, again.decisions[0]?.refusal?.code], [[], 'NONCE_REUSED']);
    assert.equal((await decisionsForNonce(db, c.nonce)).length, 5);
  });

  it('two handles (two CA processes) committing the same nonce at once: one receipt, every decision recorded', async () => {
    const a = await open<CaSchema>(caMigrations, CA_NAMESPACE);
    const b = await open<CaSchema>(caMigrations, CA_NAMESPACE);
    await addNode(a.db, 'node-1');
    const nonces = Array.from({ length: 40 }, () => newNonce());
    const groups = (vm: string): Judgement[] => nonces.map((nonce) => affirmed(claims({ nonce, vmId: vm })));
    const [ra, rb] = await Promise.all([commitGroup(a.db, issuer, groups('vm-a')), commitGroup(b.db, issuer, groups('vm-b'))]);
    assert.equal(ra.stored.length + rb.stored.length, nonces.length);
    assert.equal(await countReceipts(a.db), nonces.length);
    for (const nonce of nonces) {
      const ds = await decisionsForNonce(b.db, nonce);
      assert.deepEqual(ds.map((d) => d.outcome).sort(), ['affirming', 'refused']);
    }
  });

  it('the commit re-checks revocations: an affirming judgement for a node revoked meanwhile is stored contraindicated', async () => {
    const { db } = await open<CaSchema>(caMigrations, CA_NAMESPACE);
    await addNode(db, 'node-9');
    const c = claims({ nodeId: 'node-9' });
    const j = affirmed(c);
    await revokeNode(db, 'node-9', Date.now(), 'lost');
    const r = await commitGroup(db, issuer, [j]);
    assert.deepEqual([r.decisions[0]?.outcome, r.decisions[0]?.refusal?.code], ['contraindicated', 'NODE_REVOKED']);
    const stored = await findReceipt(db, c.nonce);
    assert.equal(decodeReceiptUnverified(stored?.receipt ?? '').claims['ear.status'], 'contraindicated');
    assert.equal(stored?.hostCertificate, undefined);
  });

  it('group commit: many concurrent submissions share few transactions, each answered after its own commit', async () => {
    const { db, notifier } = await open<CaSchema>(caMigrations, CA_NAMESPACE);
    await addNode(db, 'node-1');
    const committer = new DecisionCommitter((js) => commitGroup(db, issuer, js), notifier, (e) => assert.fail(e));
    const woken: string[] = [];
    const unsubscribe = await notifier.subscribe('ca_receipts', (p) => woken.push(...p.split(' ')));
    const all = Array.from({ length: 200 }, () => affirmed(claims()));
    const decisions = await Promise.all(all.map(async (j) => {
      const d = await committer.submit(j);
      assert.ok((await findReceipt(db, j.claims?.nonce ?? '')) !== undefined, 'answered only once committed');
      return d;
    }));
    assert.ok(decisions.every((d) => d.outcome === 'affirming'));
    assert.ok(committer.commits < all.length / 4, `${committer.commits} commits for ${all.length} submissions`);
    await committer.idle();
    for (let i = 0; i < 100 && woken.length < all.length; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(new Set(woken), new Set(all.map((j) => j.claims?.nonce)));
    unsubscribe();
  });

  it('a failed commit rejects its whole group and stores nothing of it (one transaction)', async () => {
    const { db, notifier } = await open<CaSchema>(caMigrations, CA_NAMESPACE);
    await addNode(db, 'node-1');
    const committer = new DecisionCommitter((js) => commitGroup(db, issuer, js), notifier, () => undefined);
    const good = affirmed(claims());
    const bad = affirmed(claims());
    // a receipt status the table's check constraint refuses: the database fails the commit
    const broken: Judgement = { ...bad, issued: { ...(bad.issued as NonNullable<Judgement['issued']>), status: 'bogus' as 'affirming' } };
    const results = await Promise.allSettled([committer.submit(good), committer.submit(broken)]);
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
    for (const j of [good, bad]) {
      assert.equal(await findReceipt(db, j.claims?.nonce ?? ''), undefined);
      assert.equal((await decisionsForNonce(db, j.claims?.nonce ?? '')).length, 0);
    }
    // the committer carries on with the next group
    assert.equal((await committer.submit(affirmed(claims()))).outcome, 'affirming');
  });

  it('decisions page oldest first by time-ordered id, filtered by node and time', async () => {
    const { db } = await open<CaSchema>(caMigrations, CA_NAMESPACE);
    const t0 = Date.parse('2027-01-01T00:00:00Z');
    const rows = Array.from({ length: 25 }, (_, i) => ({
      id: decisionId(t0 + i * 1000),
      at: t0 + i * 1000,
      kind: 'evidence' as const,
      outcome: 'refused' as const,
      node_id: i % 2 === 0 ? 'even' : 'odd',
      vm_id: null,
      nonce: null,
      step: 'schema',
      code: 'MALFORMED_REQUEST',
      message: `#${i}`,
      evidence_hash: null,
      receipt_jti: null,
    }));
    await insertDecisions(db, [...rows].reverse());
    const seen: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 10; page++) {
      const p = await listDecisions(db, { limit: 7, ...(after === undefined ? {} : { after }) });
      seen.push(...p.decisions.map((d) => d.message ?? ''));
      after = p.next;
      if (after === undefined) break;
    }
    assert.deepEqual(seen, rows.map((r) => r.message));
    assert.deepEqual((await listDecisions(db, { limit: 100, node: 'odd', since: t0 + 10_000 })).decisions.map((d) => d.message), ['#11', '#13', '#15', '#17', '#19', '#21', '#23']);
  });

  it('a token is consumed once, even by racing handles', async () => {
    const a = await open<CaSchema>(caMigrations, CA_NAMESPACE);
    const b = await open<CaSchema>(caMigrations, CA_NAMESPACE);
    await insertToken(a.db, { id: 't1', tokenHash: sha256Digest('token'), createdAt: Date.now(), expiresAt: Date.now() + 60_000 });
    const won = await Promise.all([consumeToken(a.db, 't1', 'n1', Date.now()), consumeToken(b.db, 't1', 'n2', Date.now()), consumeToken(a.db, 't1', 'n3', Date.now())]);
    assert.equal(won.filter(Boolean).length, 1);
  });
});
