// The mini-domain's watchdog (Xen's SCHEDOP_watchdog) and the exit hook: a mini-domain
// that stops kicking is destroyed as hung, its device quarantined at once, and the node
// is told (kind `hung`) so dom0 can hand the image over again; a crash says `crashed`, a
// stop by dom0 `stopped`; a kicking mini-domain lives on. Nothing is said at shutdown.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DOMID_IO, type MiniDomainCapability, type MiniDomainExit } from '../../../src/node/hypervisor/index.js';
import { bootTestNode } from './node-fixture.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

void describe('mini-domain watchdog and exit hook', () => {
  void it('destroys a mini-domain that stops kicking, quarantines the device, reports it hung', async () => {
    const exits: MiniDomainExit[] = [];
    const caps: MiniDomainCapability[] = [];
    let kicking = true;
    const t = await bootTestNode({
      limits: { miniDomainWatchdogMs: 150 },
      onMiniDomainExit: (e) => exits.push(e),
      miniDomain: ({ capability }) => {
        caps.push(capability);
        const timer = setInterval(() => kicking && capability.kickWatchdog(), 30);
        return { stop: () => Promise.resolve(clearInterval(timer)) };
      },
    });
    const launch = await t.node.dom0.launchMiniDomain(Buffer.from(t.image));
    await sleep(400);
    assert.equal(t.node.dom0.miniDomain().state, 'running', 'a kicking mini-domain was destroyed');
    kicking = false;
    await sleep(400);
    assert.equal(t.node.dom0.miniDomain().state, 'absent');
    assert.equal(t.node.status().authDevice.owner, DOMID_IO);
    assert.deepEqual(exits.map((e) => [e.kind, e.domainId]), [['hung', launch.domainId]]);
    const crashed = t.node.securityEvents().filter((e) => e.kind === 'MINIDOMAIN_CRASHED');
    assert.equal(crashed.length, 1);
    assert.equal(crashed[0]?.detail['watchdog'], true);
    t.node.checkInvariants();
    await t.node.shutdown();
  });

  void it('says crashed for a crash and stopped for dom0\'s stop; nothing at shutdown', async () => {
    const exits: MiniDomainExit[] = [];
    let fail: (e: Error) => void = () => undefined;
    const t = await bootTestNode({
      onMiniDomainExit: (e) => exits.push(e),
      miniDomain: () => ({ stop: () => Promise.resolve(), exited: new Promise((_r, reject) => (fail = reject)) }),
    });
    await t.node.dom0.launchMiniDomain(Buffer.from(t.image));
    fail(new Error('agent threw'));
    await sleep(10);
    await t.node.dom0.launchMiniDomain(Buffer.from(t.image));
    await t.node.dom0.stopMiniDomain();
    await t.node.dom0.launchMiniDomain(Buffer.from(t.image));
    await t.node.shutdown();
    assert.deepEqual(exits.map((e) => e.kind), ['crashed', 'stopped']);
    assert.match(exits[0]?.reason ?? '', /agent threw/);
  });

  void it('a refused image is no exit: the hook hears only of mini-domains that ran', async () => {
    const exits: MiniDomainExit[] = [];
    const t = await bootTestNode({ onMiniDomainExit: (e) => exits.push(e) });
    const tampered = Buffer.from(t.image);
    tampered[0] = (tampered[0] as number) ^ 1;
    await assert.rejects(t.node.dom0.launchMiniDomain(tampered));
    assert.deepEqual(exits, []);
    await t.node.shutdown();
  });
});
