// The hardware layer: assignment rules, I/O page-table rules, DMA remapping with fault
// records, the fault threshold, and MMIO grants. Every refusal is checked to change nothing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { DOMID_HARDWARE, DOMID_IO, DOMID_XEN } from '../../../src/node/hypervisor/domain-id.js';
import type { DmaResult } from '../../../src/node/hypervisor/iommu.js';
import { FAULT_REASON, FAULT_TYPE } from '../../../src/node/hypervisor/vtd/fault.js';
import { PAGE_SIZE } from '../../../src/node/hypervisor/vtd/structures.js';
import { MINI, SID, VM_A, VM_B, barePlatform, hfnOf, type BarePlatform } from './fixtures.js';

function refusedWithoutChange(bare: BarePlatform, code: 'ASSIGNMENT_DENIED' | 'IOMMU_MAP_DENIED' | 'MMIO_DENIED', op: () => unknown, reason?: string): void {
  const before = bare.platform.snapshot(true);
  const eventsBefore = bare.events.total;
  assert.throws(op, (e) => isTrustlaunchError(e, code) && (reason === undefined || e.detail?.['reason'] === reason));
  assert.deepEqual(bare.platform.snapshot(true), before, 'a refused operation changed the platform');
  const recorded = bare.events.list(eventsBefore - 1);
  assert.equal(recorded.length, 1, 'a refusal is one security event');
  assert.equal(recorded[0]?.kind, code);
  bare.check();
}

function faultOf(r: DmaResult): { fr: number; t: number; fi: number; sid: number } {
  assert.ok(!r.ok && 'fault' in r, `expected a fault, got ${JSON.stringify(r)}`);
  return r.fault;
}

void describe('device assignment', () => {
  void it('boots with dom0 owning its devices and the auth device quarantined', () => {
    const bare = barePlatform();
    bare.check();
    assert.equal(bare.platform.ownerOf(SID.nic0), DOMID_HARDWARE);
    assert.equal(bare.platform.ownerOf(SID.auth), DOMID_IO);
    assert.equal(bare.platform.mmio.holder(SID.auth), undefined);
    // DMA by the quarantined auth device: bus 0 has a root entry, its context entry is not present.
    assert.equal(faultOf(bare.platform.dma({ sid: SID.auth, address: 0, kind: 'read', length: 4 })).fr, FAULT_REASON.CONTEXT_ENTRY_NOT_PRESENT);
    // A requester on a bus with nothing assigned misses the root entry.
    assert.equal(faultOf(bare.platform.dma({ sid: 0x0500, address: 0, kind: 'read', length: 4 })).fr, FAULT_REASON.ROOT_ENTRY_NOT_PRESENT);
  });

  void it('moves a whole IOMMU group from the hardware domain, with its MMIO grants', () => {
    const bare = barePlatform();
    const moved = bare.platform.assign(SID.nic1, VM_A, DOMID_HARDWARE);
    assert.deepEqual(moved.sort(), [SID.nic0, SID.nic1]);
    for (const sid of moved) {
      assert.equal(bare.platform.ownerOf(sid), VM_A);
      assert.equal(bare.platform.mmio.holder(sid), VM_A);
    }
    bare.check();
  });

  void it('refuses moves out of a domain other than quarantine or the hardware domain', () => {
    const bare = barePlatform();
    bare.platform.assign(SID.nic0, VM_A, DOMID_HARDWARE);
    refusedWithoutChange(bare, 'ASSIGNMENT_DENIED', () => bare.platform.assign(SID.nic0, VM_B, VM_A), 'source-not-quarantine-or-hardware');
  });

  void it('refuses assignment to the current owner, to quarantine, to a missing domain, of a missing device', () => {
    const bare = barePlatform();
    refusedWithoutChange(bare, 'ASSIGNMENT_DENIED', () => bare.platform.assign(SID.storage, DOMID_HARDWARE, DOMID_HARDWARE), 'to-current-owner');
    refusedWithoutChange(bare, 'ASSIGNMENT_DENIED', () => bare.platform.assign(SID.storage, DOMID_IO, DOMID_HARDWARE), 'target-not-a-live-domain');
    refusedWithoutChange(bare, 'ASSIGNMENT_DENIED', () => bare.platform.assign(SID.storage, 77, DOMID_HARDWARE), 'target-not-a-live-domain');
    refusedWithoutChange(bare, 'ASSIGNMENT_DENIED', () => bare.platform.assign(0x0e00, VM_A, DOMID_HARDWARE), 'no-such-device');
  });

  void it('de-assignment returns the whole group to quarantine, which blocks its DMA', () => {
    const bare = barePlatform();
    bare.platform.map(DOMID_HARDWARE, 0, hfnOf(bare, DOMID_HARDWARE, 0), { r: true, w: true });
    assert.equal(bare.platform.dma({ sid: SID.accel, address: 0, kind: 'read', length: 8 }).ok, true);
    bare.platform.deassign(SID.accelAudio, DOMID_HARDWARE);
    for (const sid of [SID.accel, SID.accelAudio]) {
      assert.equal(bare.platform.ownerOf(sid), DOMID_IO);
      assert.equal(bare.platform.mmio.holder(sid), undefined);
    }
    bare.check();
    // Bus 1 now has no present context entry, so its root entry went away too.
    assert.equal(faultOf(bare.platform.dma({ sid: SID.accel, address: 0, kind: 'read', length: 8 })).fr, FAULT_REASON.ROOT_ENTRY_NOT_PRESENT);
    refusedWithoutChange(bare, 'ASSIGNMENT_DENIED', () => bare.platform.deassign(SID.accel, DOMID_HARDWARE), 'already-quarantined');
    // From quarantine a group may move again.
    bare.platform.assign(SID.accel, VM_B, DOMID_HARDWARE);
    assert.equal(bare.platform.ownerOf(SID.accelAudio), VM_B);
    bare.check();
  });
});

void describe('I/O page tables', () => {
  void it('maps only frames the domain owns, inside the address width, with a permission', () => {
    const bare = barePlatform();
    const miniFrame = hfnOf(bare, MINI, 0);
    refusedWithoutChange(bare, 'IOMMU_MAP_DENIED', () => bare.platform.map(DOMID_HARDWARE, 0, miniFrame, { r: true, w: true }));
    refusedWithoutChange(bare, 'IOMMU_MAP_DENIED', () => bare.platform.map(VM_A, 3, miniFrame, { r: true, w: false }));
    const tableFrame = bare.platform.iommu.snapshot().tableOf[0]?.[1] as number;
    assert.equal(bare.platform.memory.owner(tableFrame / PAGE_SIZE), DOMID_XEN);
    refusedWithoutChange(bare, 'IOMMU_MAP_DENIED', () => bare.platform.map(DOMID_HARDWARE, 1, tableFrame / PAGE_SIZE, { r: true, w: true }));
    refusedWithoutChange(bare, 'IOMMU_MAP_DENIED', () => bare.platform.map(DOMID_HARDWARE, 2 ** 36, hfnOf(bare, DOMID_HARDWARE, 0), { r: true, w: true }));
    refusedWithoutChange(bare, 'IOMMU_MAP_DENIED', () => bare.platform.map(DOMID_HARDWARE, 1, hfnOf(bare, DOMID_HARDWARE, 0), { r: false, w: false }));
    refusedWithoutChange(bare, 'IOMMU_MAP_DENIED', () => bare.platform.unmap(DOMID_HARDWARE, 12));
    refusedWithoutChange(bare, 'IOMMU_MAP_DENIED', () => bare.platform.map(77, 1, hfnOf(bare, DOMID_HARDWARE, 0), { r: true, w: true }));
  });
});

void describe('DMA remapping', () => {
  void it('moves bytes through a present PTE with the right bit', () => {
    const bare = barePlatform();
    const dom0 = bare.memory.get(DOMID_HARDWARE);
    assert.ok(dom0);
    bare.platform.map(DOMID_HARDWARE, 0x10, hfnOf(bare, DOMID_HARDWARE, 1), { r: true, w: true });
    const data = new Uint8Array([1, 2, 3, 4, 5]);
    assert.equal(bare.platform.dma({ sid: SID.nic0, address: 0x10 * PAGE_SIZE + 100, kind: 'write', data }).ok, true);
    assert.deepEqual(dom0.read(PAGE_SIZE + 100, 5), data);
    const r = bare.platform.dma({ sid: SID.nic1, address: 0x10 * PAGE_SIZE + 100, kind: 'read', length: 5 });
    assert.ok(r.ok);
    assert.deepEqual(r.data, data);
    assert.equal(bare.platform.iommu.faultRecords().length, 0);
  });

  void it("dom0's device writing at the mini-domain's memory faults, is recorded, and changes nothing", () => {
    const bare = barePlatform();
    const mini = bare.memory.get(MINI);
    assert.ok(mini);
    mini.write(0, new Uint8Array([9, 9, 9]));
    const miniHpa = hfnOf(bare, MINI, 0) * PAGE_SIZE;
    // dom0 maps everything it may (its own pages) and then aims its NIC at the mini-domain's host address.
    bare.platform.map(DOMID_HARDWARE, 0, hfnOf(bare, DOMID_HARDWARE, 0), { r: true, w: true });
    const before = bare.platform.snapshot(true);
    for (const address of [miniHpa, 0, PAGE_SIZE]) {
      const target = address === 0 ? 'its own page (mapped)' : 'the mini-domain';
      const r = bare.platform.dma({ sid: SID.nic0, address, kind: 'write', data: new Uint8Array([6, 6, 6]) });
      if (address === 0) {
        assert.equal(r.ok, true, target);
        continue;
      }
      const f = faultOf(r);
      assert.deepEqual(f, { sid: SID.nic0, fi: address, fr: FAULT_REASON.PTE_WRITE_NOT_SET, t: FAULT_TYPE.WRITE });
    }
    assert.deepEqual(mini.read(0, 3), new Uint8Array([9, 9, 9]));
    const after = bare.platform.snapshot(true);
    // Only dom0's own page changed; the mini-domain's frames and every table are as before.
    assert.deepEqual(after.iommu.pageTables, before.iommu.pageTables);
    assert.deepEqual(after.frames.filter(([h]) => h !== hfnOf(bare, DOMID_HARDWARE, 0)), before.frames.filter(([h]) => h !== hfnOf(bare, DOMID_HARDWARE, 0)));
    const faults = bare.platform.iommu.faultRecords();
    assert.equal(faults.length, 2);
    const events = bare.events.list().filter((e) => e.kind === 'IOMMU_FAULT');
    assert.equal(events.length, 2);
    assert.equal(events[0]?.domain, DOMID_HARDWARE);
    assert.equal(events[0]?.detail['reason'], 'PTE_WRITE_NOT_SET');
    bare.check();
  });

  void it('checks the R and W bits separately, and the address width', () => {
    const bare = barePlatform();
    bare.platform.map(DOMID_HARDWARE, 1, hfnOf(bare, DOMID_HARDWARE, 1), { r: true, w: false });
    bare.platform.map(DOMID_HARDWARE, 2, hfnOf(bare, DOMID_HARDWARE, 2), { r: false, w: true });
    assert.equal(bare.platform.dma({ sid: SID.storage, address: PAGE_SIZE, kind: 'read', length: 1 }).ok, true);
    assert.equal(faultOf(bare.platform.dma({ sid: SID.storage, address: PAGE_SIZE, kind: 'write', data: new Uint8Array(1) })).fr, FAULT_REASON.PTE_WRITE_NOT_SET);
    assert.equal(bare.platform.dma({ sid: SID.storage, address: 2 * PAGE_SIZE, kind: 'write', data: new Uint8Array(1) }).ok, true);
    assert.equal(faultOf(bare.platform.dma({ sid: SID.storage, address: 2 * PAGE_SIZE, kind: 'read', length: 1 })).fr, FAULT_REASON.PTE_READ_NOT_SET);
    assert.equal(faultOf(bare.platform.dma({ sid: SID.storage, address: 2 ** 48, kind: 'read', length: 1 })).fr, FAULT_REASON.ADDRESS_BEYOND_MGAW);
    assert.equal(faultOf(bare.platform.dma({ sid: SID.storage, address: PAGE_SIZE, kind: 'read', length: 1, at: 'translation-request' })).fr, FAULT_REASON.TRANSLATION_REQUEST_BLOCKED);
  });

  void it('completes or aborts a multi-page request as a whole', () => {
    const bare = barePlatform();
    bare.platform.map(DOMID_HARDWARE, 0, hfnOf(bare, DOMID_HARDWARE, 0), { r: true, w: true });
    const before = bare.platform.snapshot(true);
    const f = faultOf(bare.platform.dma({ sid: SID.storage, address: PAGE_SIZE - 2, kind: 'write', data: new Uint8Array([1, 2, 3, 4]) }));
    assert.equal(f.fi, PAGE_SIZE);
    assert.deepEqual(bare.platform.snapshot(true).frames, before.frames);
  });

  void it('turns bus mastering off at the fault threshold; later DMA is refused and changes nothing', () => {
    const bare = barePlatform({ faultThreshold: 3 });
    bare.platform.map(DOMID_HARDWARE, 0, hfnOf(bare, DOMID_HARDWARE, 0), { r: true, w: true });
    for (let i = 0; i < 3; i++) faultOf(bare.platform.dma({ sid: SID.storage, address: 7 * PAGE_SIZE, kind: 'read', length: 1 }));
    assert.equal(bare.platform.iommu.busMasterEnabled(SID.storage), false);
    assert.equal(bare.events.list().filter((e) => e.kind === 'BUS_MASTER_DISABLED').length, 1);
    const before = bare.platform.snapshot(true);
    const faults = bare.platform.iommu.faultTotals.total;
    const events = bare.events.total;
    for (const kind of ['read', 'write'] as const) {
      // Even a request that would translate never leaves the device.
      const r = bare.platform.dma(kind === 'read' ? { sid: SID.storage, address: 0, kind, length: 1 } : { sid: SID.storage, address: 0, kind, data: new Uint8Array([1]) });
      assert.deepEqual(r, { ok: false, blocked: 'bus-master-disabled' });
    }
    assert.deepEqual(bare.platform.snapshot(true), before);
    assert.equal(bare.platform.iommu.faultTotals.total, faults);
    assert.equal(bare.events.total, events);
    // Other devices are unaffected.
    assert.equal(bare.platform.dma({ sid: SID.nic0, address: 0, kind: 'read', length: 1 }).ok, true);
    // A change of owner resets the function: bus mastering back on, count cleared.
    bare.platform.assign(SID.storage, VM_A, DOMID_HARDWARE);
    assert.equal(bare.platform.iommu.busMasterEnabled(SID.storage), true);
    assert.equal(bare.platform.iommu.faultCount(SID.storage), 0);
    bare.check();
  });

  void it('keeps a bounded fault log and counts what it dropped', () => {
    const bare = barePlatform();
    for (let i = 0; i < 100; i++) faultOf(bare.platform.dma({ sid: SID.nic0, address: i * PAGE_SIZE, kind: 'read', length: 1 }));
    const records = bare.platform.iommu.faultRecords();
    assert.equal(records.length, 64);
    assert.equal(records[63]?.fi, 99 * PAGE_SIZE);
    assert.deepEqual(bare.platform.iommu.faultTotals, { total: 100, dropped: 36 });
  });
});

void describe('MMIO grants', () => {
  const AUTH_BASE = 0xfed40000;

  void it("denies dom0 the auth device's MMIO range, records it, and leaves the device untouched", () => {
    const bare = barePlatform();
    for (const access of [
      { address: AUTH_BASE + 0x4c, size: 4, kind: 'write', value: 1 },
      { address: AUTH_BASE + 0x44, size: 4, kind: 'read' },
      { address: AUTH_BASE + 0x4ffc, size: 4, kind: 'read' },
    ] as const) {
      refusedWithoutChange(bare, 'MMIO_DENIED', () => bare.platform.mmioAccess(DOMID_HARDWARE, access));
    }
    const ev = bare.events.list().filter((e) => e.kind === 'MMIO_DENIED');
    assert.equal(ev[0]?.domain, DOMID_HARDWARE);
    assert.equal(ev[0]?.detail['bdf'], '00:1f.0');
  });

  void it('lets the grant holder in and only it', () => {
    const bare = barePlatform();
    bare.platform.mmioAccess(DOMID_HARDWARE, { address: 0xfeb20000, size: 4, kind: 'write', value: 0x1234 });
    assert.equal(bare.platform.mmioAccess(DOMID_HARDWARE, { address: 0xfeb20000, size: 4, kind: 'read' }), 0x1234);
    refusedWithoutChange(bare, 'MMIO_DENIED', () => bare.platform.mmioAccess(VM_A, { address: 0xfeb20000, size: 4, kind: 'read' }));
    bare.platform.assign(SID.nic0, VM_A, DOMID_HARDWARE);
    assert.equal(bare.platform.mmioAccess(VM_A, { address: 0xfeb20000, size: 4, kind: 'read' }), 0x1234);
    refusedWithoutChange(bare, 'MMIO_DENIED', () => bare.platform.mmioAccess(DOMID_HARDWARE, { address: 0xfeb20000, size: 4, kind: 'read' }));
    // Addresses no device decodes: reads see all ones, writes vanish.
    assert.equal(bare.platform.mmioAccess(VM_A, { address: 0x1000, size: 4, kind: 'read' }), 0xffffffff);
    assert.equal(bare.platform.mmioAccess(VM_A, { address: 0x1000, size: 1, kind: 'read' }), 0xff);
    assert.throws(() => bare.platform.mmioAccess(VM_A, { address: 0xfeb20002, size: 4, kind: 'read' }), RangeError);
  });
});
