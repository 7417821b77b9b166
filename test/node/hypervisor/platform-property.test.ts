// Property test of the hardware layer: random sequences of assign / de-assign / map /
// unmap / DMA / MMIO by random actors (and by devices with any requester id, real or
// spoofed). After every step the invariants hold; a refused step changed nothing; and a
// reference prediction says which steps must succeed, so "refuse everything" cannot pass.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { DOMID_HARDWARE, DOMID_IO } from '../../../src/node/hypervisor/domain-id.js';
import type { PlatformSnapshot } from '../../../src/node/hypervisor/platform.js';
import { PAGE_SIZE } from '../../../src/node/hypervisor/vtd/structures.js';
import { MINI, SID, VM_A, VM_B, barePlatform, hfnOf, type BarePlatform } from './fixtures.js';

const DOMAINS = [DOMID_HARDWARE, MINI, VM_A, VM_B] as const;
const ACTORS = [...DOMAINS, 77] as const; // 77: a domain that does not exist
const SIDS = [...Object.values(SID), 0x0500, 0x00ff] as const; // plus a phantom requester on bus 5 and a spoofed 00:1f.7
const PAGES = 4;
const BARS = [0xfeb00000, 0xfeb20000, 0xfeb40000, 0xf0000000, 0xf1000000, 0xfed40000, 0xfed40040, 0x2000];

type Op =
  | { op: 'assign'; sid: number; to: number }
  | { op: 'deassign'; sid: number }
  | { op: 'map'; domain: number; iovaPfn: number; frameOf: number; gfn: number; r: boolean; w: boolean }
  | { op: 'unmap'; domain: number; iovaPfn: number }
  | { op: 'dma'; sid: number; page: number | { frameOf: number; gfn: number }; offset: number; kind: 'read' | 'write'; length: number }
  | { op: 'mmio'; domain: number; address: number; kind: 'read' | 'write'; value: number };

const iovaPfn = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 5 }) }, { weight: 1, arbitrary: fc.constant(2 ** 36) });
// Mostly a domain's own frame (so maps can succeed), sometimes anyone's.
const mapArb = fc
  .record({ domain: fc.constantFrom(...ACTORS), iovaPfn, foreign: fc.option(fc.constantFrom(...DOMAINS), { freq: 3 }), gfn: fc.integer({ min: 0, max: PAGES - 1 }), r: fc.boolean(), w: fc.boolean() })
  .map(({ domain, foreign, ...rest }) => ({ op: 'map' as const, domain, frameOf: foreign ?? (domain === 77 ? DOMID_HARDWARE : domain), ...rest }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('assign' as const), sid: fc.constantFrom(...SIDS), to: fc.constantFrom(...ACTORS, DOMID_IO) }),
  fc.record({ op: fc.constant('deassign' as const), sid: fc.constantFrom(...SIDS) }),
  mapArb,
  fc.record({ op: fc.constant('unmap' as const), domain: fc.constantFrom(...ACTORS), iovaPfn }),
  fc.record({
    op: fc.constant('dma' as const),
    sid: fc.constantFrom(...SIDS),
    page: fc.oneof(
      { weight: 8, arbitrary: fc.integer({ min: 0, max: 5 }) },
      { weight: 1, arbitrary: fc.constant(2 ** 36) },
      { weight: 2, arbitrary: fc.record({ frameOf: fc.constantFrom(...DOMAINS), gfn: fc.integer({ min: 0, max: PAGES - 1 }) }) },
    ),
    offset: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: PAGE_SIZE - 64, max: PAGE_SIZE - 1 })),
    kind: fc.constantFrom('read' as const, 'write' as const),
    length: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 64 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 * PAGE_SIZE }) }),
  }),
  fc.record({ op: fc.constant('mmio' as const), domain: fc.constantFrom(...ACTORS), address: fc.constantFrom(...BARS), kind: fc.constantFrom('read' as const, 'write' as const), value: fc.integer({ min: 0, max: 0xffffffff }) }),
);

/** What the reference model says must happen. */
type Expect = 'ok' | 'refused' | 'fault' | 'blocked';

function groupOf(bare: BarePlatform, sid: number): number[] {
  return bare.platform.topology.groupOf(sid).map((d) => d.sid);
}

function predict(bare: BarePlatform, s: PlatformSnapshot, o: Op): Expect {
  const owners = new Map(s.iommu.owners);
  const live = new Set(s.iommu.tableOf.map(([d]) => d));
  const frameOwner = new Map(s.frames.map(([h, d]) => [h, d]));
  switch (o.op) {
    case 'assign': {
      const from = owners.get(o.sid);
      if (from === undefined || (from !== DOMID_IO && from !== DOMID_HARDWARE) || o.to === from || !live.has(o.to)) return 'refused';
      return 'ok';
    }
    case 'deassign': {
      const from = owners.get(o.sid);
      return from === undefined || from === DOMID_IO ? 'refused' : 'ok';
    }
    case 'map':
      if (!live.has(o.domain) || o.iovaPfn >= 2 ** 36 || frameOwner.get(hfnOf(bare, o.frameOf, o.gfn)) !== o.domain || (!o.r && !o.w)) return 'refused';
      return 'ok';
    case 'unmap': {
      const ptr = s.iommu.tableOf.find(([d]) => d === o.domain)?.[1];
      const table = s.iommu.pageTables.find(([p]) => p === ptr)?.[1];
      return table?.some(([pfn]) => pfn === o.iovaPfn) === true ? 'ok' : 'refused';
    }
    case 'mmio': {
      const dev = bare.platform.topology.barAt(o.address, 4)?.device;
      if (dev === undefined) return 'ok';
      return new Map(s.mmio.grants).get(dev.sid) === o.domain ? 'ok' : 'refused';
    }
    case 'dma': {
      if (!new Map(s.iommu.busMaster).get(o.sid) && owners.has(o.sid)) return 'blocked';
      const owner = owners.get(o.sid);
      if (owner === undefined || owner === DOMID_IO) return 'fault';
      const ptr = s.iommu.tableOf.find(([d]) => d === owner)?.[1];
      const table = new Map(s.iommu.pageTables.find(([p]) => p === ptr)?.[1] ?? []);
      const start = dmaAddress(bare, o);
      for (let a = start - (start % PAGE_SIZE); a < start + o.length; a += PAGE_SIZE) {
        if (a >= 2 ** 48) return 'fault';
        const pte = table.get(a / PAGE_SIZE);
        if (pte === undefined || !(o.kind === 'read' ? pte.r : pte.w)) return 'fault';
      }
      return 'ok';
    }
  }
}

function dmaAddress(bare: BarePlatform, o: Extract<Op, { op: 'dma' }>): number {
  const page = typeof o.page === 'number' ? o.page : hfnOf(bare, o.page.frameOf, o.page.gfn);
  return page * PAGE_SIZE + o.offset;
}

function run(bare: BarePlatform, o: Op): Expect {
  const p = bare.platform;
  try {
    switch (o.op) {
      case 'assign':
        p.assign(o.sid, o.to, null);
        return 'ok';
      case 'deassign':
        p.deassign(o.sid, null);
        return 'ok';
      case 'map':
        p.map(o.domain, o.iovaPfn, hfnOf(bare, o.frameOf, o.gfn), { r: o.r, w: o.w });
        return 'ok';
      case 'unmap':
        p.unmap(o.domain, o.iovaPfn);
        return 'ok';
      case 'mmio':
        p.mmioAccess(o.domain, o.kind === 'read' ? { address: o.address, size: 4, kind: 'read' } : { address: o.address, size: 4, kind: 'write', value: o.value });
        return 'ok';
      case 'dma': {
        const address = dmaAddress(bare, o);
        const r = p.dma(o.kind === 'read' ? { sid: o.sid, address, kind: 'read', length: o.length } : { sid: o.sid, address, kind: 'write', data: new Uint8Array(o.length).fill(0xa5) });
        return r.ok ? 'ok' : 'fault' in r ? 'fault' : 'blocked';
      }
    }
  } catch (e) {
    if (isTrustlaunchError(e, 'ASSIGNMENT_DENIED') || isTrustlaunchError(e, 'IOMMU_MAP_DENIED') || isTrustlaunchError(e, 'MMIO_DENIED')) return 'refused';
    throw e;
  }
}

void describe('hardware layer under random operations', () => {
  void it('keeps every invariant; refusals change nothing; outcomes match the reference', () => {
    const tally = new Map<string, number>();
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 80, size: 'max' }), fc.integer({ min: 2, max: 6 }), (ops, threshold) => {
        const bare = barePlatform({ faultThreshold: threshold, pages: PAGES });
        // Each domain starts with its pages identity-mapped for DMA, as a driver would set up.
        for (const d of DOMAINS) for (let g = 0; g < PAGES; g++) bare.platform.map(d, g, hfnOf(bare, d, g), { r: true, w: true });
        bare.check();
        for (const o of ops) {
          const before = bare.platform.snapshot(true);
          const faultsBefore = bare.platform.iommu.faultTotals.total;
          const eventsBefore = bare.events.total;
          const expected = predict(bare, before, o);
          const got = run(bare, o);
          tally.set(`${o.op}:${got}`, (tally.get(`${o.op}:${got}`) ?? 0) + 1);
          assert.equal(got, expected, `${JSON.stringify(o)}`);
          bare.check();
          const after = bare.platform.snapshot(true);
          if (got === 'refused' || got === 'blocked') {
            assert.deepEqual(after, before, `refused ${JSON.stringify(o)} changed the platform`);
            assert.equal(bare.platform.iommu.faultTotals.total, faultsBefore);
            assert.equal(bare.events.total, eventsBefore + (got === 'refused' ? 1 : 0));
          }
          if (got === 'fault') {
            // A fault is recorded and moves no byte and no table; only the device's fault count (and maybe its bus mastering) changes.
            assert.equal(bare.platform.iommu.faultTotals.total, faultsBefore + 1);
            assert.deepEqual({ ...after, iommu: { ...after.iommu, faultCounts: [], busMaster: [] } }, { ...before, iommu: { ...before.iommu, faultCounts: [], busMaster: [] } });
          }
          if (got === 'ok' && o.op === 'dma' && o.kind === 'write') {
            // The bytes landed only in frames of the device's owner.
            const owner = bare.platform.ownerOf(o.sid);
            const old = new Map(before.frames.map(([h, d, c]) => [h, { d, c }]));
            for (const [h, d, c] of after.frames) if (old.get(h)?.c !== c) assert.equal(d, owner, `DMA by ${o.sid} changed frame ${h} of domain ${d}`);
          }
          if (got === 'ok' && (o.op === 'assign' || o.op === 'deassign')) {
            const prev = new Map(before.iommu.owners);
            for (const sid of groupOf(bare, o.sid)) {
              assert.ok(prev.get(sid) === DOMID_IO || prev.get(sid) === DOMID_HARDWARE || o.op === 'deassign');
              assert.equal(bare.platform.ownerOf(sid), o.op === 'assign' ? o.to : DOMID_IO);
            }
          }
        }
      }),
      { numRuns: 400 },
    );
    // The generator must actually reach every outcome, or the properties above say little.
    for (const outcome of ['assign:ok', 'assign:refused', 'deassign:ok', 'deassign:refused', 'map:ok', 'map:refused', 'unmap:ok', 'unmap:refused', 'dma:ok', 'dma:fault', 'dma:blocked', 'mmio:ok', 'mmio:refused']) {
      assert.ok((tally.get(outcome) ?? 0) > 0, `no step ended ${outcome}`);
    }
  });
});

