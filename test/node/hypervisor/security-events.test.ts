import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SecurityEventLog } from '../../../src/node/hypervisor/security-events.js';

void describe('security event log', () => {
  void it('is append-only and bounded: the oldest events go, sequence numbers keep counting', () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const log = new SecurityEventLog(3, () => new Date((now += 1000)));
    for (let i = 0; i < 5; i++) log.record('MMIO_DENIED', 0, { i });
    assert.equal(log.total, 5);
    assert.equal(log.dropped, 2);
    assert.deepEqual(
      log.list().map((e) => [e.seq, e.detail['i'], e.time]),
      [
        [2, 2, '2026-01-01T00:00:03.000Z'],
        [3, 3, '2026-01-01T00:00:04.000Z'],
        [4, 4, '2026-01-01T00:00:05.000Z'],
      ],
    );
    assert.deepEqual(log.list(3).map((e) => e.seq), [4]);
  });

  void it('hands out frozen events: a reader cannot edit history', () => {
    const log = new SecurityEventLog(8);
    const detail = { bdf: '00:1f.0' };
    log.record('MMIO_DENIED', 0, detail);
    detail.bdf = 'changed';
    const [e] = log.list();
    assert.ok(e);
    assert.equal(e.detail['bdf'], '00:1f.0');
    assert.throws(() => ((e as { kind: string }).kind = 'IOMMU_FAULT'), TypeError);
    assert.throws(() => ((e.detail as Record<string, unknown>)['bdf'] = 'x'), TypeError);
    (log.list() as unknown[]).pop();
    assert.equal(log.list().length, 1);
  });
});
