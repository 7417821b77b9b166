// The manager's records on both databases: users and tokens, join tokens, the node
// inventory, and VM state changes (compare-and-set through the lifecycle table).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createSelfSignedCa } from '../../src/crypto/x509.js';
import { generateKeyPair } from '../../src/crypto/keys.js';
import { hashToken } from '../../src/http/auth.js';
import { MANAGER_NAMESPACE, managerMigrations } from '../../src/manager/db/migrations.js';
import type { ManagerSchema } from '../../src/manager/db/schema.js';
import { createJoinToken } from '../../src/manager/join-tokens.js';
import { VM_STATES, canTransition, type VmState } from '../../src/manager/lifecycle.js';
import { findNode, joinNode, listNodes, recordPollFailure, recordPollSuccess } from '../../src/manager/nodes.js';
import { addUser, authenticate, ensureBootstrapAdmin, listUsers, removeUser } from '../../src/manager/users.js';
import { activePlacements, findUserVm, getVm, insertVm, listUserVms, transition, vmEvents } from '../../src/manager/vms.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { forEachDatabase } from '../support/databases.js';
import { PATH_TO_STATE } from '../support/vm-paths.js';

const caPem = (async () => (await createSelfSignedCa({ commonName: 'dom0 test CA', privateKey: generateKeyPair('ecdsa-p256').privateKey })).pem)();

forEachDatabase('manager store', (open) => {
  const db = async () => (await open<ManagerSchema>(managerMigrations, MANAGER_NAMESPACE)).db;

  it('adds users with tokens stored only as hashes, authenticates them, and refuses a taken name', async () => {
    const d = await db();
    const { user, token } = await addUser(d, 'alice', 'user');
    assert.match(token, /^tlusr_[A-Za-z0-9_-]{43}$/);
    const rows = await d.selectFrom('mgr_users').selectAll().execute();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.token_hash, hashToken(token));
    assert.ok(!JSON.stringify(rows).includes(token), 'the token itself is stored nowhere');
    assert.deepEqual(await authenticate(d, token), user);
    // Another last character (always different: a token ending in A gets B).
    assert.equal(await authenticate(d, `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`), undefined);
    assert.equal(await authenticate(d, ''), undefined);
    await assert.rejects(addUser(d, 'alice', 'admin'), (e) => isTrustlaunchError(e, 'CONFLICT'));
    assert.deepEqual((await listUsers(d)).map((u) => u.name), ['alice']);
  });

  it('keeps the bootstrap admin in step with the configured token hash; it and the caller cannot be removed', async () => {
    const d = await db();
    await ensureBootstrapAdmin(d, hashToken('tladm_first'));
    await ensureBootstrapAdmin(d, hashToken('tladm_first'));
    assert.equal((await authenticate(d, 'tladm_first'))?.role, 'admin');
    await ensureBootstrapAdmin(d, hashToken('tladm_second'));
    assert.equal(await authenticate(d, 'tladm_first'), undefined, 'a replaced token stops working');
    const admin = await authenticate(d, 'tladm_second');
    assert.ok(admin !== undefined);
    const { user: bob } = await addUser(d, 'bob', 'admin');
    await assert.rejects(removeUser(d, 'admin', bob), (e) => isTrustlaunchError(e, 'CONFLICT'));
    await assert.rejects(removeUser(d, 'bob', bob), (e) => isTrustlaunchError(e, 'CONFLICT'));
    await assert.rejects(removeUser(d, 'nobody', admin), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
    await removeUser(d, 'bob', admin);
    assert.deepEqual((await listUsers(d)).map((u) => u.name), ['admin']);
  });

  it('consumes a join token once; an expired or unknown one joins nothing and a refused join keeps the token', async () => {
    const d = await db();
    const req = async (token: string, nodeId = 'node-a') => ({ token, nodeId, endpoint: 'https://127.0.0.1:9/', dom0CaCertificate: await caPem, dom0Token: 'tlnode_0123456789abcdef' });
    const { token } = await createJoinToken(d, 60_000);
    // A malformed certificate is refused before the token is touched.
    await assert.rejects(joinNode(d, { ...(await req(token)), dom0CaCertificate: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }), (e) => isTrustlaunchError(e, 'MALFORMED_CERTIFICATE'));
    await assert.rejects(joinNode(d, { ...(await req(token)), endpoint: 'http://127.0.0.1:9' }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    const node = await joinNode(d, await req(token));
    assert.equal(node.endpoint, 'https://127.0.0.1:9');
    assert.equal(node.status, 'joining');
    await assert.rejects(joinNode(d, await req(token, 'node-b')), (e) => isTrustlaunchError(e, 'TOKEN_INVALID'));
    await assert.rejects(joinNode(d, await req('tljoin_unknown-token-000000000000000000000000000000')), (e) => isTrustlaunchError(e, 'TOKEN_INVALID'));
    const short = await createJoinToken(d, 1);
    await new Promise((r) => setTimeout(r, 5));
    await assert.rejects(joinNode(d, await req(short.token, 'node-c')), (e) => isTrustlaunchError(e, 'TOKEN_INVALID'));
    assert.deepEqual((await listNodes(d)).map((n) => n.id), ['node-a']);
  });

  it('marks a node up when it answers and down after the configured number of failed polls', async () => {
    const d = await db();
    const { token } = await createJoinToken(d);
    await joinNode(d, { token, nodeId: 'node-a', endpoint: 'https://127.0.0.1:9', dom0CaCertificate: await caPem, dom0Token: 'tlnode_0123456789abcdef' });
    await recordPollSuccess(d, 'node-a', { memoryTotalMiB: 2048, memoryUsedMiB: 256, vmCount: 1, maxVms: 8, health: 'ok', deviceKind: 'sim' });
    assert.equal((await findNode(d, 'node-a'))?.status, 'up');
    assert.equal(await recordPollFailure(d, 'node-a', 'refused', 3), 'up');
    assert.equal(await recordPollFailure(d, 'node-a', 'refused', 3), 'up');
    assert.equal(await recordPollFailure(d, 'node-a', 'refused', 3), 'down');
    const down = await findNode(d, 'node-a');
    assert.equal(down?.failures, 3);
    assert.equal(down?.lastError, 'refused');
    await recordPollSuccess(d, 'node-a', { memoryTotalMiB: 2048, memoryUsedMiB: 0, vmCount: 0, maxVms: 8, health: 'ok', deviceKind: 'sim' });
    const back = await findNode(d, 'node-a');
    assert.equal(back?.status, 'up');
    assert.equal(back?.failures, 0);
    assert.equal(back?.lastError, null);
  });

  it('changes VM state only along the table, only from the expected state, with one event per change', async () => {
    const d = await db();
    const { user } = await addUser(d, 'alice', 'user');
    const vm = await insertVm(d, { userId: user.id, imageRef: 'img', imageDigest: sha256Digest('x'), imageKind: 'raw', nonce: newNonce(), memoryMiB: 256 });
    assert.equal(vm.state, 'requested');
    assert.equal(vm.name, vm.id, 'an unnamed VM is named by its id');
    assert.equal(vm.hostname, vm.id);
    // Illegal pairs throw before anything changes, whatever the VM's state.
    await assert.rejects(transition(d, vm.id, { from: 'requested', to: 'running' }), (e) => isTrustlaunchError(e, 'ILLEGAL_TRANSITION'));
    await assert.rejects(transition(d, vm.id, { from: ['requested', 'stopped'], to: 'failed' }), (e) => isTrustlaunchError(e, 'ILLEGAL_TRANSITION'));
    assert.equal((await getVm(d, vm.id))?.state, 'requested');
    assert.equal((await getVm(d, vm.id))?.version, 1);
    // A legal pair from a state the VM is not in changes nothing.
    assert.equal(await transition(d, vm.id, { from: 'scheduled', to: 'booting' }), undefined);
    const scheduled = await transition(d, vm.id, { from: 'requested', to: 'scheduled', nodeId: 'node-a' });
    assert.equal(scheduled?.state, 'scheduled');
    assert.equal(scheduled?.nodeId, 'node-a');
    const failed = await transition(d, vm.id, { from: ['scheduled', 'booting'], to: 'failed', reason: { code: 'VM_BOOT_FAILED', message: 'no' } });
    assert.deepEqual(failed?.reason, { code: 'VM_BOOT_FAILED', message: 'no' });
    assert.deepEqual(
      (await vmEvents(d, vm.id)).map((e) => [e.seq, e.from, e.to]),
      [
        [1, null, 'requested'],
        [2, 'requested', 'scheduled'],
        [3, 'scheduled', 'failed'],
      ],
    );
  });

  it('walks every legal pair of the table on a stored VM, and refuses every illegal one', async () => {
    const d = await db();
    const { user } = await addUser(d, 'alice', 'user');
    // Reach each state by a legal path, then try every target from it.
    for (const from of VM_STATES) {
      for (const to of VM_STATES) {
        const vm = await insertVm(d, { userId: user.id, imageRef: 'img', imageDigest: sha256Digest('x'), imageKind: 'raw', nonce: newNonce(), memoryMiB: 1 });
        let state: VmState = 'requested';
        for (const next of PATH_TO_STATE[from]) {
          assert.ok((await transition(d, vm.id, { from: state, to: next }))?.state === next);
          state = next;
        }
        if (canTransition(from, to)) {
          assert.equal((await transition(d, vm.id, { from, to }))?.state, to, `${from} → ${to}`);
        } else {
          await assert.rejects(transition(d, vm.id, { from, to }), (e) => isTrustlaunchError(e, 'ILLEGAL_TRANSITION'), `${from} → ${to}`);
          assert.equal((await getVm(d, vm.id))?.state, from, 'nothing changed');
        }
      }
    }
  });

  it('lets concurrent changes of one VM succeed exactly once', async () => {
    const d = await db();
    const { user } = await addUser(d, 'alice', 'user');
    const vm = await insertVm(d, { userId: user.id, imageRef: 'img', imageDigest: sha256Digest('x'), imageKind: 'raw', nonce: newNonce(), memoryMiB: 1 });
    await transition(d, vm.id, { from: 'requested', to: 'scheduled', nodeId: 'n' });
    // A stop and a boot race from `scheduled`: one wins, the other finds the VM moved.
    const results = await Promise.all([
      transition(d, vm.id, { from: 'scheduled', to: 'booting' }),
      transition(d, vm.id, { from: 'scheduled', to: 'stopping' }),
      transition(d, vm.id, { from: 'scheduled', to: 'failed', reason: { code: 'TIMEOUT', message: 't' } }),
    ]);
    assert.equal(results.filter((r) => r !== undefined).length, 1);
    assert.equal((await vmEvents(d, vm.id)).length, 3);
  });

  it('keeps VM names unique per user, and shows a user only their own VMs', async () => {
    const d = await db();
    const { user: alice } = await addUser(d, 'alice', 'user');
    const { user: bob } = await addUser(d, 'bob', 'user');
    const base = { imageRef: 'img', imageDigest: sha256Digest('x'), imageKind: 'raw' as const, nonce: newNonce(), memoryMiB: 1 };
    const a = await insertVm(d, { ...base, userId: alice.id, name: 'web' });
    await assert.rejects(insertVm(d, { ...base, userId: alice.id, name: 'web' }), (e) => isTrustlaunchError(e, 'CONFLICT'));
    const b = await insertVm(d, { ...base, userId: bob.id, name: 'web' });
    assert.notEqual(a.id, b.id);
    assert.equal((await findUserVm(d, alice.id, 'web'))?.id, a.id);
    assert.equal((await findUserVm(d, alice.id, a.id))?.id, a.id);
    assert.equal(await findUserVm(d, alice.id, b.id), undefined);
    assert.deepEqual((await listUserVms(d, bob.id)).map((v) => v.id), [b.id]);
  });

  it("counts memory placed on each node until the VMs end", async () => {
    const d = await db();
    const { user } = await addUser(d, 'alice', 'user');
    const base = { userId: user.id, imageRef: 'img', imageDigest: sha256Digest('x'), imageKind: 'raw' as const, nonce: newNonce(), memoryMiB: 100 };
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const vm = await insertVm(d, base);
      await transition(d, vm.id, { from: 'requested', to: 'scheduled', nodeId: i < 2 ? 'n1' : 'n2' });
      ids.push(vm.id);
    }
    await insertVm(d, base); // requested: not placed anywhere yet
    assert.deepEqual(Object.fromEntries(await activePlacements(d)), { n1: { memoryMiB: 200, vms: 2 }, n2: { memoryMiB: 100, vms: 1 } });
    await transition(d, ids[0] as string, { from: 'scheduled', to: 'failed', reason: { code: 'TIMEOUT', message: 't' } });
    assert.deepEqual(Object.fromEntries(await activePlacements(d)), { n1: { memoryMiB: 100, vms: 1 }, n2: { memoryMiB: 100, vms: 1 } });
  });
});
