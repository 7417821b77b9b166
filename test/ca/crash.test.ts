// kill -9 of the CA while it takes evidence under load, then a restart on the same
// database: every receipt a client saw is still there byte for byte, no nonce has two
// receipts, every stored receipt has its decision, and resending any evidence never
// yields a second receipt. On SQLite (WAL, synchronous=FULL) and PostgreSQL.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { CaAdminClient, CaClient, type EvidenceResponse } from '../../src/ca/client.js';
import { addEndorsementRoot, initCaDirectory, loadCaDirectory } from '../../src/ca/directory.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import type { Evidence } from '../../src/protocol/messages.js';
import type { Certificate } from '../../src/crypto/x509.js';
import { sql } from 'kysely';
import { openDatabase } from '../../src/store/index.js';
import { caMigrations, CA_NAMESPACE } from '../../src/ca/store/migrations.js';
import type { CaSchema } from '../../src/ca/store/schema.js';
import { forEachDatabase } from '../support/databases.js';
import { tempDir } from '../support/system.js';
import { startCaProcess } from './support/process.js';
import { SimNode } from './support/sim-node.js';

const EVIDENCE = 900;
const CONCURRENCY = 24;
const KILL_AFTER = 250;

forEachDatabase('ca crash', (open) => {
  const tmp = tempDir('tl-ca-crash-');
  const dir = join(tmp.path, 'ca');
  let node: SimNode;
  let root: Certificate;
  let adminToken: string;

  before(async () => {
    adminToken = (await initCaDirectory(dir)).adminToken;
    root = (await loadCaDirectory(dir)).root.certificate;
    node = await SimNode.create({ dir: join(tmp.path, 'node') });
    writeFileSync(join(tmp.path, 'm.pem'), node.manufacturerCa.pem);
    await addEndorsementRoot(dir, join(tmp.path, 'm.pem'));
  });
  after(async () => {
    await node.dispose();
    tmp.dispose();
  });

  it('kill -9 under load, restart: every receipt a client saw survives, no nonce has two receipts', async () => {
    const db = open.dialect === 'sqlite' ? `sqlite:${tmp.path}/ca.db` : await open.url();
    const first = await startCaProcess({ dir, db, threads: 2 });
    const admin = new CaAdminClient({ url: first.url, root, token: adminToken });
    const client = new CaClient({ url: first.url, root, timeoutMs: 10_000 });
    await admin.addPlatform(node.platformReference('p'));
    await admin.addAllowlist({ name: 'kernel', kernel: sha256Digest('kernel image') });
    const { token } = await admin.createToken();
    const challenge = await client.startRegistration(node.registrationRequest(token));
    await client.answerRegistration(challenge.registrationId, await node.answer(challenge));

    const evidence: Evidence[] = [];
    for (let i = 0; i < EVIDENCE; i++) evidence.push(await node.evidence());
    const seen = new Map<string, EvidenceResponse>();
    let next = 0;
    let killed: Promise<unknown> | undefined;
    let failures = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < evidence.length) {
          const e = evidence[next++] as Evidence;
          try {
            seen.set(e.claims.nonce, await client.evidence(e));
          } catch (err) {
            assert.ok(isTrustlaunchError(err), String(err));
            assert.ok(killed !== undefined, `a refusal before the kill: ${err.code} ${err.message}`);
            failures++;
          }
          if (seen.size >= KILL_AFTER && killed === undefined) killed = first.stop('SIGKILL');
        }
      }),
    );
    assert.equal(await killed, 'SIGKILL');
    assert.ok(seen.size >= KILL_AFTER && failures > 0, `saw ${seen.size} receipts, ${failures} failures: the kill came under load`);
    await client.close();
    await admin.close();

    const second = await startCaProcess({ dir, db, threads: 1 });
    const after = new CaClient({ url: second.url, root });
    try {
      for (const [nonce, r] of seen) assert.deepEqual(await after.receipt(nonce), { receipt: r.receipt, hostCertificate: r.hostCertificate }, nonce);
      // Resending every evidence: a nonce already receipted is NONCE_REUSED with its receipt untouched;
      // one that never committed gets its first receipt now. Never a second one.
      for (const e of evidence) {
        const before = await after.receipt(e.claims.nonce).catch(() => undefined);
        try {
          const r = await after.evidence(e);
          assert.equal(before, undefined, 'a second receipt for a nonce');
          assert.equal(r.status, 'affirming');
        } catch (err) {
          assert.ok(isTrustlaunchError(err, 'NONCE_REUSED'), String(err));
          assert.deepEqual(await after.receipt(e.claims.nonce), before);
        }
      }
    } finally {
      await after.close();
      await second.stop();
    }
    const store = await openDatabase<CaSchema>(db, { migrations: caMigrations, namespace: CA_NAMESPACE });
    try {
      const receipts = await store.db.selectFrom('ca_receipts').select(['nonce', 'jti']).execute();
      assert.equal(receipts.length, EVIDENCE);
      assert.equal(new Set(receipts.map((r) => r.nonce)).size, EVIDENCE);
      const decided = new Set((await store.db.selectFrom('ca_decisions').select('receipt_jti').where('receipt_jti', 'is not', null).execute()).map((d) => d.receipt_jti));
      assert.ok(receipts.every((r) => decided.has(r.jti)), 'every stored receipt has its decision');
      if (open.dialect === 'sqlite') assert.deepEqual((await sql<{ integrity_check: string }>`pragma integrity_check`.execute(store.db)).rows, [{ integrity_check: 'ok' }]);
    } finally {
      await store.close();
    }
  });
});
