// The node end to end against the real CA (src/ca, in this process): first-boot
// registration writes the CA root into device NV; a process VM is attested — the
// receipt verifies with the CA's pinned keys and binds the user's nonce, the measured
// kernel digest and the host key the VM reported on its channel — and a stock OpenSSH
// client logs in with StrictHostKeyChecking=yes, trusting only the CA's SSH key.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { verifyReceipt } from '../../src/crypto/receipts.js';
import { join } from 'node:path';
import { NV_INDEX } from '../../src/tpm/auth-device.js';
import { openSoftwareTpm } from '../../src/tpm/sim/device.js';
import { readRegistration } from '../../src/node/minidomain/nv-records.js';
import { createVm, startCluster, waitForAttestation, type Cluster } from './support/cluster.js';
import { ssh } from './vm/support.js';

void describe('node attestation against the real CA', () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster();
  });
  after(async () => {
    await c.dispose();
  });

  void it('registers on first boot: the CA lists the node active, the device NV holds the CA root', async () => {
    const registered = await c.waitForLog('registered');
    assert.equal(registered['ca'], c.ca.material.root.certificate.sha256Fingerprint);
    const nodes = await c.ca.admin.listNodes();
    assert.deepEqual(nodes.map((n) => [n.id, n.status]), [['node-1', 'active']]);
  });

  void it('attests a process VM: receipt binds nonce, kernel and host key; ssh trusts the CA key only', async () => {
    await c.waitForLog('registered');
    const vm = await createVm(c, { vmId: 'vm-1' });
    assert.equal(vm.view.attestation.state === 'booting' || vm.view.attestation.state === 'attesting', true);
    const done = await waitForAttestation(c, 'vm-1');
    assert.equal(done.attestation.state, 'attested', JSON.stringify(done));
    assert.equal(done.kernel, c.guestDigest);
    assert.ok(done.ssh);

    const { receipt } = await c.ca.client.receipt(vm.nonce);
    const identity = await c.ca.client.keys();
    const claims = await verifyReceipt(receipt, { keys: identity.receiptKeys, issuer: identity.issuer, expectedNonce: vm.nonce });
    assert.equal(claims['ear.status'], 'affirming');
    assert.equal(claims.sub, 'vm-1');
    assert.equal(claims.node, 'node-1');
    assert.equal(claims.kernel, c.guestDigest);
    assert.equal(claims.hostname, vm.hostname);
    assert.ok(claims.ssh_host_key?.startsWith('ssh-ed25519 '));

    // The host certificate reaches the guest over its channel; then only the CA's SSH key is needed.
    const knownHosts = `@cert-authority ${vm.hostname} ${identity.sshCaKey}\n`;
    let r = await ssh({ port: done.ssh.port, key: c.key, knownHosts, hostKeyAlias: vm.hostname, command: 'echo attested-$((6*7))' });
    for (let i = 0; i < 40 && r.status !== 0; i++) {
      await new Promise((res) => setTimeout(res, 100));
      r = await ssh({ port: done.ssh.port, key: c.key, knownHosts, hostKeyAlias: vm.hostname, command: 'echo attested-$((6*7))' });
    }
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'attested-42');
    // The key the receipt names is the key the server proves: a plain known_hosts line with it works too.
    const plain = await ssh({ port: done.ssh.port, key: c.key, knownHosts: `[127.0.0.1]:${done.ssh.port} ${claims.ssh_host_key}\n`, command: 'echo plain' });
    assert.equal(plain.status, 0, plain.stderr);
  });

  void it('keeps the CA root and the registration record in device NV (read back from the device once the node stopped)', async () => {
    await c.stopNode();
    const device = openSoftwareTpm(join(c.init.paths.device, 'tpm-state.json'));
    await device.powerOn();
    try {
      const cert = Buffer.from(await device.nvRead(NV_INDEX.CA_CERTIFICATE));
      assert.deepEqual(cert.subarray(2, 2 + cert.readUInt16BE(0)), c.ca.material.root.certificate.der);
      const record = await readRegistration(device);
      assert.deepEqual(record, { v: 1, nodeId: 'node-1', ek: 'ecc-p256', akHandle: record?.akHandle, caCertificate: c.ca.material.root.certificate.sha256Fingerprint });
    } finally {
      await device.powerOff();
    }
  });
});
