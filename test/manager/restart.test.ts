// After a restart no VM is left in a transitional state: the manager asks each VM's node
// before serving, and what no node can vouch for has failed, with the reason. Here the
// nodes are unreachable or gone (the reachable case runs against real nodes in
// e2e.test.ts). Also: a node that stops answering is marked down and gets no VM.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { it } from 'node:test';
import { createSelfSignedCa } from '../../src/crypto/x509.js';
import { generateKeyPair } from '../../src/crypto/keys.js';
import { isTransitional, type VmState } from '../../src/manager/lifecycle.js';
import { findUser } from '../../src/manager/users.js';
import { getVm, insertVm, listVmsIn, transition } from '../../src/manager/vms.js';
import { TRANSITIONAL_STATES } from '../../src/manager/lifecycle.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { forEachDatabase } from '../support/databases.js';
import { PATH_TO_STATE } from '../support/vm-paths.js';
import { startTestManager, type TestManager } from './support.js';

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

async function joinUnreachable(m: TestManager, nodeId: string): Promise<void> {
  const { token } = await m.admin.call<{ token: string }>('POST', '/v1/nodes/tokens', { body: {} });
  const ca = await createSelfSignedCa({ commonName: 'dom0 CA', privateKey: generateKeyPair('ecdsa-p256').privateKey });
  await m.client().call('POST', '/v1/nodes/join', {
    body: { token, nodeId, endpoint: `https://127.0.0.1:${await closedPort()}`, dom0CaCertificate: ca.pem, dom0Token: 'tlnode_not-a-real-token-0000000000' },
  });
}

/** A VM left in `state` on `nodeId` (undefined: never placed), as a crash would leave it. */
async function leaveVm(m: TestManager, state: VmState, nodeId: string | undefined, name: string): Promise<string> {
  const db = m.running.service.db;
  const user = await findUser(db, 'alice');
  assert.ok(user !== undefined);
  const vm = await insertVm(db, { userId: user.id, name, imageRef: 'guest', imageDigest: sha256Digest('g'), imageKind: 'raw', nonce: newNonce(), memoryMiB: 64 });
  let at: VmState = 'requested';
  for (const next of nodeId === undefined && state === 'stopping' ? (['stopping'] as const) : PATH_TO_STATE[state]) {
    const moved = await transition(db, vm.id, {
      from: at,
      to: next,
      ...(next === 'scheduled' && nodeId !== undefined ? { nodeId } : {}),
      ...(next === 'failed' ? { reason: { code: 'VM_BOOT_FAILED' as const, message: 'before the restart' } } : {}),
    });
    assert.equal(moved?.state, next);
    at = next;
  }
  return vm.id;
}

forEachDatabase('manager restart', (open) => {
  it('leaves no VM in a transitional state: unreachable node, removed node, never placed — each failed with its reason', async () => {
    const m = await startTestManager({ databaseUrl: await open.url() });
    try {
      await m.addUser('alice');
      await joinUnreachable(m, 'node-away');
      const ids: Record<string, string> = {};
      for (const state of ['requested', 'scheduled', 'booting', 'attesting', 'stopping', 'running', 'stopped', 'failed'] as const) {
        ids[`away-${state}`] = await leaveVm(m, state, state === 'requested' ? undefined : 'node-away', `away-${state}`);
      }
      ids['gone-booting'] = await leaveVm(m, 'booting', 'node-gone', 'gone-booting');
      ids['gone-stopping'] = await leaveVm(m, 'stopping', 'node-gone', 'gone-stopping');
      ids['nowhere-stopping'] = await leaveVm(m, 'stopping', undefined, 'nowhere-stopping');
      assert.equal((await listVmsIn(m.running.service.db, TRANSITIONAL_STATES)).length, 8);

      const running = await m.restart();
      const db = running.service.db;
      assert.deepEqual(await listVmsIn(db, TRANSITIONAL_STATES), [], 'nothing is left mid-way');
      const expect: Record<string, [VmState, string | null]> = {
        'away-requested': ['failed', 'VM_LOST'],
        'away-scheduled': ['failed', 'NODE_UNREACHABLE'],
        'away-booting': ['failed', 'NODE_UNREACHABLE'],
        'away-attesting': ['failed', 'NODE_UNREACHABLE'],
        'away-stopping': ['failed', 'NODE_UNREACHABLE'],
        // Not transitional: a running VM is not failed because its node is briefly away.
        'away-running': ['running', null],
        'away-stopped': ['stopped', null],
        'away-failed': ['failed', 'VM_BOOT_FAILED'],
        'gone-booting': ['failed', 'VM_LOST'],
        'gone-stopping': ['failed', 'VM_LOST'],
        'nowhere-stopping': ['stopped', null],
      };
      for (const [name, [state, code]] of Object.entries(expect)) {
        const vm = await getVm(db, ids[name] as string);
        assert.equal(vm?.state, state, name);
        assert.equal(vm?.reason?.code ?? null, code, name);
      }
      assert.match((await getVm(db, ids['away-booting'] as string))?.reason?.message ?? '', /node-away did not answer after the manager restarted/);
      for (const [id, state] of running.reconciled.outcomes) assert.ok(!isTransitional(state), `${id} ${state}`);
      assert.equal(running.reconciled.outcomes.size, 8);

    } finally {
      await m.dispose();
    }
  });

  it('marks a node that does not answer down (with the error), and places no VM on it', async () => {
    const m = await startTestManager({ databaseUrl: await open.url() });
    try {
      const { client: a } = await m.addUser('alice');
      await joinUnreachable(m, 'node-away');
      const deadline = Date.now() + 10_000;
      let node: { status: string; failures: number; lastError: string | null } | undefined;
      while (Date.now() < deadline) {
        node = (await m.admin.call<{ nodes: Array<{ status: string; failures: number; lastError: string | null }> }>('GET', '/v1/nodes')).nodes[0];
        if (node?.status === 'down') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(node?.status, 'down');
      assert.ok((node?.failures ?? 0) >= 2);
      assert.match(node?.lastError ?? '', /ECONNREFUSED|connect/);
      const bytes = Buffer.from('guest');
      const digest = sha256Digest(bytes);
      await m.admin.call('PUT', `/v1/blobs/${digest}`, { raw: { body: bytes, contentType: 'application/octet-stream', length: bytes.length } });
      await m.admin.call('POST', '/v1/images', { body: { name: 'guest', raw: digest } });
      await assert.rejects(a.call('POST', '/v1/vms', { body: { image: 'guest', nonce: newNonce() } }), (e) => isTrustlaunchError(e, 'NO_NODE_AVAILABLE'));
      // Removing the node fails what was placed on it.
      const id = await leaveVm(m, 'running', 'node-away', 'was-running');
      await m.admin.call('DELETE', '/v1/nodes/node-away');
      const vm = await getVm(m.running.service.db, id);
      assert.equal(vm?.state, 'failed');
      assert.equal(vm?.reason?.code, 'VM_LOST');
      assert.deepEqual((await m.admin.call<{ nodes: unknown[] }>('GET', '/v1/nodes')).nodes, []);
    } finally {
      await m.dispose();
    }
  });
});
