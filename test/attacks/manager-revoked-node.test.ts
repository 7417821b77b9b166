// The manager places a VM on a node the CA has revoked, and says all is well. The node's
// mini-domain attests as usual; the CA refuses the revoked node and signs a "no" for the
// user's nonce; the client — which believes only the CA — refuses with the status check
// naming NODE_REVOKED, whatever the manager claims, and writes nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { listVmRecords } from '../../src/client/records.js';
import { isTrustlaunchError, type TrustlaunchError } from '../../src/protocol/errors.js';
import { fileText, startCloud, type TestCloud } from '../cluster/support/cloud.js';
import { startHostileManager, type HostileManager } from '../cluster/support/hostile-manager.js';

describe('the manager places a VM on a revoked node', () => {
  let cloud: TestCloud;
  let hostile: HostileManager;

  before(async () => {
    cloud = await startCloud({ nodes: 1 });
    hostile = await startHostileManager({ managerDir: cloud.cluster.paths.manager, upstream: cloud.cluster.manager.url });
  });
  after(async () => {
    await hostile?.close();
    await cloud?.dispose();
  });

  it('is refused by the status check with the CA\'s reason NODE_REVOKED, though the manager says it runs', async () => {
    const alice = cloud.user;
    const honest = await alice.client();
    // Before: a launch on the node is trusted.
    const before = await honest.createVm({ image: 'guest', name: 'before' });
    assert.equal(before.launch.claims.node, 'node-1');

    await cloud.cluster.caAdmin.revokeNode('node-1', 'compromised (test)');
    // The manager does not know (or does not care), and tells the user the VM runs fine.
    let sent = '';
    hostile.behave({
      createRequest: (b) => ((sent = String(b['nonce'])), b),
      vmView: (v) => ({ ...v, state: 'running', reason: null }),
    });
    const client = await alice.client({ managerUrl: hostile.url, graceMs: 20_000 });
    const knownHosts = fileText(alice.paths.knownHosts);
    const records = [...(await listVmRecords(alice.paths)).keys()].sort();

    await assert.rejects(client.createVm({ image: 'guest', name: 'after' }), (e: TrustlaunchError) => {
      assert.ok(isTrustlaunchError(e));
      assert.equal(e.code, 'RECEIPT_CONTRAINDICATED', e.message);
      assert.equal(e.detail?.['check'], 'status');
      assert.equal((e.detail?.['reason'] as { code?: string }).code, 'NODE_REVOKED');
      return true;
    });
    assert.equal(fileText(alice.paths.knownHosts), knownHosts, 'known_hosts changed');
    assert.deepEqual([...(await listVmRecords(alice.paths)).keys()].sort(), records, 'a VM record was written');

    // The CA's decisions log: the launch was judged, on node-1, and contraindicated for NODE_REVOKED.
    const decisions = (await cloud.cluster.caAdmin.decisions({ node: 'node-1' })).decisions.filter((d) => d.nonce === sent);
    assert.deepEqual(decisions.map((d) => [d.outcome, d.code]), [['contraindicated', 'NODE_REVOKED']]);
    // And the real manager (the one the hostile front hides) fails the VM with that code, once
    // its node tells it (the client, which asks the CA, may know first).
    let truth = await honest.manager.getVm('after');
    for (let i = 0; i < 200 && truth.state !== 'failed'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      truth = await honest.manager.getVm('after');
    }
    assert.equal(truth.state, 'failed');
    assert.equal(truth.reason?.code, 'NODE_REVOKED');
  });
});
