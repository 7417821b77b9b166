// Several CA processes on one database behave as one CA (docs/ca.md "Storage"): a replay
// is refused across processes, racing copies of one evidence get one receipt, a long-poll
// in one process is woken by a commit in another, a revocation or allowlist change made
// through one process holds in the other at once. On PostgreSQL (the deployment for
// several CA processes) and on one SQLite file (which works, notifications aside).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { CaAdminClient, CaClient } from '../../src/ca/client.js';
import { initCaDirectory, addEndorsementRoot, loadCaDirectory } from '../../src/ca/directory.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import type { Evidence } from '../../src/protocol/messages.js';
import { writeFileSync } from 'node:fs';
import { forEachDatabase } from '../support/databases.js';
import { tempDir } from '../support/system.js';
import { startCaProcess, type CaProcess } from './support/process.js';
import { SimNode } from './support/sim-node.js';

forEachDatabase('two CA processes on one database', (open) => {
  const tmp = tempDir('tl-ca-procs-');
  const dir = join(tmp.path, 'ca');
  let a: CaProcess;
  let b: CaProcess;
  let clientA: CaClient;
  let clientB: CaClient;
  let adminA: CaAdminClient;
  let adminB: CaAdminClient;
  let node: SimNode;

  before(async () => {
    const init = await initCaDirectory(dir);
    node = await SimNode.create({ dir: join(tmp.path, 'node') });
    writeFileSync(join(tmp.path, 'm.pem'), node.manufacturerCa.pem);
    await addEndorsementRoot(dir, join(tmp.path, 'm.pem'));
    const db = open.dialect === 'sqlite' ? `sqlite:${tmp.path}/ca.db` : await open.url();
    [a, b] = await Promise.all([startCaProcess({ dir, db }), startCaProcess({ dir, db })]);
    const root = (await loadCaDirectory(dir)).root.certificate;
    clientA = new CaClient({ url: a.url, root });
    clientB = new CaClient({ url: b.url, root });
    adminA = new CaAdminClient({ url: a.url, root, token: init.adminToken });
    adminB = new CaAdminClient({ url: b.url, root, token: init.adminToken });
    await adminA.addPlatform(node.platformReference('p'));
    await adminA.addAllowlist({ name: 'kernel', kernel: sha256Digest('kernel image') });
    const { token } = await adminA.createToken();
    const challenge = await clientA.startRegistration(node.registrationRequest(token));
    await clientA.answerRegistration(challenge.registrationId, await node.answer(challenge));
  });
  after(async () => {
    for (const c of [clientA, clientB, adminA, adminB]) await c.close();
    await Promise.all([a.stop(), b.stop()]);
    await node.dispose();
    tmp.dispose();
  });

  const code = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
      return 'OK';
    } catch (e) {
      assert.ok(isTrustlaunchError(e), String(e));
      return e.code;
    }
  };

  it('a node registered through one process is known to the other at once', async () => {
    assert.equal((await clientB.evidence(await node.evidence())).status, 'affirming');
  });

  it('evidence judged by one process is NONCE_REUSED at the other; the receipt is the same from both', async () => {
    const evidence = await node.evidence();
    const first = await clientA.evidence(evidence);
    assert.equal(await code(clientB.evidence(evidence)), 'NONCE_REUSED');
    assert.deepEqual(await clientB.receipt(evidence.claims.nonce), { receipt: first.receipt, hostCertificate: first.hostCertificate });
    assert.deepEqual(await clientA.receipt(evidence.claims.nonce), { receipt: first.receipt, hostCertificate: first.hostCertificate });
  });

  it('copies of one evidence racing to both processes: exactly one receipt', async () => {
    for (let round = 0; round < 3; round++) {
      const evidence: Evidence = await node.evidence();
      const results = await Promise.all(Array.from({ length: 16 }, (_, i) => code((i % 2 === 0 ? clientA : clientB).evidence(evidence))));
      assert.equal(results.filter((r) => r === 'OK').length, 1, results.join(','));
      assert.equal(results.filter((r) => r === 'NONCE_REUSED').length, 15);
    }
  });

  it("a long-poll in one process is answered by the other's commit", async () => {
    const evidence = await node.evidence();
    const waiting = clientB.receipt(evidence.claims.nonce, 30).then((r) => ({ r, at: Date.now() }));
    // Post just after the waiter's first 1 s re-check: the next re-check is a second away, so a
    // prompt answer can only come from the notification.
    await new Promise((r) => setTimeout(r, 1_200));
    const posted = await clientA.evidence(evidence);
    const postedAt = Date.now();
    const { r, at } = await waiting;
    assert.equal(r.receipt, posted.receipt);
    // PostgreSQL wakes it through NOTIFY; one SQLite file has no cross-process notification, the re-check finds it.
    const lag = at - postedAt;
    assert.ok(lag < (open.dialect === 'postgres' ? 500 : 1_500), `answered ${lag} ms after the commit`);
  });

  it('an allowlist revocation through one process holds in the other immediately', async () => {
    const kernel = sha256Digest('kernel two');
    await adminB.addAllowlist({ name: 'two', kernel });
    assert.equal((await clientA.evidence(await node.evidence(node.claims({ kernel })))).status, 'affirming');
    await adminB.revokeAllowlist('two');
    assert.equal(await code(clientA.evidence(await node.evidence(node.claims({ kernel })))), 'KERNEL_REVOKED');
  });

  it('a node revoked through one process is refused by the other immediately', async () => {
    await adminA.revokeNode(node.nodeId, 'test');
    for (const client of [clientB, clientA]) assert.equal(await code(client.evidence(await node.evidence())), 'NODE_REVOKED');
    const { decisions } = await adminB.decisions({ node: node.nodeId, limit: 1000 });
    assert.ok(decisions.some((d) => d.code === 'NONCE_REUSED') && decisions.filter((d) => d.code === 'NODE_REVOKED').length === 2);
  });
});
