// G2 — the mini-domain runs only if the image actually loaded hashes to the digest the
// hypervisor froze at boot. A hostile dom0 tampers with the image on the node's disk
// (one byte), and then also rewrites the boot configuration to name the tampered image.
// Detected: the gate refuses (LAUNCH_DIGEST_MISMATCH recorded), the device stays in
// quarantine, PCR 12 is not extended; with a rewritten policy the loader refuses the code
// and the measured boot configuration no longer matches the CA's reference. Nothing is
// accepted: no registration, no evidence, no receipt.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { sha256Digest } from '../../src/protocol/digest.js';
import { PCR } from '../../src/protocol/pcrs.js';
import { DOMID_IO } from '../../src/node/hypervisor/index.js';
import { createVm, startCluster, type Cluster } from '../node/support/cluster.js';
import { caDecisions, eventually, hostileDom0, sleep, userFetchesReceipt } from './support.js';

void describe('G2: a tampered mini-domain image never runs', () => {
  let c: Cluster;
  before(async () => {
    // Registration is withheld until the attack is over, so anything the CA sees comes from the attack.
    c = await startCluster({ enroll: false });
  });
  after(async () => {
    await c.dispose();
  });

  void it('one byte changed on disk: the gate refuses at every restart, the device stays quarantined, nothing is accepted', async () => {
    const dom0 = hostileDom0(c);
    const good = readFileSync(dom0.disk.miniDomainImage);
    dom0.rewrite(dom0.disk.miniDomainImage, (b) => {
      const t = Buffer.from(b);
      t[1000] = (t[1000] as number) ^ 0x20;
      return t;
    });
    await c.stopNode();
    await c.restartNode();
    const node = c.node.hypervisor;
    await eventually('the refusal', () => node.securityEvents().some((e) => e.kind === 'LAUNCH_DIGEST_MISMATCH'));
    const refusal = node.securityEvents().find((e) => e.kind === 'LAUNCH_DIGEST_MISMATCH');
    assert.deepEqual(refusal?.detail, { expected: sha256Digest(good), actual: sha256Digest(readFileSync(dom0.disk.miniDomainImage)) });
    assert.equal(node.dom0.miniDomain().state, 'absent');
    assert.equal(node.status().authDevice.owner, DOMID_IO);
    assert.equal(node.eventLog().filter((e) => e.pcrIndex === PCR.MINIDOMAIN).length, 0, 'PCR 12 was extended for a refused image');
    assert.equal(node.securityEvents().filter((e) => e.kind === 'MINIDOMAIN_LAUNCHED').length, 0);
    assert.equal((await c.dom0.call<{ health: string }>('GET', '/v1/node')).health, 'degraded');
    // dom0 retries (backoff): each attempt is refused again; none reaches the device.
    await eventually('a second refusal', () => node.securityEvents().filter((e) => e.kind === 'LAUNCH_DIGEST_MISMATCH').length >= 2);
    // Its VMs still run, but nobody attests them.
    const vm = await createVm(c, { vmId: 'vm-g2' });
    await sleep(500);
    assert.equal((await c.dom0.call<{ attestation: { state: string } }>('GET', '/v1/vms/vm-g2')).attestation.state, 'booting');
    assert.equal(await userFetchesReceipt(c, vm.nonce), undefined);
    assert.deepEqual(await caDecisions(c), []);
    assert.deepEqual(await c.ca.admin.listNodes(), []);
    node.checkInvariants();
    // Restoring the image: the next attempt passes the gate.
    dom0.rewrite(dom0.disk.miniDomainImage, () => good);
    await eventually('the honest image launched', () => node.dom0.miniDomain().state === 'running', 70_000);
    assert.equal(node.eventLog().filter((e) => e.pcrIndex === PCR.MINIDOMAIN).length, 1);
  });

  void it('tampered image plus a boot configuration naming it: the loader refuses the code, and PCR 5 no longer matches the CA', async () => {
    const dom0 = hostileDom0(c);
    const tampered = Buffer.from(readFileSync(dom0.disk.miniDomainImage));
    tampered[2000] = (tampered[2000] as number) ^ 0x01;
    dom0.rewrite(dom0.disk.miniDomainImage, () => tampered);
    dom0.rewrite(dom0.disk.bootConfig, (b) => {
      const cfg = JSON.parse(b.toString('utf8')) as { launchPolicy: { miniDomainDigest: string } };
      cfg.launchPolicy.miniDomainDigest = sha256Digest(tampered);
      return JSON.stringify(cfg);
    });
    await c.stopNode();
    await c.restartNode();
    const node = c.node.hypervisor;
    // The gate lets the image pass (it matches the rewritten policy) — then the loader refuses the code it is not.
    await eventually('a refused start', () => c.logs.some((l) => l['event'] === 'minidomain-launch-failed' && /not the agent code/.test(String(l['message']))));
    assert.equal(node.dom0.miniDomain().state, 'absent');
    assert.equal(node.status().authDevice.owner, DOMID_IO);
    // The measured boot configuration is not the one the CA holds as reference.
    const pcr5 = node.eventLog().filter((e) => e.pcrIndex === PCR.BOOT_CONFIG);
    assert.notEqual(`sha256:${pcr5[0]?.digests[0]?.digest.toString('hex')}`, c.init.measurements.bootConfig);
    assert.deepEqual(await caDecisions(c), []);
    node.checkInvariants();
  });
});
