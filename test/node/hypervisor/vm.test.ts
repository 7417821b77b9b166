// VMs: the kernel digest is the hash of the copy in VM memory; the VM's channel is held
// by the hypervisor and the VM only; the first host key is what the mini-domain receives.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { sha256Digest } from '../../../src/protocol/digest.js';
import { nodeWithMiniDomain, sshKey } from '../../support/hypervisor-vms.js';


const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

void describe('VMs', () => {
  void it("hashes the copy: the digest and the bytes the runner gets ignore later changes to dom0's buffer", async () => {
    const { t, boots } = await nodeWithMiniDomain();
    const image = randomBytes(2 * 1024 * 1024 + 5);
    const original = Buffer.from(image);
    const pending = t.node.dom0.buildVm({ name: 'vm-a', image });
    image.fill(0);
    const info = await pending;
    assert.equal(info.kernelDigest, sha256Digest(original));
    assert.equal(info.state, 'building');
    await t.node.dom0.startVm(info.vmId);
    assert.deepEqual(Buffer.from(boots[0]?.image ?? []), original);
    assert.equal(boots[0]?.kernelDigest, info.kernelDigest);
    assert.equal(t.node.dom0.vm(info.vmId).state, 'running');
    await t.node.shutdown();
  });

  void it('reports the first host key to the mini-domain; a second one is a recorded violation', async () => {
    const { t, mini, boots } = await nodeWithMiniDomain();
    const info = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('kernel') });
    await t.node.dom0.startVm(info.vmId);
    const guest = boots[0]?.capability.channel;
    assert.ok(guest);
    const waiting = mini.waitForVmReport(info.vmId, 5000);
    const key = sshKey();
    guest.send({ v: 1, type: 'host-key', key: `${key} root@guest` });
    const report = await waiting;
    assert.deepEqual(
      { ...report, reportedAt: '', attestation: { ...report.attestation, updatedAt: '' } },
      { vmId: info.vmId, name: 'vm-a', kernelDigest: info.kernelDigest, measurements: { kernel: info.kernelDigest }, sshHostKey: key, reportedAt: '', launch: null, attestation: { state: 'booting', reason: null, updatedAt: '' }, note: undefined },
    );
    guest.send({ v: 1, type: 'host-key', key: sshKey() });
    guest.send({ v: 1, type: 'host-key', key: 'ssh-rsa AAAA' });
    guest.send({ v: 1, type: 'ready', sshPort: 2222 });
    await tick();
    assert.equal(mini.vmReports()[0]?.sshHostKey, key);
    assert.equal(t.node.securityEvents().filter((e) => e.kind === 'VM_CHANNEL_VIOLATION').length, 2);
    assert.equal(t.node.dom0.vm(info.vmId).hostKeyReported, true);
    assert.equal(t.node.dom0.vm(info.vmId).sshPort, 2222);
    // The certificate travels back on the same private channel.
    const got: unknown[] = [];
    guest.onMessage((m) => got.push(m));
    mini.sendHostCertificate(info.vmId, 'ssh-ed25519-cert-v01@openssh.com AAAA');
    await tick();
    assert.deepEqual(got, [{ v: 1, type: 'host-certificate', certificate: 'ssh-ed25519-cert-v01@openssh.com AAAA' }]);
    await t.node.shutdown();
  });

  void it('waiting for a report times out, or fails when the VM is destroyed', async () => {
    const { t, mini } = await nodeWithMiniDomain();
    const a = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('kernel') });
    await t.node.dom0.startVm(a.vmId);
    await assert.rejects(mini.waitForVmReport(a.vmId, 20), (e) => isTrustlaunchError(e, 'TIMEOUT'));
    const waiting = mini.waitForVmReport(a.vmId, 5000);
    await t.node.dom0.destroyVm(a.vmId);
    await assert.rejects(waiting, (e) => isTrustlaunchError(e, 'NOT_FOUND'));
    assert.equal(t.node.dom0.vm(a.vmId).state, 'destroyed');
    await assert.rejects(mini.waitForVmReport(12345, 10), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
    await t.node.shutdown();
  });

  void it('a runner that fails leaves no VM behind; one that exits destroys its VM', async () => {
    let exit: () => void = () => undefined;
    let fail = true;
    const { t } = await nodeWithMiniDomain(() => (fail ? Promise.reject(new Error('qemu missing')) : Promise.resolve({ stop: () => Promise.resolve(), exited: new Promise<void>((r) => (exit = r)) })));
    const a = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('kernel') });
    await assert.rejects(t.node.dom0.startVm(a.vmId), (e) => isTrustlaunchError(e, 'VM_BOOT_FAILED') && /qemu missing/.test(e.message));
    assert.equal(t.node.dom0.vm(a.vmId).state, 'destroyed');
    fail = false;
    const b = await t.node.dom0.buildVm({ name: 'vm-b', image: Buffer.from('kernel') });
    await t.node.dom0.startVm(b.vmId);
    exit();
    await tick();
    assert.equal(t.node.dom0.vm(b.vmId).state, 'destroyed');
    t.node.checkInvariants();
    await t.node.shutdown();
  });

  void it('checks names, sizes and states', async () => {
    const { t } = await nodeWithMiniDomain();
    await assert.rejects(t.node.dom0.buildVm({ name: 'VM A', image: Buffer.from('k') }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    await assert.rejects(t.node.dom0.buildVm({ name: 'vm-a', image: new Uint8Array(0) }), (e) => isTrustlaunchError(e, 'BODY_TOO_LARGE'));
    await assert.rejects(t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('k'), memoryBytes: 10 }), (e) => isTrustlaunchError(e, 'CAPACITY_EXCEEDED'));
    const a = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('k') });
    await assert.rejects(t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('k') }), (e) => isTrustlaunchError(e, 'CONFLICT'));
    await t.node.dom0.startVm(a.vmId);
    await assert.rejects(t.node.dom0.startVm(a.vmId), (e) => isTrustlaunchError(e, 'DOMAIN_STATE_INVALID'));
    assert.throws(() => t.node.dom0.vm(4242), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
    assert.deepEqual(t.node.dom0.vms().map((v) => v.name), ['vm-a']);
    await t.node.shutdown();
  });
});
