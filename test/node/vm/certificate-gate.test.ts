// The certificate gate between a guest's channel carrier and the hypervisor's channel pair
// (src/node/vm/certificate-gate.ts), on the hypervisor's real channel pair: the guest's
// `ready` reaches the hypervisor only with `certificate-installed`, or `waitMs` after it
// came; every other message passes at once and in order; the timeline notes when `ready`
// was reported and when the hypervisor sent `config` and `host-certificate`.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createVmChannelPair, type VmChannelMessage } from '../../../src/node/hypervisor/index.js';
import { gateReadyOnCertificate } from '../../../src/node/vm/certificate-gate.js';
import { GuestTimeline } from '../../../src/node/vm/timeline.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const msg = (type: string, extra: Record<string, unknown> = {}): VmChannelMessage => ({ v: 1, type, ...extra });

/** A channel pair, the gate on its guest end, and what the hypervisor end received (types, in order). */
function gated(waitMs: number) {
  const { hypervisorEnd, guestEnd } = createVmChannelPair();
  const timeline = new GuestTimeline();
  const gate = gateReadyOnCertificate(guestEnd, waitMs, timeline);
  const received: string[] = [];
  hypervisorEnd.onMessage((m) => received.push((m as VmChannelMessage).type));
  return { hypervisorEnd, gate, timeline, received };
}

void describe('certificate gate', () => {
  void it('holds ready until certificate-installed, then passes both in order; other messages pass at once', async () => {
    const g = gated(10_000);
    g.gate.send(msg('host-key', { key: 'ssh-ed25519 AAAA' }));
    g.gate.send(msg('ready', { sshPort: 22 }));
    g.gate.send(msg('log', { message: 'x' }));
    await sleep(50);
    assert.deepEqual(g.received, ['host-key', 'log'], 'ready is held');
    assert.equal(g.timeline.snapshot()['ready-reported'], undefined);
    g.gate.send(msg('certificate-installed'));
    await sleep(50);
    assert.deepEqual(g.received, ['host-key', 'log', 'ready', 'certificate-installed']);
    assert.equal(typeof g.timeline.snapshot()['ready-reported'], 'number');
    g.gate.dispose();
  });

  void it('passes ready after waitMs when no certificate comes (a launch the CA did not affirm)', async () => {
    const g = gated(200);
    g.gate.send(msg('ready', { sshPort: 22 }));
    await sleep(80);
    assert.deepEqual(g.received, []);
    const at = await g.timeline.waitFor('ready-reported', 5_000);
    assert.ok(at >= 150, `reported after the wait (${at} ms)`);
    await sleep(20); // the channel pair delivers asynchronously
    assert.deepEqual(g.received, ['ready']);
  });

  void it('passes ready at once with waitMs 0, or when the certificate was installed first', async () => {
    const off = gated(0);
    off.gate.send(msg('ready', { sshPort: 22 }));
    await sleep(20);
    assert.deepEqual(off.received, ['ready']);

    const first = gated(10_000);
    first.gate.send(msg('certificate-installed'));
    first.gate.send(msg('ready', { sshPort: 22 }));
    await sleep(20);
    assert.deepEqual(first.received, ['certificate-installed', 'ready']);
  });

  void it('a disposed gate (the VM stopped) never reports the held ready', async () => {
    const g = gated(100);
    g.gate.send(msg('ready', { sshPort: 22 }));
    g.gate.dispose();
    await sleep(250);
    assert.deepEqual(g.received, []);
  });

  void it('notes when the hypervisor sent config and host-certificate, and delivers them', async () => {
    const g = gated(10_000);
    const toGuest: string[] = [];
    g.gate.onMessage((m) => toGuest.push((m as VmChannelMessage).type));
    g.hypervisorEnd.send(msg('config', { hostname: 'a', authorizedKeys: [], sshPort: 22 }));
    g.hypervisorEnd.send(msg('host-certificate', { certificate: 'c' }));
    await sleep(50);
    assert.deepEqual(toGuest, ['config', 'host-certificate']);
    const t = g.timeline.snapshot();
    assert.equal(typeof t['config-sent'], 'number');
    assert.ok((t['certificate-sent'] ?? -1) >= (t['config-sent'] ?? Infinity));
    g.gate.dispose();
  });
});
