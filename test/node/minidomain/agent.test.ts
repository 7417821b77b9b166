// The attestation agent's behaviour against the real CA: while the CA is unreachable it
// retries with bounded backoff and shows CA_UNREACHABLE to dom0; a mini-domain killed
// meanwhile is relaunched through the gate and resumes the very same evidence, so the CA
// sees one evidence for the (VM, nonce) and affirms it; a kernel off the allowlist is
// refused with the CA's code; with attestation off nothing reaches the CA.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sha256Digest } from '../../../src/protocol/digest.js';
import { createVm, waitForAttestation } from '../support/cluster.js';
import { useCluster } from '../../support/cluster-hooks.js';
import { eventually } from '../../attacks/support.js';
import { guestVariant } from '../vm/support.js';

void describe('attestation agent', () => {
  const cluster = useCluster();

  void it('retries while the CA is down, survives its own restart, and sends one evidence per (VM, nonce)', async () => {
    const c = cluster();
    await c.stopCa();
    const vm = await createVm(c, { vmId: 'vm-retry' });
    await eventually('CA_UNREACHABLE on dom0', async () => (await c.dom0.call<{ attestation: { state: string; code?: string } }>('GET', '/v1/vms/vm-retry')).attestation.code === 'CA_UNREACHABLE');
    const launchesBefore = c.node.hypervisor.dom0.miniDomain().launches;
    await c.node.hypervisor.reportMiniDomainCrash('killed by the test');
    await eventually('the mini-domain relaunched through the gate', () => Promise.resolve(c.node.hypervisor.dom0.miniDomain().launches === launchesBefore + 1 && c.node.hypervisor.dom0.miniDomain().state === 'running'));
    await c.startCa();
    const done = await waitForAttestation(c, 'vm-retry');
    assert.equal(done.attestation.state, 'attested', JSON.stringify(done));
    const decisions = (await c.ca.admin.decisions({ node: 'node-1' })).decisions.filter((d) => d.nonce === vm.nonce);
    assert.equal(decisions.filter((d) => d.outcome === 'affirming').length, 1, JSON.stringify(decisions));
    assert.equal(new Set(decisions.map((d) => d.evidenceHash)).size, 1, 'more than one evidence for one (VM, nonce)');
    assert.ok(c.logs.some((l) => l['event'] === 'ca-unreachable'));
  });

  void it('a kernel off the allowlist is refused with the CA\'s code, visible to dom0', async () => {
    const c = cluster();
    const image = guestVariant('not-allowed');
    const vm = await createVm(c, { vmId: 'vm-refused', image });
    const done = await waitForAttestation(c, vm.vmId);
    assert.deepEqual(done.attestation, { state: 'refused', code: 'KERNEL_NOT_ALLOWED' });
    assert.equal(done.kernel, sha256Digest(image));
  });
});

void describe('attestation off (benchmark/development switch)', () => {
  const cluster = useCluster({ attestation: 'off', enroll: false });

  void it('marks VMs unattested (refused: UNSUPPORTED for the manager) and sends nothing to the CA', async () => {
    const c = cluster();
    const vm = await createVm(c, { vmId: 'vm-plain' });
    const done = await waitForAttestation(c, vm.vmId);
    assert.equal(done.attestation.state, 'refused');
    assert.equal(done.attestation.code, 'UNSUPPORTED');
    assert.equal((await c.ca.admin.decisions()).decisions.length, 0);
    assert.deepEqual(await c.ca.admin.listNodes(), []);
  });
});
