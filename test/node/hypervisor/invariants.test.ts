// The invariant oracle itself: each invariant, broken on purpose in a snapshot, is caught
// by name (so a property test that passes means the invariants really held).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DOMID_HARDWARE, DOMID_IO } from '../../../src/node/hypervisor/domain-id.js';
import { assertInvariants, InvariantViolation, type InvariantInput, type InvariantName } from '../../../src/node/hypervisor/invariants.js';
import { nodeTopology } from '../../../src/node/hypervisor/pci.js';
import { PAGE_SIZE } from '../../../src/node/hypervisor/vtd/structures.js';
import { MINI, SID, VM_A, barePlatform, hfnOf } from './fixtures.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends object ? Mutable<T[K]> : T[K] };

function input(): { base: InvariantInput; bare: ReturnType<typeof barePlatform> } {
  const bare = barePlatform();
  bare.platform.map(DOMID_HARDWARE, 0, hfnOf(bare, DOMID_HARDWARE, 0), { r: true, w: true });
  bare.platform.map(MINI, 0, hfnOf(bare, MINI, 0), { r: true, w: true });
  bare.platform.assign(SID.auth, MINI, null);
  const base: InvariantInput = {
    platform: structuredClone(bare.platform.snapshot()),
    devices: nodeTopology('sim').devices(),
    domains: [
      { id: DOMID_HARDWARE, role: 'hardware', state: 'running' },
      { id: MINI, role: 'minidomain', state: 'running' },
      { id: VM_A, role: 'vm', state: 'running' },
      { id: 3, role: 'vm', state: 'running' },
    ],
    authSid: SID.auth,
  };
  return { base, bare };
}

function broken(name: InvariantName, mutate: (i: Mutable<InvariantInput>, bare: ReturnType<typeof barePlatform>) => void): void {
  const { base, bare } = input();
  assertInvariants(base);
  const copy = structuredClone(base) as Mutable<InvariantInput>;
  copy.devices = base.devices as never;
  mutate(copy, bare);
  assert.throws(() => assertInvariants(copy), (e) => e instanceof InvariantViolation && e.invariant === name);
}

const ownerIndex = (i: Mutable<InvariantInput>, sid: number): number => i.platform.iommu.owners.findIndex(([s]) => s === sid);

void describe('assertInvariants', () => {
  void it('holds on a consistent state', () => {
    assertInvariants(input().base);
  });

  void it('ONE_OWNER: an owner that is not a live domain, or a missing owner', () => {
    broken('ONE_OWNER', (i) => {
      i.domains = i.domains.map((d) => (d.id === VM_A ? { ...d, state: 'destroyed' } : d));
      (i.platform.iommu.owners as [number, number][])[ownerIndex(i, SID.storage)] = [SID.storage, VM_A];
    });
    broken('ONE_OWNER', (i) => {
      i.platform.iommu.owners.splice(ownerIndex(i, SID.storage), 1);
    });
  });

  void it('GROUP_MOVES_TOGETHER: one function of a group elsewhere', () => {
    broken('GROUP_MOVES_TOGETHER', (i) => {
      (i.platform.iommu.owners as [number, number][])[ownerIndex(i, SID.nic1)] = [SID.nic1, DOMID_IO];
    });
  });

  void it('QUARANTINE_BLOCKS_DMA: a quarantined device with a context entry or an MMIO grant', () => {
    broken('QUARANTINE_BLOCKS_DMA', (i) => {
      (i.platform.iommu.owners as [number, number][])[ownerIndex(i, SID.storage)] = [SID.storage, DOMID_IO];
      i.platform.mmio.grants = i.platform.mmio.grants.filter(([s]) => s !== SID.storage);
    });
    broken('QUARANTINE_BLOCKS_DMA', (i) => {
      (i.platform.iommu.owners as [number, number][])[ownerIndex(i, SID.auth)] = [SID.auth, DOMID_IO];
    });
  });

  void it('CONTEXT_MATCHES_OWNER: a context entry with another domain id or table', () => {
    broken('CONTEXT_MATCHES_OWNER', (i) => {
      const table = i.platform.iommu.contextTables[0];
      assert.ok(table);
      const entry = table[1].find(([fn]) => fn === (SID.storage & 0xff));
      assert.ok(entry);
      entry[1] = { ...entry[1], did: VM_A };
    });
    broken('CONTEXT_MATCHES_OWNER', (i) => {
      const entry = i.platform.iommu.contextTables[0]?.[1].find(([fn]) => fn === (SID.storage & 0xff));
      assert.ok(entry);
      entry[1] = { ...entry[1], fpd: true };
    });
  });

  void it('ROOT_MATCHES_CONTEXT: a root entry for a bus without context entries', () => {
    broken('ROOT_MATCHES_CONTEXT', (i) => {
      i.platform.iommu.root[7] = { present: true, ctp: 0x1234000 };
    });
  });

  void it('TABLES_OF_LIVE_DOMAINS: a destroyed domain that kept its table', () => {
    broken('TABLES_OF_LIVE_DOMAINS', (i) => {
      i.domains = i.domains.map((d) => (d.id === 3 ? { ...d, state: 'destroyed' } : d));
    });
  });

  void it('PAGE_TABLES_PRIVATE and MINIDOMAIN_PAGES_PRIVATE: a PTE reaching another domain', () => {
    broken('PAGE_TABLES_PRIVATE', (i, bare) => {
      const dom0Table = i.platform.iommu.tableOf.find(([d]) => d === DOMID_HARDWARE)?.[1];
      const t = i.platform.iommu.pageTables.find(([p]) => p === dom0Table);
      assert.ok(t);
      t[1].push([9, { r: true, w: false, addr: hfnOf(bare, VM_A, 1) * PAGE_SIZE }]);
    });
    broken('MINIDOMAIN_PAGES_PRIVATE', (i, bare) => {
      const dom0Table = i.platform.iommu.tableOf.find(([d]) => d === DOMID_HARDWARE)?.[1];
      const t = i.platform.iommu.pageTables.find(([p]) => p === dom0Table);
      assert.ok(t);
      t[1].push([9, { r: true, w: false, addr: hfnOf(bare, MINI, 0) * PAGE_SIZE }]);
    });
  });

  void it('MMIO_GRANT_FOLLOWS_OWNER: a grant to a domain that does not own the device', () => {
    broken('MMIO_GRANT_FOLLOWS_OWNER', (i) => {
      i.platform.mmio.grants = i.platform.mmio.grants.map(([s, d]) => (s === SID.storage ? [s, VM_A] : [s, d]));
    });
  });

  void it('AUTH_DEVICE_EXCLUSIVE: the auth device with a VM, or with a mini-domain not running', () => {
    broken('AUTH_DEVICE_EXCLUSIVE', (i) => {
      i.domains = i.domains.map((d) => (d.id === MINI ? { ...d, role: 'vm' } : d));
    });
    broken('AUTH_DEVICE_EXCLUSIVE', (i) => {
      i.domains = i.domains.map((d) => (d.id === MINI ? { ...d, state: 'building' } : d));
    });
  });
});
