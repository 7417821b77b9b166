// Placement policies: never a node that is down (or joining), runs another VM backend
// than the image needs, or lacks the memory; the default really picks the least loaded
// node; bin-pack really packs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { backendFor, binPack, leastLoaded, qualifies, schedulerNamed, type NodeLoad, type PlacementRequest, type Scheduler } from '../../src/manager/scheduler.js';

const nodeArb: fc.Arbitrary<NodeLoad> = fc
  .record({
    id: fc.stringMatching(/^n[0-9a-z]{1,6}$/),
    status: fc.constantFrom('joining', 'up', 'down'),
    memoryTotalMiB: fc.integer({ min: 0, max: 1 << 20 }),
    usedShare: fc.double({ min: 0, max: 1.2, noNaN: true }),
    vmCount: fc.nat({ max: 500 }),
    maxVms: fc.nat({ max: 600 }),
    health: fc.constantFrom('ok', 'ok', 'ok', 'degraded', null),
    vmBackend: fc.constantFrom('process', 'process', 'qemu', null),
  })
  .map(({ usedShare, ...n }) => ({ ...n, memoryUsedMiB: Math.floor(n.memoryTotalMiB * usedShare) }));
const nodesArb = fc.uniqueArray(nodeArb, { selector: (n) => n.id, maxLength: 12 });
const requestArb: fc.Arbitrary<PlacementRequest> = fc.record({ memoryMiB: fc.integer({ min: 1, max: 1 << 18 }), backend: fc.constantFrom('process', 'qemu') });

const load = (n: NodeLoad): number => n.memoryUsedMiB / n.memoryTotalMiB;
const free = (n: NodeLoad): number => n.memoryTotalMiB - n.memoryUsedMiB;

for (const scheduler of [leastLoaded, binPack] as Scheduler[]) {
  describe(`scheduler ${scheduler.name}`, () => {
    it('never picks a node that is not up and healthy, runs another backend or lacks capacity, and picks one whenever one qualifies (property)', () => {
      fc.assert(
        fc.property(nodesArb, requestArb, (nodes, request) => {
          const picked = scheduler.pick(nodes, request);
          const eligible = nodes.filter(
            (n) => n.status === 'up' && n.health === 'ok' && n.vmBackend === request.backend && n.vmCount < n.maxVms && free(n) >= request.memoryMiB && n.memoryTotalMiB > 0,
          );
          if (picked === undefined) {
            assert.equal(eligible.length, 0);
          } else {
            assert.equal(picked.status, 'up');
            assert.equal(picked.health, 'ok');
            assert.equal(picked.vmBackend, request.backend, 'the node runs the backend the image needs');
            assert.ok(picked.vmCount < picked.maxVms, 'a VM slot is free');
            assert.ok(free(picked) >= request.memoryMiB);
            assert.ok(nodes.includes(picked));
          }
        }),
        { numRuns: 2000 },
      );
    });

    it('is deterministic and does not depend on the order nodes are listed in (property)', () => {
      const withShuffle = nodesArb.chain((nodes) => fc.tuple(fc.constant(nodes), fc.shuffledSubarray(nodes, { minLength: nodes.length, maxLength: nodes.length })));
      fc.assert(
        fc.property(withShuffle, requestArb, ([nodes, shuffled], request) => {
          assert.equal(scheduler.pick(nodes, request)?.id, scheduler.pick(shuffled, request)?.id);
        }),
      );
    });
  });
}

describe('least-loaded (the default)', () => {
  it('is what the config names by default', () => {
    assert.equal(schedulerNamed('least-loaded'), leastLoaded);
    assert.equal(schedulerNamed('bin-pack'), binPack);
  });

  it('picks a node whose used share is no larger than any other qualifying node (property)', () => {
    fc.assert(
      fc.property(nodesArb, requestArb, (nodes, request) => {
        const picked = leastLoaded.pick(nodes, request);
        if (picked === undefined) return;
        for (const n of nodes.filter((m) => qualifies(m, request))) assert.ok(load(picked) <= load(n) + 1e-12, `${picked.id} ${load(picked)} > ${n.id} ${load(n)}`);
      }),
      { numRuns: 2000 },
    );
  });

  it('spreads a series of equal VMs evenly over equal nodes', () => {
    let nodes: NodeLoad[] = ['a', 'b', 'c', 'd'].map((id) => ({ id, status: 'up', memoryTotalMiB: 4096, memoryUsedMiB: 0, vmCount: 0, maxVms: 64, health: 'ok', vmBackend: 'process' }));
    for (let i = 0; i < 12; i++) {
      const p = leastLoaded.pick(nodes, { memoryMiB: 256, backend: 'process' });
      assert.ok(p !== undefined);
      nodes = nodes.map((n) => (n.id === p.id ? { ...n, memoryUsedMiB: n.memoryUsedMiB + 256, vmCount: n.vmCount + 1 } : n));
    }
    assert.deepEqual(nodes.map((n) => n.vmCount), [3, 3, 3, 3]);
  });
});

describe('bin-pack', () => {
  it('picks the qualifying node left with the least free memory (property)', () => {
    fc.assert(
      fc.property(nodesArb, requestArb, (nodes, request) => {
        const picked = binPack.pick(nodes, request);
        if (picked === undefined) return;
        for (const n of nodes.filter((m) => qualifies(m, request))) assert.ok(free(picked) <= free(n));
      }),
      { numRuns: 2000 },
    );
  });

  it('fills one node before using the next', () => {
    let nodes: NodeLoad[] = ['a', 'b'].map((id) => ({ id, status: 'up', memoryTotalMiB: 1024, memoryUsedMiB: 0, vmCount: 0, maxVms: 64, health: 'ok', vmBackend: 'process' }));
    const order: string[] = [];
    for (let i = 0; i < 8; i++) {
      const p = binPack.pick(nodes, { memoryMiB: 256, backend: 'process' });
      assert.ok(p !== undefined);
      order.push(p.id);
      nodes = nodes.map((n) => (n.id === p.id ? { ...n, memoryUsedMiB: n.memoryUsedMiB + 256, vmCount: n.vmCount + 1 } : n));
    }
    assert.deepEqual(order, ['a', 'a', 'a', 'a', 'b', 'b', 'b', 'b']);
    assert.equal(binPack.pick(nodes, { memoryMiB: 1, backend: 'process' }), undefined, 'full nodes take nothing');
  });
});

describe('backends', () => {
  it('a kernel bundle needs a QEMU node, a raw image a process node', () => {
    assert.equal(backendFor('bundle'), 'qemu');
    assert.equal(backendFor('raw'), 'process');
  });

  it('never places on another backend, however much emptier that node is', () => {
    const node = (id: string, vmBackend: NodeLoad['vmBackend'], memoryUsedMiB: number): NodeLoad => ({ id, status: 'up', memoryTotalMiB: 4096, memoryUsedMiB, vmCount: 1, maxVms: 64, health: 'ok', vmBackend });
    const nodes = [node('process-full', 'process', 3840), node('qemu-empty', 'qemu', 0), node('unknown', null, 0)];
    for (const scheduler of [leastLoaded, binPack]) {
      assert.equal(scheduler.pick(nodes, { memoryMiB: 256, backend: 'process' })?.id, 'process-full', scheduler.name);
      assert.equal(scheduler.pick(nodes, { memoryMiB: 256, backend: 'qemu' })?.id, 'qemu-empty', scheduler.name);
      assert.equal(scheduler.pick(nodes, { memoryMiB: 512, backend: 'process' }), undefined, `${scheduler.name}: the process node is full`);
      assert.equal(scheduler.pick([node('unknown', null, 0)], { memoryMiB: 1, backend: 'process' }), undefined, `${scheduler.name}: a node that has not said its backend takes nothing`);
    }
  });
});
