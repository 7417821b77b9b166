// Property test at the capability level: a hostile dom0, a mini-domain (current and a
// stale one from before a restart) and a VM issue random assign / de-assign / map /
// unmap / DMA / MMIO / relaunch / device requests. After every step the invariants hold;
// every refused step left the isolation state byte-for-byte unchanged.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { DOMID_HARDWARE, DOMID_IO, type DomainCapability, type MiniDomainCapability, type PlatformSnapshot, type VmCapability } from '../../../src/node/hypervisor/index.js';
import { bootTestNode, tpmOf } from './node-fixture.js';

const BDFS = ['00:02.0', '00:03.0', '00:03.1', '01:00.0', '01:00.1', '00:1f.0'] as const;
const MMIO = [0xfeb00000, 0xfeb20000, 0xfeb40010, 0xf0000000, 0xf1000000, 0xfed40000, 0xfed4004c, 0xfed40058, 0xfed40044, 0xfed44ffc, 0x1000];
const ACTORS = ['dom0', 'mini', 'stale-mini', 'vm'] as const;
type Actor = (typeof ACTORS)[number];

type Op =
  | { op: 'assign'; bdf: string; target: 'dom0' | 'mini' | 'vm' | 'vm-b' | 'io' | 'none' }
  | { op: 'deassign'; bdf: string }
  | { op: 'map'; actor: Actor; iovaPfn: number; gfn: number; r: boolean; w: boolean }
  | { op: 'unmap'; actor: Actor; iovaPfn: number }
  | { op: 'dma'; actor: Actor; bdf: string; page: number; kind: 'read' | 'write' }
  | { op: 'mmio'; actor: Actor; address: number; kind: 'read' | 'write' }
  | { op: 'restart'; tampered: boolean }
  | { op: 'device'; pcr: number };

const small = fc.integer({ min: 0, max: 40 });
const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>): fc.WeightedArbitrary<T> => ({ weight, arbitrary });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  w(2, fc.record({ op: fc.constant('assign' as const), bdf: fc.constantFrom(...BDFS), target: fc.constantFrom('dom0' as const, 'mini' as const, 'vm' as const, 'vm-b' as const, 'io' as const, 'none' as const) })),
  w(2, fc.record({ op: fc.constant('deassign' as const), bdf: fc.constantFrom(...BDFS) })),
  w(2, fc.record({ op: fc.constant('map' as const), actor: fc.constantFrom(...ACTORS), iovaPfn: fc.oneof(small, fc.constant(2 ** 36)), gfn: fc.oneof(small, fc.constant(10 ** 7)), r: fc.boolean(), w: fc.boolean() })),
  w(2, fc.record({ op: fc.constant('unmap' as const), actor: fc.constantFrom(...ACTORS), iovaPfn: small })),
  w(3, fc.record({ op: fc.constant('dma' as const), actor: fc.constantFrom(...ACTORS), bdf: fc.constantFrom(...BDFS), page: fc.oneof(small, fc.integer({ min: 0x100, max: 0x2000 }), fc.constant(2 ** 37)), kind: fc.constantFrom('read' as const, 'write' as const) })),
  w(2, fc.record({ op: fc.constant('mmio' as const), actor: fc.constantFrom(...ACTORS), address: fc.constantFrom(...MMIO), kind: fc.constantFrom('read' as const, 'write' as const) })),
  w(1, fc.record({ op: fc.constant('restart' as const), tampered: fc.boolean() })),
  w(3, fc.record({ op: fc.constant('device' as const), pcr: fc.constantFrom(0, 12, 16) })),
);

const REFUSALS = ['ASSIGNMENT_DENIED', 'IOMMU_MAP_DENIED', 'MMIO_DENIED', 'DOMAIN_STATE_INVALID', 'LAUNCH_DIGEST_MISMATCH'] as const;

void describe('hypervisor under a hostile dom0 and random domain requests', () => {
  void it('keeps every invariant, and refusals change nothing', async () => {
    const outcomes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40, size: 'max' }), async (ops) => {
        const minis: MiniDomainCapability[] = [];
        const vms: VmCapability[] = [];
        const t = await bootTestNode({
          limits: { faultThreshold: 5, dom0MemoryBytes: 64 * 4096 },
          miniDomain: ({ capability }) => (minis.push(capability), { stop: () => Promise.resolve() }),
          vmRunner: ({ capability }) => (vms.push(capability), Promise.resolve({ stop: () => Promise.resolve() })),
        });
        try {
          await t.node.dom0.launchMiniDomain(t.image);
          const vm = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('kernel a'), memoryBytes: 64 * 4096 });
          await t.node.dom0.startVm(vm.vmId);
          const vmB = await t.node.dom0.buildVm({ name: 'vm-b', image: Buffer.from('kernel b') });
          const stale = minis[0] as MiniDomainCapability;
          const cap = (a: Actor): DomainCapability =>
            a === 'dom0' ? t.node.dom0 : a === 'mini' ? (minis.at(-1) as MiniDomainCapability) : a === 'stale-mini' ? stale : (vms[0] as VmCapability);
          const targetId = (x: Extract<Op, { op: 'assign' }>['target']): number =>
            x === 'dom0' ? DOMID_HARDWARE : x === 'mini' ? (minis.at(-1)?.domainId ?? 0) : x === 'vm' ? vm.vmId : x === 'vm-b' ? vmB.vmId : x === 'io' ? DOMID_IO : 4242;
          t.node.checkInvariants();

          for (const o of ops) {
            const before = t.node.snapshot(true);
            const faultsBefore = t.node.status().faults.total;
            let outcome: string;
            try {
              outcome = await step(o);
            } catch (e) {
              const code = REFUSALS.find((c) => isTrustlaunchError(e, c));
              if (code === undefined) throw e;
              outcome = `refused:${code}`;
            }
            outcomes.set(`${o.op}:${outcome}`, (outcomes.get(`${o.op}:${outcome}`) ?? 0) + 1);
            t.node.checkInvariants();
            const after = t.node.snapshot(true);
            if (outcome.startsWith('refused') || outcome === 'blocked') assert.deepEqual(after, before, `${JSON.stringify(o)} was ${outcome} but changed the state`);
            if (outcome === 'fault') {
              assert.equal(t.node.status().faults.total, faultsBefore + 1);
              assert.deepEqual(strip(after), strip(before));
            }
            if (outcome === 'device-fault' || outcome === 'device-garbage') {
              // The mini-domain wrote its own mailbox and programmed its own device; the fault (none once
              // the device's bus mastering is off) moved nothing else.
              assert.ok(t.node.status().faults.total - faultsBefore <= 1);
              assert.deepEqual(strip({ ...after, frames: [], mmio: { ...after.mmio, devices: [] } }), strip({ ...before, frames: [], mmio: { ...before.mmio, devices: [] } }));
              const old = new Map(before.frames.map(([h, d, c]) => [h, { d, c }]));
              for (const [h, d, c] of after.frames) if (old.get(h)?.c !== c) assert.equal(d, t.node.dom0.miniDomain().domainId);
            }
            if (outcome === 'ok' && o.op === 'dma' && o.kind === 'write') {
              const old = new Map(before.frames.map(([h, d, c]) => [h, { d, c }]));
              for (const [h, d, c] of after.frames) if (old.get(h)?.c !== c) assert.equal(d, cap(o.actor).domainId, `${JSON.stringify(o)} changed frame ${h} of domain ${d}`);
            }
            // The auth device belongs to nobody but the running mini-domain, whatever happened.
            const authOwner = t.node.status().authDevice.owner;
            assert.ok(authOwner === DOMID_IO || authOwner === t.node.dom0.miniDomain().domainId);
            await settle();
          }

          /** A command the mini-domain started by raw MMIO completes in the background: wait for CTRL_START = 0, as a driver would. */
          async function settle(): Promise<void> {
            const mini = minis.at(-1);
            if (mini === undefined || t.node.dom0.miniDomain().domainId !== mini.domainId) return;
            for (let i = 0; i < 1000 && mini.mmio({ address: 0xfed4004c, size: 4, kind: 'read' }) !== 0; i++) await new Promise((r) => setImmediate(r));
          }

          async function step(o: Op): Promise<string> {
            switch (o.op) {
              case 'assign':
                t.node.dom0.assignDevice(o.bdf, targetId(o.target));
                return 'ok';
              case 'deassign':
                t.node.dom0.deassignDevice(o.bdf);
                return 'ok';
              case 'map':
                cap(o.actor).iommu.map(o.iovaPfn, o.gfn, { r: o.r, w: o.w });
                return 'ok';
              case 'unmap':
                cap(o.actor).iommu.unmap(o.iovaPfn);
                return 'ok';
              case 'dma': {
                const r = cap(o.actor).dma(o.bdf, o.kind === 'read' ? { address: o.page * 4096, kind: 'read', length: 64 } : { address: o.page * 4096, kind: 'write', data: Buffer.alloc(64, 0xa5) });
                return r.ok ? 'ok' : 'fault' in r ? 'fault' : 'blocked';
              }
              case 'mmio':
                cap(o.actor).mmio(o.kind === 'read' ? { address: o.address, size: 4, kind: 'read' } : { address: o.address, size: 4, kind: 'write', value: 1 });
                return 'ok';
              case 'restart': {
                const running = t.node.dom0.miniDomain().state === 'running';
                const image = Buffer.from(t.image);
                if (o.tampered) image[7] = (image[7] as number) ^ 1;
                if (!running) return t.node.dom0.launchMiniDomain(image).then(() => 'ok');
                await t.node.dom0.stopMiniDomain();
                return 'stopped';
              }
              case 'device': {
                const mini = minis.at(-1) as MiniDomainCapability;
                // The mini-domain may have unmapped its own mailbox: then the device's DMA faults.
                return tpmOf(mini).pcrRead([o.pcr]).then(
                  () => 'ok',
                  (e: unknown) => {
                    if (isTrustlaunchError(e, 'IOMMU_FAULT')) return 'device-fault';
                    // Remapped onto other pages of its own, the mailbox holds no valid command.
                    if (isTrustlaunchError(e, 'MALFORMED_REQUEST')) return 'device-garbage';
                    throw e;
                  },
                );
              }
            }
          }
        } finally {
          await t.node.shutdown();
        }
      }),
      {
        numRuns: 150,
        // Always include the mini-domain breaking its own mailbox: unmapped, and remapped onto its image.
        examples: [
          [[{ op: 'unmap', actor: 'mini', iovaPfn: 4 }, { op: 'device', pcr: 0 }, { op: 'unmap', actor: 'mini', iovaPfn: 20 }, { op: 'device', pcr: 12 }]],
          [[{ op: 'map', actor: 'mini', iovaPfn: 4, gfn: 0, r: true, w: false }, { op: 'device', pcr: 0 }]],
        ],
      },
    );
    for (const seen of ['assign:ok', 'assign:refused:ASSIGNMENT_DENIED', 'map:ok', 'map:refused:IOMMU_MAP_DENIED', 'dma:ok', 'dma:fault', 'dma:refused:MMIO_DENIED', 'mmio:ok', 'mmio:refused:MMIO_DENIED', 'restart:refused:LAUNCH_DIGEST_MISMATCH', 'restart:ok', 'device:ok', 'device:device-fault', 'device:device-garbage', 'unmap:ok']) {
      assert.ok((outcomes.get(seen) ?? 0) > 0, `no step ended ${seen}: ${JSON.stringify([...outcomes])}`);
    }
  });
});

/** The snapshot without the fault bookkeeping a recorded fault legitimately changes. */
function strip(s: PlatformSnapshot): unknown {
  return { ...s, iommu: { ...s.iommu, faultCounts: [], busMaster: [] } };
}
