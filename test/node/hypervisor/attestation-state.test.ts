// dom0's launch metadata travels to the mini-domain with the VM's report, checked for
// shape only (untrusted); the mini-domain records each VM's attestation state, which dom0
// reads but cannot write; only forward moves are allowed; the note stays the mini-domain's
// and survives a mini-domain restart (what lets a restarted agent resume).
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { newNonce } from '../../../src/protocol/nonce.js';
import { formatSshPublicKey } from '../../../src/crypto/ssh-keys.js';
import type { MiniDomainCapability, VmBoot, VmReport } from '../../../src/node/hypervisor/index.js';
import { bootTestNode } from './node-fixture.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const sshKey = (): string => formatSshPublicKey(generateKeyPairSync('ed25519').publicKey);

async function setup() {
  const minis: MiniDomainCapability[] = [];
  const boots: VmBoot[] = [];
  const t = await bootTestNode({
    miniDomain: ({ capability }) => (minis.push(capability), { stop: () => Promise.resolve() }),
    vmRunner: (boot) => (boots.push(boot), Promise.resolve({ stop: () => Promise.resolve() })),
  });
  await t.node.dom0.launchMiniDomain(Buffer.from(t.image));
  return { t, minis, boots };
}

void describe('launch metadata and attestation state', () => {
  void it('hands dom0\'s launch metadata to the runner and to the mini-domain with the report', async () => {
    const { t, minis, boots } = await setup();
    const mini = minis[0] as MiniDomainCapability;
    const heard: VmReport[] = [];
    mini.onVmReport((r) => heard.push(r));
    const launch = { nonce: newNonce(), hostname: 'vm-a.example', authorizedKey: sshKey() };
    const vm = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('kernel'), launch });
    await t.node.dom0.startVm(vm.vmId);
    assert.deepEqual(boots[0]?.launch, launch);
    const key = sshKey();
    boots[0]?.capability.channel.send({ v: 1, type: 'host-key', key });
    const report = await mini.waitForVmReport(vm.vmId, 5000);
    await tick();
    assert.deepEqual(report.launch, launch);
    assert.equal(report.sshHostKey, key);
    assert.equal(report.kernelDigest, vm.kernelDigest);
    assert.deepEqual(heard.map((r) => r.vmId), [vm.vmId]);
    assert.equal(t.node.dom0.vm(vm.vmId).attestation.state, 'booting');
    await t.node.shutdown();
  });

  void it('refuses malformed metadata before building anything', async () => {
    const { t } = await setup();
    const before = t.node.snapshot(true);
    for (const launch of [{ nonce: 'short', hostname: 'a.example' }, { nonce: newNonce(), hostname: 'UPPER.example' }, { nonce: newNonce(), hostname: 'a.example', authorizedKey: 'ssh-rsa AAAA' }, { nonce: newNonce(), hostname: 'a.example', extra: 1 }]) {
      await assert.rejects(t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('k'), launch: launch }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    }
    assert.deepEqual(t.node.snapshot(true), before);
    await t.node.shutdown();
  });

  void it('attestation moves forward only; dom0 sees state and reason, never the note; the note outlives a mini-domain restart', async () => {
    const { t, minis, boots } = await setup();
    const mini = minis[0] as MiniDomainCapability;
    const vm = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('k'), launch: { nonce: newNonce(), hostname: 'a.example' } });
    await t.node.dom0.startVm(vm.vmId);
    boots[0]?.capability.channel.send({ v: 1, type: 'host-key', key: sshKey() });
    await mini.waitForVmReport(vm.vmId, 5000);
    mini.setAttestation(vm.vmId, { state: 'attesting', note: { v: 1, evidence: 'opaque' } });
    mini.setAttestation(vm.vmId, { state: 'attesting', reason: 'CA_UNREACHABLE' });
    const seen = t.node.dom0.vm(vm.vmId).attestation;
    assert.deepEqual({ state: seen.state, reason: seen.reason }, { state: 'attesting', reason: 'CA_UNREACHABLE' });
    assert.equal(JSON.stringify(t.node.dom0.vm(vm.vmId)).includes('opaque'), false);
    assert.throws(() => mini.setAttestation(vm.vmId, { state: 'booting' }), (e) => isTrustlaunchError(e, 'CONFLICT'));
    assert.throws(() => mini.setAttestation(vm.vmId, { state: 'refused', reason: 'not a code' }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    assert.throws(() => mini.setAttestation(vm.vmId, { state: 'attesting', note: { big: 'x'.repeat(70_000) } }), (e) => isTrustlaunchError(e, 'BODY_TOO_LARGE'));
    assert.throws(() => mini.setAttestation(vm.vmId, { state: 'attesting', note: { f: () => 1 } }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));

    // A restarted mini-domain finds the VM where the old one left it.
    await t.node.reportMiniDomainCrash('test');
    assert.throws(() => mini.setAttestation(vm.vmId, { state: 'attested' }), (e) => isTrustlaunchError(e, 'DOMAIN_STATE_INVALID'));
    await t.node.dom0.launchMiniDomain(Buffer.from(t.image));
    const fresh = minis[1] as MiniDomainCapability;
    const [report] = fresh.vmReports();
    assert.deepEqual(report?.note, { v: 1, evidence: 'opaque' });
    assert.equal(report?.attestation.state, 'attesting');
    fresh.setAttestation(vm.vmId, { state: 'attested' });
    assert.equal(t.node.dom0.vm(vm.vmId).attestation.state, 'attested');
    assert.throws(() => fresh.setAttestation(vm.vmId, { state: 'refused', reason: 'KERNEL_NOT_ALLOWED' }), (e) => isTrustlaunchError(e, 'CONFLICT'));
    await t.node.shutdown();
  });

  void it('a destroyed mini-domain\'s subscription hears nothing more', async () => {
    const { t, minis, boots } = await setup();
    const heard: string[] = [];
    (minis[0] as MiniDomainCapability).onVmReport((r) => heard.push(r.name));
    await t.node.dom0.stopMiniDomain();
    const vm = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('k') });
    await t.node.dom0.startVm(vm.vmId);
    boots[0]?.capability.channel.send({ v: 1, type: 'host-key', key: sshKey() });
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(heard, []);
    await t.node.shutdown();
  });
});
