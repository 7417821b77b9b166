// G3 — only the mini-domain reaches the auth device. A hostile dom0, holding exactly the
// hardware domain's capability of a running, registered node, tries every path: its own
// bus masters DMA-ing at every address (aiming at the mini-domain's memory), MMIO to the
// device's registers (a command started by hand), programming the device for DMA, taking
// the device for itself or a VM, quarantining it, and mapping foreign frames into its own
// I/O page table. Each attempt faults or is refused, is recorded, and changes nothing:
// the isolation snapshot (tables, owners, grants, device registers, every frame's digest)
// and the device's state on disk are identical before and after, and the node then
// attests a VM as if nothing had happened.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Digest } from '../../src/protocol/digest.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { AUTH_DEVICE_TPM, FAULT_REASON } from '../../src/node/hypervisor/index.js';
import { createVm, startCluster, waitForAttestation, type Cluster } from '../node/support/cluster.js';
import { hostileDom0, sleep } from './support.js';

const CRB_START = 0x4c;
const CRB_CMD_SIZE = 0x58;
const BASE = AUTH_DEVICE_TPM.bars[0]?.base ?? 0;

void describe('G3: dom0 cannot reach the auth device', () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster({ start: { limits: { faultThreshold: 1_000_000 } } });
    await c.waitForLog('registered');
    await sleep(200); // let the agent go idle
  });
  after(async () => {
    await c.dispose();
  });

  void it('DMA, MMIO, device programming, re-assignment and foreign mappings: each refused or faulted, recorded, nothing changed', async () => {
    const dom0 = hostileDom0(c);
    const node = c.node.hypervisor;
    const cap = dom0.capability;
    const deviceState = join(c.init.paths.device, 'tpm-state.json');
    const stateBefore = sha256Digest(readFileSync(deviceState));
    const before = node.snapshot(true);
    const sinceSeq = node.securityEvents().at(-1)?.seq ?? -1;
    const mini = node.dom0.miniDomain();
    assert.equal(mini.state, 'running');
    assert.equal(node.status().authDevice.owner, mini.domainId);

    // 1. DMA by dom0's own NIC at every page address (its own pages are identity-mapped; everything else must fault).
    const dom0Pages = cap.memory.size / 4096;
    let faults = 0;
    for (let page = dom0Pages; page < dom0Pages + 1024; page++) {
      const w = cap.dma('00:03.0', { address: page * 4096, kind: 'write', data: Buffer.from('dom0 was here') });
      const r = cap.dma('00:03.0', { address: page * 4096, kind: 'read', length: 16 });
      assert.equal(w.ok || r.ok, false, `DMA to page ${page} went through`);
      if (!w.ok && 'fault' in w) {
        assert.equal(w.fault.fr, FAULT_REASON.PTE_WRITE_NOT_SET);
        faults++;
      }
    }
    assert.equal(faults, 1024);

    // 2. MMIO to the device's CRB registers: starting a command by hand.
    assert.throws(() => cap.mmio({ address: BASE + CRB_CMD_SIZE, size: 4, kind: 'write', value: 64 }), (e) => isTrustlaunchError(e, 'MMIO_DENIED'));
    assert.throws(() => cap.mmio({ address: BASE + CRB_START, size: 4, kind: 'write', value: 1 }), (e) => isTrustlaunchError(e, 'MMIO_DENIED'));
    assert.throws(() => cap.mmio({ address: BASE + 0x44, size: 4, kind: 'read' }), (e) => isTrustlaunchError(e, 'MMIO_DENIED'));
    // 3. Programming the device's DMA (it is not dom0's).
    assert.throws(() => cap.dma('00:1f.0', { address: 0, kind: 'read', length: 4096 }), (e) => isTrustlaunchError(e, 'MMIO_DENIED'));
    // 4. Re-assigning it: to dom0 itself, to a VM, back to quarantine.
    const vm = await cap.buildVm({ name: 'vm-g3-target', image: Buffer.from('not a guest') });
    assert.throws(() => cap.assignDevice('00:1f.0', 0), (e) => isTrustlaunchError(e, 'ASSIGNMENT_DENIED'));
    assert.throws(() => cap.assignDevice('00:1f.0', vm.vmId), (e) => isTrustlaunchError(e, 'ASSIGNMENT_DENIED'));
    assert.throws(() => cap.deassignDevice('00:1f.0'), (e) => isTrustlaunchError(e, 'ASSIGNMENT_DENIED'));
    await cap.destroyVm(vm.vmId);
    // 5. Mapping a frame that is not its own into its I/O page table.
    assert.throws(() => cap.iommu.map(0x100000, dom0Pages + 5, { r: true, w: true }), (e) => isTrustlaunchError(e, 'IOMMU_MAP_DENIED'));

    // Detected: every attempt is in the security log.
    const kinds = node.securityEvents(sinceSeq).map((e) => e.kind);
    const count = (k: string): number => kinds.filter((x) => x === k).length;
    assert.equal(count('IOMMU_FAULT'), 2 * 1024);
    assert.equal(count('MMIO_DENIED'), 4);
    assert.equal(count('ASSIGNMENT_DENIED'), 3);
    assert.equal(count('IOMMU_MAP_DENIED'), 1);

    // Nothing changed: the mini-domain still owns the device; isolation state and device state as before.
    assert.equal(node.status().authDevice.owner, mini.domainId);
    const afterSnap = node.snapshot(true);
    const framesOf = (s: typeof before) => s.frames.filter(([, owner]) => owner === mini.domainId);
    assert.deepEqual(framesOf(afterSnap), framesOf(before), "the mini-domain's memory changed");
    assert.deepEqual(afterSnap.iommu.pageTables, before.iommu.pageTables);
    assert.deepEqual(afterSnap.iommu.owners, before.iommu.owners);
    assert.deepEqual(afterSnap.mmio, before.mmio);
    assert.equal(sha256Digest(readFileSync(deviceState)), stateBefore, 'the device state changed');
    node.checkInvariants();

    // And the node still attests a VM.
    await createVm(c, { vmId: 'vm-g3' });
    assert.equal((await waitForAttestation(c, 'vm-g3')).attestation.state, 'attested');
  });
});
