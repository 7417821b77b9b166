// The lifecycle table is the only way a VM changes state: every pair it lists is allowed,
// every other pair is refused (ILLEGAL_TRANSITION), and what a node reports can only ever
// call for a change the table allows.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { assertTransition, canTransition, isTerminal, sourcesOf, TRANSITIONAL_STATES, TRANSITIONS, VM_STATES, type VmState } from '../../src/manager/lifecycle.js';
import { observe, sameReport, stepFor, type NodeVmReport, type Observation } from '../../src/manager/node-report.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';

/** The lifecycle, written out independently of the module's table. */
const EXPECTED: ReadonlyArray<[VmState, VmState]> = [
  ['requested', 'scheduled'],
  ['scheduled', 'booting'],
  ['booting', 'attesting'],
  ['attesting', 'running'],
  ['running', 'stopping'],
  ['stopping', 'stopped'],
];

describe('VM lifecycle table', () => {
  it('contains the main path requested → … → stopped', () => {
    for (const [from, to] of EXPECTED) assert.ok(canTransition(from, to), `${from} → ${to}`);
  });

  it('lets every non-terminal state fail, and nothing leave stopped or failed', () => {
    for (const s of VM_STATES) {
      if (isTerminal(s)) {
        assert.deepEqual(TRANSITIONS[s], [], `${s} is terminal`);
      } else {
        assert.ok(canTransition(s, 'failed'), `${s} → failed`);
      }
    }
  });

  it('never goes back to an earlier state of the main path, nor to requested', () => {
    const order: VmState[] = ['requested', 'scheduled', 'booting', 'attesting', 'running', 'stopping', 'stopped'];
    for (const from of VM_STATES) {
      for (const to of TRANSITIONS[from]) {
        assert.notEqual(to, 'requested');
        if (to !== 'failed' && from !== 'failed') assert.ok(order.indexOf(to) > order.indexOf(from), `${from} → ${to} goes backwards`);
      }
    }
  });

  it('refuses every pair outside the table with ILLEGAL_TRANSITION naming both states', () => {
    let illegal = 0;
    for (const from of VM_STATES) {
      for (const to of VM_STATES) {
        if (canTransition(from, to)) {
          assert.doesNotThrow(() => assertTransition(from, to));
          assert.ok(sourcesOf(to).includes(from));
        } else {
          illegal++;
          assert.throws(
            () => assertTransition(from, to),
            (e) => isTrustlaunchError(e, 'ILLEGAL_TRANSITION') && e.detail?.['from'] === from && e.detail['to'] === to,
          );
        }
      }
    }
    assert.ok(illegal > 40, 'most pairs are illegal');
  });

  it('marks exactly the states between request and end as transitional', () => {
    assert.deepEqual([...TRANSITIONAL_STATES].sort(), ['attesting', 'booting', 'requested', 'scheduled', 'stopping']);
  });
});

const stateArb = fc.constantFrom(...VM_STATES);
const reportArb: fc.Arbitrary<NodeVmReport> = fc.record(
  {
    state: fc.oneof(fc.constantFrom('running', 'stopped', 'failed', 'destroyed', 'crashed', 'booting', 'weird'), fc.string({ maxLength: 12 })),
    attestation: fc.constantFrom('booting', 'attesting', 'attested', 'refused'),
    code: fc.oneof(fc.constantFrom('KERNEL_NOT_ALLOWED', 'NODE_REVOKED', 'not-a-code'), fc.string({ maxLength: 10 })),
    message: fc.string({ maxLength: 20 }),
    seenAt: fc.nat(),
  },
  { requiredKeys: ['state', 'attestation', 'seenAt'] },
);
const observationArb: fc.Arbitrary<Observation> = fc.oneof(reportArb.map(observe), fc.constant({ state: 'missing' } as const));

describe('what a node report can do to a VM', () => {
  it('only ever asks for a change the table allows (property)', () => {
    fc.assert(
      fc.property(stateArb, observationArb, (current, observation) => {
        const step = stepFor(current, observation);
        if (step !== undefined) assert.ok(canTransition(current, step.to), `${current} → ${step.to}`);
      }),
      { numRuns: 2000 },
    );
  });

  it('never moves a VM that has ended (property)', () => {
    fc.assert(fc.property(fc.constantFrom<VmState>('stopped', 'failed'), observationArb, (s, o) => stepFor(s, o) === undefined));
  });

  it('records a failure with an error code of ours, even when the node sends nonsense codes (property)', () => {
    fc.assert(
      fc.property(stateArb, reportArb, (current, report) => {
        const step = stepFor(current, observe(report));
        if (step?.to === 'failed') {
          assert.ok(step.reason !== undefined);
          assert.match(step.reason.code, /^[A-Z_]+$/);
        }
      }),
    );
  });

  it('maps the node words the manager relies on', () => {
    const r = (state: string, attestation: NodeVmReport['attestation'], extra: Partial<NodeVmReport> = {}): NodeVmReport => ({ state, attestation, seenAt: 0, ...extra });
    assert.deepEqual(stepFor('booting', observe(r('running', 'attesting'))), { to: 'attesting' });
    assert.deepEqual(stepFor('booting', observe(r('running', 'attested'))), { to: 'running' });
    assert.deepEqual(stepFor('attesting', observe(r('running', 'refused', { code: 'KERNEL_NOT_ALLOWED', message: 'no' }))), {
      to: 'failed',
      reason: { code: 'KERNEL_NOT_ALLOWED', message: 'no' },
    });
    assert.equal(stepFor('running', observe(r('running', 'booting'))), undefined, 'a node going backwards is ignored');
    assert.equal(stepFor('stopping', observe(r('running', 'attested'))), undefined, 'a stop is not undone');
    assert.deepEqual(stepFor('running', observe(r('stopped', 'attested'))), { to: 'stopped' });
    assert.equal(stepFor('booting', observe(r('stopped', 'booting')))?.to, 'failed', 'ending before attestation is a failure');
    assert.deepEqual(stepFor('stopping', { state: 'missing' }), { to: 'stopped' });
    assert.equal(stepFor('running', { state: 'missing' })?.reason?.code, 'VM_LOST');
    // A node with attestation off says `refused UNSUPPORTED` for every VM: followed by run state alone.
    const off = (state: string): NodeVmReport => r(state, 'refused', { code: 'UNSUPPORTED', message: 'attestation is turned off' });
    assert.deepEqual(stepFor('booting', observe(off('booting'))), undefined);
    assert.deepEqual(stepFor('booting', observe(off('running'))), { to: 'running' });
    assert.deepEqual(stepFor('running', observe(off('stopped'))), { to: 'stopped' });
    assert.deepEqual(stepFor('booting', observe(off('crashed'))), {
      to: 'failed',
      reason: { code: 'VM_BOOT_FAILED', message: 'the node reports the VM crashed (attestation is off on the node)' },
    });
    // Any other refusal is a failure with the node's (the CA's) code.
    assert.equal(stepFor('booting', observe(r('running', 'refused', { code: 'NODE_REVOKED' })))?.reason?.code, 'NODE_REVOKED');
  });
});

describe('node reports', () => {
  it('are the same when only the time they were seen differs, and differ in any field, nested ones included', () => {
    const a: NodeVmReport = { state: 'running', attestation: 'attested', ssh: { host: '127.0.0.1', port: 2201 }, seenAt: 1 };
    assert.ok(sameReport(a, { ...a, seenAt: 2 }));
    assert.ok(!sameReport(a, { ...a, ssh: { host: '127.0.0.1', port: 2202 } }));
    assert.ok(!sameReport(a, { ...a, attestation: 'refused' }));
    assert.ok(!sameReport(a, undefined));
    assert.ok(sameReport(undefined, undefined));
  });
});
