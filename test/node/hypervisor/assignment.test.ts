// Device assignment as dom0 requests it: the auth device moves only through the launch
// gate; no domain assigns to itself; groups move whole; VM destruction quarantines.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { DOMID_HARDWARE, DOMID_IO } from '../../../src/node/hypervisor/index.js';
import { bootTestNode } from './node-fixture.js';

type Node = Awaited<ReturnType<typeof bootTestNode>>['node'];

function owner(node: Node, bdf: string): number {
  const d = node.status().devices.find((x) => x.bdf === bdf);
  assert.ok(d, bdf);
  return d.owner;
}

function deniedWithoutChange(node: Node, op: () => unknown, reason: string): void {
  const before = node.snapshot(true);
  const seq = node.status().securityEvents.total;
  assert.throws(op, (e) => isTrustlaunchError(e, 'ASSIGNMENT_DENIED') && e.detail?.['reason'] === reason);
  assert.deepEqual(node.snapshot(true), before);
  const ev = node.securityEvents(seq - 1);
  assert.equal(ev.length, 1);
  assert.equal(ev[0]?.kind, 'ASSIGNMENT_DENIED');
  assert.equal(ev[0]?.domain, DOMID_HARDWARE);
  node.checkInvariants();
}

void describe('device assignment requested by dom0', () => {
  void it('never moves the auth device: not to a VM, not to itself, not out of the mini-domain', async () => {
    const t = await bootTestNode();
    const vm = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('kernel') });
    deniedWithoutChange(t.node, () => t.node.dom0.assignDevice('00:1f.0', vm.vmId), 'reserved-device');
    deniedWithoutChange(t.node, () => t.node.dom0.assignDevice('00:1f.0', DOMID_HARDWARE), 'reserved-device');
    deniedWithoutChange(t.node, () => t.node.dom0.deassignDevice('00:1f.0'), 'reserved-device');
    const launch = await t.node.dom0.launchMiniDomain(t.image);
    deniedWithoutChange(t.node, () => t.node.dom0.assignDevice('00:1f.0', vm.vmId), 'reserved-device');
    deniedWithoutChange(t.node, () => t.node.dom0.deassignDevice('00:1f.0'), 'reserved-device');
    assert.equal(owner(t.node, '00:1f.0'), launch.domainId);
    await t.node.shutdown();
  });

  void it('refuses assignment to dom0 itself, to the mini-domain, to unknown or destroyed domains', async () => {
    const t = await bootTestNode();
    const launch = await t.node.dom0.launchMiniDomain(t.image);
    deniedWithoutChange(t.node, () => t.node.dom0.assignDevice('00:02.0', DOMID_HARDWARE), 'requester-is-target');
    deniedWithoutChange(t.node, () => t.node.dom0.assignDevice('00:02.0', launch.domainId), 'target-not-a-live-domain');
    deniedWithoutChange(t.node, () => t.node.dom0.assignDevice('00:02.0', 999), 'target-not-a-live-domain');
    deniedWithoutChange(t.node, () => t.node.dom0.assignDevice('00:02.0', DOMID_IO), 'target-not-a-live-domain');
    const vm = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('kernel') });
    await t.node.dom0.destroyVm(vm.vmId);
    deniedWithoutChange(t.node, () => t.node.dom0.assignDevice('00:02.0', vm.vmId), 'target-not-a-live-domain');
    await t.node.shutdown();
  });

  void it('moves whole groups to a VM; a VM cannot pass them on; destruction quarantines them', async () => {
    const t = await bootTestNode();
    const a = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('kernel a') });
    const b = await t.node.dom0.buildVm({ name: 'vm-b', image: Buffer.from('kernel b') });
    t.node.dom0.assignDevice('00:03.1', a.vmId);
    assert.equal(owner(t.node, '00:03.0'), a.vmId);
    assert.equal(owner(t.node, '00:03.1'), a.vmId);
    t.node.checkInvariants();
    // From a VM the group may only go back to quarantine (dom0 cannot pass it to another VM directly).
    deniedWithoutChange(t.node, () => t.node.dom0.assignDevice('00:03.0', b.vmId), 'source-not-quarantine-or-hardware');
    await t.node.dom0.destroyVm(a.vmId);
    assert.equal(owner(t.node, '00:03.0'), DOMID_IO);
    assert.equal(owner(t.node, '00:03.1'), DOMID_IO);
    t.node.checkInvariants();
    // From quarantine to another VM is allowed; back to quarantine with deassign.
    t.node.dom0.assignDevice('00:03.0', b.vmId);
    assert.equal(owner(t.node, '00:03.1'), b.vmId);
    t.node.dom0.deassignDevice('00:03.1');
    assert.equal(owner(t.node, '00:03.0'), DOMID_IO);
    deniedWithoutChange(t.node, () => t.node.dom0.deassignDevice('00:03.0'), 'already-quarantined');
    t.node.checkInvariants();
    await t.node.shutdown();
  });
});
