// A VM caught mid-attestation by a manager restart is followed again, under its original
// deadline — never left in a transitional state. The CA is stopped so the node's
// mini-domain keeps retrying and the VM stays `attesting`.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { newNonce } from '../../src/protocol/nonce.js';
import { defaultGuestImage } from '../../src/node/vm/process/index.js';
import { forEachDatabase } from '../support/databases.js';
import { startCluster, waitForState, type VmView } from './cluster.js';
import { startTestManager } from './support.js';

forEachDatabase('manager restart mid-attestation', (open) => {
  it('resumes following an attesting VM after a restart and fails it (TIMEOUT) at its launch deadline, stopping it on the node', async () => {
    const m = await startTestManager({ databaseUrl: await open.url() });
    const c = await startCluster(m, { nodes: 1 });
    try {
      await c.waitForNodesUp();
      await c.pushImage('guest', defaultGuestImage());
      const { token } = await m.addUser('alice');
      await c.ca.stop();
      const created = await m.client(token).call<VmView>('POST', '/v1/vms', { body: { image: 'guest', nonce: newNonce(), sshPublicKey: c.key.publicKey } });
      const attesting = await waitForState(m.client(token), created.vmId, ['attesting', 'running', 'failed'], 20_000);
      assert.equal(attesting.state, 'attesting', JSON.stringify(attesting));

      const running = await m.restart({ launchTimeoutMs: 4_000 });
      assert.equal(running.reconciled.outcomes.get(created.vmId), 'attesting', 'the node still says attesting: the VM stays, followed');
      assert.ok(running.service.launcher.busy(created.vmId), 'and a task follows it');
      const alice = m.client(token);
      const failed = await waitForState(alice, created.vmId, ['failed', 'running'], 20_000);
      assert.equal(failed.state, 'failed');
      assert.equal(failed.reason?.code, 'TIMEOUT');
      const node = c.nodes[0];
      assert.ok(node !== undefined);
      const deadline = Date.now() + 10_000;
      let onNode = '';
      while (Date.now() < deadline) {
        onNode = (await node.dom0.call<{ state: string }>('GET', `/v1/vms/${created.vmId}`)).state;
        if (onNode !== 'running' && onNode !== 'booting') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      // Stopped by the manager's node monitor — or already ended by the node itself (crashed).
      assert.ok(onNode === 'stopped' || onNode === 'crashed', `a VM the manager gave up on does not keep running (node says ${onNode})`);
    } finally {
      await c.dispose();
      await m.dispose();
    }
  });
});
