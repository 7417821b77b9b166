// Placement by VM backend, on both databases, with a real manager, CA and nodes (one
// process-VM node, one QEMU node): each node's dom0 says which backend it runs; a raw
// image goes only to a process node and a kernel bundle only to a QEMU node, however the
// load would otherwise spread them, and every blob of the bundle reaches the QEMU node
// (and none the other); with no node of the kind up, the create is refused
// 409 NO_NODE_FOR_IMAGE naming why, and nothing is left behind (no VM record, no event,
// nothing on any node).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import type { JsonClient } from '../../src/http/client.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { forEachDatabase } from '../support/databases.js';
import { startCluster, waitForState, type TestCluster, type VmView } from './cluster.js';
import { startTestManager, type TestManager } from './support.js';

// The bundle below is not a bootable kernel: a VM placed on the QEMU node is deleted at
// once. TCG keeps that brief boot from being the host's KVM probe, whose answer is cached
// for every later QEMU VM of this boot.
process.env['TRUSTLAUNCH_QEMU_ACCEL'] = 'tcg';

interface NodeListing {
  nodes: Array<{ id: string; status: string; health: string | null; vmBackend: string | null }>;
}

forEachDatabase('placement by VM backend', (open) => {
  let m: TestManager;
  let c: TestCluster;
  let alice: JsonClient;
  let bundle: { kernel: Uint8Array; initrd: Uint8Array; cmdline: Uint8Array };
  let bundleDigest: string;

  before(async () => {
    m = await startTestManager({ databaseUrl: await open.url() });
    c = await startCluster(m, { nodes: 2, vmBackends: ['process', 'qemu'] });
    alice = (await m.addUser('alice')).client;
    await c.pushImage('guest', (await import('../../src/node/vm/process/index.js')).defaultGuestImage());
    bundle = { kernel: randomBytes(4096), initrd: randomBytes(3000), cmdline: Buffer.from('console=ttyS0') };
    bundleDigest = await c.pushBundle('kernel-bundle', bundle);
  });
  after(async () => {
    await c?.dispose();
    await m?.dispose();
  });

  const create = (image: string) => alice.call<VmView>('POST', '/v1/vms', { body: { image, nonce: newNonce(), sshPublicKey: c.key.publicKey } });
  const remove = (vmId: string) => alice.call('DELETE', `/v1/vms/${vmId}`);
  const nodeStatus = async (id: string): Promise<string | undefined> =>
    (await m.admin.call<NodeListing>('GET', '/v1/nodes')).nodes.find((n) => n.id === id)?.status;
  const waitForStatus = async (id: string, status: string): Promise<void> => {
    const deadline = Date.now() + 20_000;
    while ((await nodeStatus(id)) !== status) {
      if (Date.now() > deadline) throw new Error(`node ${id} is not ${status} after 20 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  /** What exists anywhere: the manager's VM and event rows, the user's list, each live node's VMs. */
  const everything = async (live: readonly string[]): Promise<unknown> => {
    const db = m.running.service.db;
    const count = async (table: 'mgr_vms' | 'mgr_vm_events'): Promise<number> =>
      Number((await db.selectFrom(table).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    const onNodes: Record<string, string[]> = {};
    for (const n of c.nodes.filter((n) => live.includes(n.id))) {
      onNodes[n.id] = (await n.dom0.call<{ vms: Array<{ vmId: string }> }>('GET', '/v1/vms')).vms.map((v) => v.vmId).sort();
    }
    const listed = (await alice.call<{ vms: Array<{ vmId: string }> }>('GET', '/v1/vms')).vms.map((v) => v.vmId).sort();
    return { vms: await count('mgr_vms'), events: await count('mgr_vm_events'), listed, onNodes };
  };
  const refusedForBackend = async (image: string, backend: string, live: readonly string[]): Promise<void> => {
    const before = await everything(live);
    await assert.rejects(create(image), (e) => {
      assert.ok(isTrustlaunchError(e, 'NO_NODE_FOR_IMAGE'), String(e));
      assert.equal(e.status, 409);
      assert.match(e.message, new RegExp(`no node that is up runs ${backend} VMs: image ${image} `));
      return true;
    });
    assert.deepEqual(await everything(live), before, 'nothing kept or sent anywhere');
  };

  it("lists each node with the VM backend its dom0 reports", async () => {
    await c.waitForNodesUp();
    const { nodes } = await m.admin.call<NodeListing>('GET', '/v1/nodes');
    assert.deepEqual(
      nodes.map((n) => [n.id, n.status, n.vmBackend]),
      [
        ['node-1', 'up', 'process'],
        ['node-2', 'up', 'qemu'],
      ],
    );
  });

  it('places raw images only on the process node and bundles only on the QEMU node, whatever the load', async () => {
    // Least-loaded alone would spread these over both nodes.
    const raw = [];
    for (let i = 0; i < 3; i++) raw.push(await create('guest'));
    assert.deepEqual(raw.map((v) => v.node), ['node-1', 'node-1', 'node-1']);
    const placed = await create('kernel-bundle');
    assert.equal(placed.node, 'node-2');
    // The launcher copies the parts, then the manifest, then creates the VM on the node (these bytes then fail to boot).
    const vm = await waitForState(alice, placed.vmId, ['booting', 'attesting', 'running', 'failed'], 60_000);
    assert.equal(vm.node, 'node-2');
    const stored = (nodeIndex: number, digest: string): boolean => existsSync(join(c.nodes[nodeIndex]!.init.paths.images, 'sha256', digest.slice('sha256:'.length)));
    for (const digest of [sha256Digest(bundle.kernel), sha256Digest(bundle.initrd), sha256Digest(bundle.cmdline), bundleDigest]) {
      assert.ok(stored(1, digest), `${digest} on the QEMU node`);
      assert.ok(!stored(0, digest), `${digest} not on the process node`);
    }
    await remove(placed.vmId);
    for (const v of raw) await remove(v.vmId);
  });

  it('refuses a raw image 409 NO_NODE_FOR_IMAGE while no process node is up, keeping nothing; places it again once one is', async () => {
    await c.nodes[0]!.stop();
    await waitForStatus('node-1', 'down');
    await refusedForBackend('guest', 'process', ['node-2']);
    await c.nodes[0]!.restart();
    await waitForStatus('node-1', 'up');
    const vm = await create('guest');
    assert.equal(vm.node, 'node-1');
    await remove(vm.vmId);
  });

  it('refuses a kernel bundle 409 NO_NODE_FOR_IMAGE while no QEMU node is up, keeping nothing', async () => {
    await c.nodes[1]!.stop();
    await waitForStatus('node-2', 'down');
    await refusedForBackend('kernel-bundle', 'qemu', ['node-1']);
    // The message tells the user what would run it.
    await assert.rejects(create('kernel-bundle'), (e) => isTrustlaunchError(e) && e.message.includes('--vm-backend qemu'));
  });

  it('with no node up at all, the create is NO_NODE_AVAILABLE (503), as before', async () => {
    await c.nodes[0]!.stop();
    await waitForStatus('node-1', 'down');
    await assert.rejects(create('guest'), (e) => isTrustlaunchError(e, 'NO_NODE_AVAILABLE') && e.status === 503);
  });
});
